"""Deterministic LR tiles from real photographs, degraded the way the training LR was made.

Used to validate exports (ONNX Runtime vs PyTorch) and as the base of calibration sets. Tile i
comes from image i mod n_images at a crop position drawn from SeedSequence([seed, i]), so the
same (config, n, seed, images) always gives the same bytes; `tiles_hash` names that content.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from alignvar_edge.degrade import degrade, item_seed
from alignvar_edge.errors import InputError
from alignvar_edge.images.folders import usable_images
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.samples import sample_images

__all__ = ["load_photos", "lr_tiles", "tile_pairs", "tiles_hash"]

Images = str | os.PathLike[str] | Sequence[np.ndarray]


def load_photos(split: str, images: Images | None) -> list[np.ndarray]:
    """The photographs as HxWxC float32 arrays: the bundled `split`, a folder's files, or `images`
    as given. A caller that needs them several times loads them once and passes the list."""
    if images is None:
        # imported here: the sample set pulls in torch datasets, which tiles alone do not need
        return [img for _, img in sample_images(split)]  # type: ignore[arg-type]
    if isinstance(images, (str, os.PathLike)):
        # the verbs that read photographs this way (bench, export) keep the default size limit
        found, _ = usable_images(images, "--images", raise_limit=None)
        return [rgb for _, rgb in found]
    return [np.asarray(img, dtype=np.float32) for img in images]


def tile_pairs(config: AlignVARConfig, n: int, seed: int = 0, split: str = "heldout",
               images: Images | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lr (n,3,h,w), hr (n,3,H,W)) float32 in [0,1]: HR crops and their degraded LR.

    Images smaller than the HR tile are skipped; tile i uses image i mod (number of usable images).
    """
    if n < 1:
        raise InputError(f"need at least one tile, got n={n}")
    size = config.hr_size
    # images smaller than the HR tile cannot give a crop (e.g. 2 of the 3 held-out photographs
    # at 512 px): they are skipped, deterministically
    imgs = [img for img in load_photos(split, images) if img.shape[0] >= size and img.shape[1] >= size]
    if not imgs:
        if isinstance(images, (str, os.PathLike)):       # a folder the user named with --images
            raise InputError(f"no image of --images {os.fsdecode(images)} is at least {size}x{size} px (the HR "
                             "tile); pass a folder of larger photographs, or leave --images out for the bundled "
                             "held-out ones")
        raise InputError(f"no image is at least {size}x{size} (the HR tile); use larger images "
                         "or a model with a smaller tile")
    deg = config.lr_degradation()
    lrs, hrs = [], []
    for i in range(n):
        img = imgs[i % len(imgs)]
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
        top = int(rng.integers(img.shape[0] - size + 1))
        left = int(rng.integers(img.shape[1] - size + 1))
        hr = np.ascontiguousarray(img[top:top + size, left:left + size, :3], dtype=np.float32)
        lr = degrade(hr, deg, item_seed(seed, i))
        hrs.append(hr.transpose(2, 0, 1))
        lrs.append(lr.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(lrs)), np.ascontiguousarray(np.stack(hrs))


def lr_tiles(config: AlignVARConfig, n: int, seed: int = 0, split: str = "heldout",
             images: Images | None = None) -> np.ndarray:
    """n LR tiles (n, 3, lr_size, lr_size) float32 in [0, 1] (see the module docstring)."""
    return tile_pairs(config, n, seed, split, images)[0]


def tiles_hash(arr: np.ndarray) -> str:
    """SHA-256 of a tile array's shape, dtype and bytes (C order)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()
