"""Whole-image timing: what a user feels is an image, not a tile.

One LR photograph (default 128x128 -> 512x512 SR) goes through `Engine.upscale`'s tiling
(overlapping tiles, fed in the engine's batches, the last batch padded, blended), so the figure
counts the overlap's extra tiles, the padding of a short last batch and the blending. MP/s is SR
megapixels of the image (not of the tiles) per second of the median run.

A folder of small images (optional) goes through `Engine.upscale_many`'s tiling, as
`upscale DIR` runs it: small images share engine calls instead of padding one each, so its MP/s
is what a folder of thumbnails gets.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from alignvar_edge.bench.stats import percentiles, tails_omitted
from alignvar_edge.errors import InputError

__all__ = ["IMAGE_LR", "FOLDER_LR", "IMAGE_RUNS", "MAX_IMAGE_LR", "PER_RUN", "photo_lr", "folder_lrs", "engine_shape",
           "image_geometry",
           "folder_geometry", "image_call", "folder_call", "image_summary", "folder_summary"]

IMAGE_LR = 128          # LR side of the timed image: 128x128 -> 512x512 at x4, a real photo size
FOLDER_LR = 32          # LR side of each image of the timed folder: thumbnails, a few tiles each
IMAGE_RUNS = 5          # timed rounds of the image (and of the folder)
# the largest LR side of the timed image (and the most LR pixels of the timed folder): a 4096 x 4096
# SR image at x4, 16.8 MP, under upscale's default limit of 25 MP; a stray `--image-size 100000`
# would otherwise fill memory resizing the photograph until the run is killed
MAX_IMAGE_LR = 1024
PER_RUN = {"image": "per_image_ms", "folder": "per_folder_ms"}     # the timing's statistics key


def photo_lr(side: int, images: Any = None) -> np.ndarray:
    """An LR image side x side x 3 (float32 in [0, 1]): the centre square of the largest bundled
    held-out photograph (or of `images`), resized bicubic to side x side."""
    from PIL import Image

    from alignvar_edge.quantize.calibration.tiles import load_photos
    if side < 1:
        raise InputError(f"--image-size must be >= 1 LR pixel, got {side}")
    img = max(load_photos("heldout", images), key=lambda a: a.shape[0] * a.shape[1])[..., :3]
    n = min(img.shape[:2])
    top, left = (img.shape[0] - n) // 2, (img.shape[1] - n) // 2
    crop = Image.fromarray((np.clip(img[top:top + n, left:left + n], 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(crop.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0


def folder_lrs(side: int, count: int, images: Any = None) -> list[np.ndarray]:
    """`count` LR images side x side x 3 (float32 in [0, 1], on the uint8 grid a file gives):
    seeded crops of the bundled held-out photographs (or of `images`), taken in turn."""
    from alignvar_edge.quantize.calibration.tiles import load_photos
    if side < 1 or count < 1:
        raise InputError(f"need --folder-size >= 1 LR pixel and --folder-images >= 1, got {side}, {count}")
    photos = [p for p in load_photos("heldout", images) if min(p.shape[:2]) >= side]
    if not photos:
        raise InputError(f"no photograph is at least {side}x{side} for the folder timing; "
                         "pass a smaller --folder-size or larger --images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        p = photos[i % len(photos)]
        y, x = int(rng.integers(0, p.shape[0] - side + 1)), int(rng.integers(0, p.shape[1] - side + 1))
        crop = np.clip(p[y:y + side, x:x + side, :3], 0, 1)
        out.append(np.round(crop * 255).astype(np.float32) / 255.0)
    return out


def engine_shape(engine: Any) -> dict[str, Any]:
    """What the call counts of an engine's tiling depend on: tile, batch, calls in flight and
    whether a short call is padded to the batch (static-batch graphs) or just runs fewer tiles."""
    return {"tile": int(engine.tile_size), "batch": int(engine.batch),
            "parallel": int(getattr(engine, "parallel_requests", 1)),
            "static": bool(getattr(engine, "pads_to_batch", True))}


class _CallCounter:
    """A stand-in engine of a given shape that computes nothing and records the tiles handed to
    each `run`: the call counts are read off the tiling itself, not recomputed beside it."""

    scale = 1                            # the counts do not depend on the SR size

    def __init__(self, tile: int, batch: int, parallel: int = 1, static: bool = True):
        self.tile_size, self.batch, self.parallel_requests, self.static = tile, batch, parallel, static
        self.runs: list[int] = []

    def run(self, lr_tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        self.runs.append(len(lr_tiles))
        return np.zeros_like(lr_tiles, np.float32), []

    def counts(self) -> dict[str, int]:
        # Engine.run splits a run into inferences of `batch` tiles; only a static batch pads
        b = self.batch
        tiles, calls = sum(self.runs), sum(-(-n // b) for n in self.runs)
        return {"tiles": tiles, "batch": b, "calls": calls, "padded_tiles": calls * b - tiles if self.static else 0}


def image_geometry(side_hw: tuple[int, int], tile: int, batch: int, overlap: int | None = None,
                   parallel: int = 1, static: bool = True) -> dict[str, Any]:
    """Tiles, inference calls and padded tiles one image costs at this tile, overlap and batch."""
    from alignvar_edge.runtimes.tiling import default_overlap, upscale_image
    counter = _CallCounter(tile, batch, parallel, static)
    upscale_image(counter, np.zeros((*side_hw, 3), np.float32), overlap)
    return {**counter.counts(), "overlap": default_overlap(tile) if overlap is None else overlap}


def folder_geometry(lrs: list[np.ndarray], tile: int, batch: int, overlap: int | None = None,
                    parallel: int = 1, static: bool = True) -> dict[str, Any]:
    """Tiles, inference calls and padded tiles (totals) a folder costs through `upscale_many`'s
    pooling, and the calls the same images take one at a time."""
    from alignvar_edge.runtimes.tiling import default_overlap, upscale_images
    counter = _CallCounter(tile, batch, parallel, static)
    for _ in upscale_images(counter, lrs, overlap):
        pass
    alone = sum(image_geometry(lr.shape[:2], tile, batch, overlap, parallel, static)["calls"] for lr in lrs)
    return {**counter.counts(), "calls_one_at_a_time": alone,
            "overlap": default_overlap(tile) if overlap is None else overlap}


def image_call(engine: Any, lr: np.ndarray, scale: int, overlap: int | None = None) -> Callable[[], object]:
    """One timed unit: the whole image through `Engine.upscale`, what users call (its tiling, and the
    colour fix of VARSR models); `engine is None`: bicubic."""
    if engine is None:
        from alignvar_edge.runtimes.tiling import upscale_plane_bicubic
        return lambda: [upscale_plane_bicubic(lr[..., c], scale) for c in range(3)]
    return lambda: engine.upscale(lr, overlap=overlap)


def folder_call(engine: Any, lrs: list[np.ndarray], scale: int, overlap: int | None = None) -> Callable[[], object]:
    """One timed unit: the whole folder through `Engine.upscale_many`'s pooling (`engine is None`: bicubic).
    The engine side only: reading and writing the files is not timed."""
    if engine is None:
        from alignvar_edge.runtimes.tiling import upscale_plane_bicubic
        return lambda: [[upscale_plane_bicubic(lr[..., c], scale) for c in range(3)] for lr in lrs]
    return lambda: list(engine.upscale_many(lrs, overlap))


def image_summary(times_ms: list[float], side_hw: tuple[int, int], scale: int,
                  geometry: dict[str, Any] | None) -> dict[str, Any]:
    """Per-image statistics and whole-image SR MP/s (median run), with the raw times."""
    mp = side_hw[0] * side_hw[1] * scale * scale / 1e6
    return {"lr": list(side_hw), "sr": [side_hw[0] * scale, side_hw[1] * scale],
            **_timing(times_ms, mp, "image", geometry)}


def folder_summary(times_ms: list[float], side_hw: tuple[int, int], count: int, scale: int,
                   geometry: dict[str, Any] | None) -> dict[str, Any]:
    """Per-folder statistics and the folder's SR MP/s (median run), with the raw times. `image_lr`
    and `image_sr` are each image's size; megapixels, tiles and calls are the folder's totals."""
    mp = count * side_hw[0] * side_hw[1] * scale * scale / 1e6
    return {"images": count, "image_lr": list(side_hw), "image_sr": [side_hw[0] * scale, side_hw[1] * scale],
            **_timing(times_ms, mp, "folder", geometry)}


def _timing(times_ms: list[float], mp: float, what: str, geometry: dict[str, Any] | None) -> dict[str, Any]:
    per = percentiles(times_ms)
    out: dict[str, Any] = {
        "sr_megapixels": mp, "runs": len(times_ms), PER_RUN[what]: per,
        "megapixels_per_s": round(mp / (per["p50"] / 1e3), 6) if per["p50"] > 0 else None,
        "raw_ms": [round(float(t), 3) for t in times_ms],
    }
    if geometry:
        out.update(geometry)
    out.update(tails_omitted(len(times_ms), "--image-runs {n}"))
    return out
