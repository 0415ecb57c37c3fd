"""A folder of images read for figures or training: the one rule for the files in it that cannot be used.

A run that reads a folder's pixels (training `--images`, calibration, `compare --images`) goes past
a file it cannot read: the file is named, with its reason, in one warning line for all of them, and
the run stops only when no usable image remains. One corrupt file in a folder of 200 costs that
file, not the run. (`upscale DIR`, which writes an output per input, also goes past them but ends
with an error counting them, so that the same command finishes them once they are fixed.)
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from alignvar_edge.errors import InputError
from alignvar_edge.images import DEFAULT_MAX_MEGAPIXELS, list_images, load_image

__all__ = ["read_images", "skipped_list"]


def read_images(folder: str | os.PathLike[str], skipped: list[tuple[str, str]],
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> Iterator[tuple[str, np.ndarray]]:
    """(name, HxWx3 float32 RGB) of each readable image under `folder` (recursive, sorted), read one
    at a time; a file that cannot be read is appended to `skipped` as (name, reason) instead. A
    name is the path under the folder: subfolders may hold files of the same name."""
    root = Path(folder)
    for path in list_images(root):
        name = path.relative_to(root).as_posix()
        try:
            rgb, _ = load_image(path, max_megapixels=max_megapixels)
        except InputError as e:
            skipped.append((name, str(e)))
            continue
        yield name, rgb


def skipped_list(skipped: Sequence[tuple[str, str]]) -> str:
    """Every skipped file with its reason, for the one warning line (each is named: the user fixes
    or removes exactly these)."""
    return "; ".join(f"{name} ({reason})" for name, reason in skipped)
