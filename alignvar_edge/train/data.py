"""Training images: image-folder datasets of (HR, LR) pairs, or the bundled sample photographs
(`alignvar_edge.samples`)."""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from alignvar_edge.caller import warn_caller
from alignvar_edge.degrade import DegradationConfig, degrade
from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.images.folders import read_images, said_not_read, skipped_list
from alignvar_edge.images import DEFAULT_MAX_MEGAPIXELS, READ_EXTENSIONS

__all__ = ["ImageFolderDataset", "SRSample", "prefetch"]

# the integer codes an image file holds, and the divisor load_image turns them into [0, 1] with
_CODES = ((np.uint8, 255.0), (np.uint16, 65535.0))


def _widen(a: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] of a `_compact` array, computed as load_image computes it from the file."""
    for dtype, top in _CODES:
        if a.dtype == dtype:
            return a.astype(np.float32) / top
    return a


def _compact(rgb: np.ndarray) -> np.ndarray:
    """The image as the 8- or 16-bit codes its file held, where `_widen` gives back exactly these
    floats; else as it is. A folder of photos is held whole for the run: float32 would take 4x
    (8-bit) the memory, 27 GB for DIV2K's 800 training images."""
    for dtype, top in _CODES:
        codes = np.rint(rgb * np.float32(top))
        if codes.size and codes.min() >= 0 and codes.max() <= top:
            packed = codes.astype(dtype)
            if np.array_equal(_widen(packed), rgb):
                return packed
    return rgb


class SRSample(TypedDict):
    """One training pair, float32 in [0, 1]."""

    hr: torch.Tensor  # 3 x C x C
    lr: torch.Tensor  # 3 x C/s x C/s
    name: str


Source = str | os.PathLike[str] | Sequence[tuple[str, np.ndarray]] | Sequence[np.ndarray]


class ImageFolderDataset(Dataset[SRSample]):
    """Random HR crops with their degraded LR, deterministic per (seed, index).

    ``source`` is a folder (searched recursively) or in-memory images ((name, HxWx3) pairs or
    bare arrays). Item i is ``{"hr": 3xCxC, "lr": 3x(C/s)x(C/s), "name": str}``, float32 in
    [0,1]. Files that cannot be read, or are smaller than the crop, are skipped with a warning
    and listed in ``.skipped`` as (name, reason). ``.images`` holds 8- or 16-bit images as their
    integer codes (`_compact`), widened per crop to the same floats.
    """

    def __init__(
        self,
        source: Source,
        crop: int = 64,
        scale: int = 4,
        degradation: DegradationConfig | None = None,
        seed: int = 0,
        flips: bool = True,
        samples_per_image: int = 1,
        max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    ) -> None:
        if scale < 1 or crop < scale or crop % scale:
            raise ConfigError(f"crop ({crop}) must be a positive multiple of scale ({scale})")
        if samples_per_image < 1:
            raise ConfigError(f"samples_per_image must be >= 1, got {samples_per_image}")
        self.degradation = degradation if degradation is not None else DegradationConfig(scale=scale)
        if self.degradation.scale != scale:
            raise ConfigError(
                f"degradation scale {self.degradation.scale} differs from dataset scale {scale}"
            )
        self.crop, self.scale, self.seed, self.flips = crop, scale, seed, flips
        self.samples_per_image = samples_per_image
        self.skipped: list[tuple[str, str]] = []
        self.images: list[tuple[str, np.ndarray]] = []
        self.not_read: list[str] = []          # what a folder's listing left out (hidden, loops, unlistable)

        what = self._collect(source, max_megapixels)
        too_small = [(n, a) for n, a in self.images if min(a.shape[:2]) < crop]
        for name, arr in too_small:
            self._skip(name, f"{arr.shape[1]}x{arr.shape[0]} is smaller than the {crop} px crop")
        usable = [(n, a) for n, a in self.images if min(a.shape[:2]) >= crop]
        if too_small and not usable:
            biggest = max(min(a.shape[:2]) for _, a in too_small)
            raise InputError(
                f"the {crop} px training crop (the model's HR tile) is larger than every image in {what} "
                f"(the largest short side is {biggest} px); use larger images, or a preset with a smaller tile"
            )
        not_read = said_not_read(self.not_read, what, refused=not usable)
        if not usable:
            detail = f"; {len(self.skipped)} skipped: {self._skipped_list()}" if self.skipped else ""
            raise InputError(
                f"no usable images in {what} (looked for {', '.join(READ_EXTENSIONS)}){detail}{not_read}"
            )
        if self.skipped:
            # one line for all of them, not a warning per file
            warn_caller(f"skipping {len(self.skipped)} image(s): {self._skipped_list()}")
        self.images = usable

    def _collect(self, source: Source, max_megapixels: float | None) -> str:
        if isinstance(source, (str, os.PathLike)):
            # one at a time: each is held compact, never the whole folder as floats
            for name, rgb in read_images(source, self.skipped, max_megapixels, not_read=self.not_read):
                self.images.append((name, _compact(rgb)))
            return str(source)
        for i, item in enumerate(source):
            name, arr = item if isinstance(item, tuple) else (f"image{i}", item)
            arr = np.asarray(arr)
            if arr.ndim != 3 or arr.shape[2] != 3 or not np.issubdtype(arr.dtype, np.floating):
                raise InputError(
                    f"in-memory image {name!r} must be float HxWx3 in [0, 1], "
                    f"got {arr.dtype} {arr.shape}"
                )
            self.images.append((name, _compact(arr.astype(np.float32, copy=False))))
        return "the given images"

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))

    def _skipped_list(self) -> str:
        return skipped_list(self.skipped)

    def __len__(self) -> int:
        return len(self.images) * self.samples_per_image

    def __getitem__(self, index: int) -> SRSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        name, img = self.images[index % len(self.images)]
        # the 0 was an epoch that never changed: kept, so every crop (and each trained model) stays the same
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, index]))
        c = self.crop
        top = int(rng.integers(img.shape[0] - c + 1))
        left = int(rng.integers(img.shape[1] - c + 1))
        hr = _widen(img[top : top + c, left : left + c])
        if self.flips:
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            if rng.random() < 0.5:
                hr = hr[::-1]
            if rng.random() < 0.5:
                hr = hr.transpose(1, 0, 2)
        hr = np.ascontiguousarray(hr, dtype=np.float32)
        lr = degrade(hr, self.degradation, int(rng.integers(2**63)))
        return {
            "hr": torch.from_numpy(hr.transpose(2, 0, 1).copy()),
            "lr": torch.from_numpy(lr.transpose(2, 0, 1).copy()),
            "name": name,
        }


def prefetch(batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]], indices: Iterable[int],
             workers: int) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """batches(b) for every b of `indices`, in order. With `workers` > 0, threads make up to twice
    as many batches ahead while the caller trains (a GPU step outruns one thread's cropping and
    degrading). batches(b) is a pure function of b, so the values do not depend on `workers`."""
    if workers == 0:
        yield from (batches(b) for b in indices)
        return
    todo = iter(indices)
    with ThreadPoolExecutor(workers, thread_name_prefix="batches") as pool:
        ahead: deque[Future[tuple[torch.Tensor, torch.Tensor]]] = deque(
            pool.submit(batches, b) for b in islice(todo, 2 * workers))
        while ahead:
            done = ahead.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(batches, nxt))
            yield done
