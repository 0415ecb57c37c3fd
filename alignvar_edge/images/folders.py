"""Folders of images: which files in them are images (`list_images`, recursive, hidden files
skipped), and reading a folder for figures or training, one rule for the files in it that cannot
be used.

A run that reads a folder's pixels (training `--images`, calibration, `compare --images`) goes past
a file it cannot read: the file is named, with its reason, in one warning line for all of them, and
the run stops only when no usable image remains. One corrupt file in a folder of 200 costs that
file, not the run. (`upscale DIR`, which writes an output per input, also goes past them but ends
with an error counting them, so that the same command finishes them once they are fixed.)
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from PIL import Image

from alignvar_edge.errors import IMAGE_DECODE_ERRORS, InputError
from alignvar_edge.images.formats import IMAGE_EXTENSIONS, open_quietly, upright_size
from alignvar_edge.fsmodes import special_kind
from alignvar_edge.images.read import DEFAULT_MAX_MEGAPIXELS, load_image

__all__ = ["check_megapixels_flag", "list_images", "list_other_files", "not_a_result", "read_images", "result_path",
           "skipped_list", "usable_images"]


def list_images(folder: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``folder`` (recursive, by extension, hidden files skipped), sorted.
    ``extensions``: `upscale` passes `READ_EXTENSIONS`."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; pass a folder of images")
    found = [p for p in _walk(root) if p.suffix.lower() in extensions]
    # Sort by path relative to root so the order does not depend on where the folder lives.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def list_other_files(folder: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The files under ``folder`` that `list_images` leaves out (not hidden, another extension)."""
    return sorted(p for p in _walk(Path(folder)) if p.suffix.lower() not in extensions)


def result_path(path: Path) -> Path:
    """Where `upscale` writes the result of the input `path` when it names no output file: the
    same name, as .png where results are not written in its format (GIF: 256 colours)."""
    return path if path.suffix.lower() in IMAGE_EXTENSIONS else path.with_suffix(".png")


def not_a_result(src: Path, dst: Path, scale: int) -> str | None:
    """Why the file `dst` is not `upscale`'s result of the image `src` at `scale` ("empty", "not an
    image", "300x300, not the 256x192 result"), or None where it is one: a readable image of the
    input's upright size times `scale` (results are written atomically, so one never stops short).
    An input whose header cannot be read gives None: its own refusal comes when it is read."""
    if dst.stat().st_size == 0:
        return "empty"
    if special_kind(src) is not None:       # opening it would wait for a writer; reading it refuses it
        return None
    try:
        with open_quietly(src) as img:
            w, h = upright_size(img)
    except (*IMAGE_DECODE_ERRORS, Image.DecompressionBombError):
        return None
    try:
        with open_quietly(dst) as out:
            got = out.size
    except (*IMAGE_DECODE_ERRORS, Image.DecompressionBombError):
        return "not an image"
    want = (w * scale, h * scale)
    return None if got == want else f"{got[0]}x{got[1]}, not the {want[0]}x{want[1]} result"


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden entries include our own in-progress temp files (".name.xxxx.tmp").
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def read_images(folder: str | os.PathLike[str], skipped: list[tuple[str, str]],
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                raise_limit: str | None = "--max-megapixels") -> Iterator[tuple[str, np.ndarray]]:
    """(name, HxWx3 float32 RGB) of each readable image under `folder` (recursive, sorted), read one
    at a time; a file that cannot be read is appended to `skipped` as (name, reason) instead. A
    name is the path under the folder: subfolders may hold files of the same name. `raise_limit`
    is the flag that raises `max_megapixels` in the verb reading them (None where there is none)."""
    root = Path(folder)
    for path in list_images(root):
        name = path.relative_to(root).as_posix()
        try:
            rgb, _ = load_image(path, max_megapixels=max_megapixels, raise_limit=raise_limit)
        except InputError as e:
            skipped.append((name, str(e)))
            continue
        yield name, rgb


def skipped_list(skipped: Sequence[tuple[str, str]]) -> str:
    """Every skipped file with its reason, for the one warning line (each is named: the user fixes
    or removes exactly these)."""
    return "; ".join(f"{name} ({reason})" for name, reason in skipped)


def usable_images(folder: str | os.PathLike[str], flag: str, limit: int | None = None,
                  max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                  raise_limit: str | None = "--max-megapixels", stacklevel: int = 3
                  ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """The readable images of the folder a flag (`flag`, e.g. "--images") names, at most `limit`
    (counting usable ones), and the (name, reason) of each file skipped (one over `max_megapixels`
    too): the skipped are named in one warning; a folder with no usable image is refused in one line
    naming them. `stacklevel` points the warning at the caller's caller by default."""
    if not Path(folder).is_dir():
        raise InputError(f"{flag} {folder} is not a folder; pass a folder of images")
    skipped: list[tuple[str, str]] = []
    images = list(islice(read_images(folder, skipped, max_megapixels, raise_limit), limit))
    if not images:
        why = (f"{len(skipped)} skipped: {skipped_list(skipped)}" if skipped
               else f"looked for {', '.join(IMAGE_EXTENSIONS)}")
        raise InputError(f"no usable images in {flag} {folder} ({why}); pass a folder of readable photographs, "
                         "or leave the flag out for the bundled held-out ones")
    if skipped:
        warnings.warn(f"skipping {len(skipped)} file(s) of {flag} {folder} that cannot be read: "
                      f"{skipped_list(skipped)}", stacklevel=stacklevel)
    return images, skipped


def check_megapixels_flag(images: str | None, max_megapixels: float | None) -> None:
    """`--max-megapixels` limits the files of an `--images` folder: without one (the bundled
    photographs) it would be accepted and apply to nothing."""
    if max_megapixels is not None and images in (None, "builtin"):
        raise InputError("--max-megapixels limits the files of --images, and no --images folder was given; "
                         "pass --images DIR or leave --max-megapixels out")
