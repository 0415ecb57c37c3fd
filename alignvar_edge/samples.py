"""The bundled sample photographs: real photographs with known licences, split into train and
held-out, used by training, calibration, validation tiles, the demo and the self-test.

The sample set is read from files inside scikit-image's wheel, so it works offline (no pooch
download). Sources and licences: docs/sample-images.md.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.images import load_image
from alignvar_edge.extras import installed_version, is_installed, pip_install, requirement_of

__all__ = ["SAMPLE_IMAGES", "SampleImage", "Split", "sample_images", "samples_installed"]

Split = Literal["train", "heldout", "all"]

# the other way to verbs that read the samples only when given no images (demo takes none)
_OWN_FOLDER = "pass a folder of your own images where the verb takes one (--images, --calib)"


@dataclass(frozen=True)
class SampleImage:
    name: str
    file: str  # inside skimage/data/
    split: Literal["train", "heldout"]
    licence: str
    gray: bool = False


# Real photographs only (no synthetic or binary images). Held-out = astronaut, coffee, rocket, as
# in earlier measurements. The Middlebury motorcycle pair is left out: its licence is not stated.
SAMPLE_IMAGES: tuple[SampleImage, ...] = (
    SampleImage("chelsea", "chelsea.png", "train", "CC0 (Stefan van der Walt)"),
    SampleImage("hubble_deep_field", "hubble_deep_field.jpg", "train", "public domain (NASA)"),
    SampleImage("immunohistochemistry", "ihc.png", "train", "no known copyright restrictions (CMMI)"),
    SampleImage("retina", "retina.jpg", "train", "CC0 (Mikael Häggström)"),
    SampleImage("camera", "camera.png", "train", "CC0 (Lav Varshney)", gray=True),
    SampleImage("brick", "brick.png", "train", "CC0 (CC0Textures Bricks25)", gray=True),
    SampleImage("grass", "grass.png", "train", "CC0 (linolafett, DeviantArt)", gray=True),
    SampleImage("gravel", "gravel.png", "train", "CC0 (CC0Textures Gravel04)", gray=True),
    SampleImage("astronaut", "astronaut.png", "heldout", "public domain (NASA)"),
    SampleImage("coffee", "coffee.png", "heldout", "CC0 (Rachel Michetti)"),
    SampleImage("rocket", "rocket.jpg", "heldout", "public domain (SpaceX)"),
)


def samples_installed() -> bool:
    """Whether the bundled photographs are here (scikit-image's wheel: not in a device install)."""
    return is_installed("skimage")


def _skimage_data_dir() -> Path:
    # Locate the folder without importing skimage.data (whose fetchers may try the network).
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        # a device install (the `device` extra alone) has no scikit-image: say where it comes from
        raise InputError("scikit-image is not installed, and the bundled sample photographs come from its "
                         f"wheel; install it: {pip_install([requirement_of('scikit-image')])}, or {_OWN_FOLDER}")
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=None)
def _load_sample(file: str) -> np.ndarray:
    path = _skimage_data_dir() / file
    if not path.is_file():
        # a plain `pip install scikit-image` does nothing where it is installed
        _, version = installed_version("skimage")
        again = pip_install([f"scikit-image=={version}" if version else "scikit-image"],
                            flags=["--force-reinstall", "--no-deps"])
        raise InputError(f"sample image {path} is missing from the installed scikit-image; reinstall it "
                         f"({again}), or {_OWN_FOLDER}")
    rgb, _ = load_image(path)
    rgb.flags.writeable = False  # shared by the cache; callers get copies
    return rgb


def sample_images(split: Split = "train") -> list[tuple[str, np.ndarray]]:
    """The bundled photographs of one split as (name, float32 HxWx3 in [0,1]); gray ones as RGB."""
    if split not in ("train", "heldout", "all"):
        raise ConfigError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    return [
        (s.name, _load_sample(s.file).copy())
        for s in SAMPLE_IMAGES
        if split == "all" or s.split == split
    ]
