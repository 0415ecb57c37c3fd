"""Whole-image timing: what a user feels is an image, not a tile.

One LR photograph (default 128x128 -> 512x512 SR) goes through `Engine.upscale`'s tiling
(overlapping tiles, fed in the engine's batches, the last batch padded, blended), so the figure
counts the overlap's extra tiles, the padding of a short last batch and the blending. MP/s is SR
megapixels of the image (not of the tiles) per second of the median run.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from alignvar_edge.bench.stats import percentiles, p99_omitted
from alignvar_edge.errors import InputError

__all__ = ["IMAGE_LR", "photo_lr", "image_geometry", "image_call", "image_summary"]

IMAGE_LR = 128          # LR side of the timed image: 128x128 -> 512x512 at x4, a real photo size


def photo_lr(side: int, images: Any = None) -> np.ndarray:
    """An LR image side x side x 3 (float32 in [0, 1]): the centre square of the largest bundled
    held-out photograph (or of `images`), resized bicubic to side x side."""
    from PIL import Image

    from alignvar_edge.quantize.calibration.tiles import _load_images
    if side < 1:
        raise InputError(f"--image-size must be >= 1 LR pixel, got {side}")
    img = max(_load_images("heldout", images), key=lambda a: a.shape[0] * a.shape[1])[..., :3]
    n = min(img.shape[:2])
    top, left = (img.shape[0] - n) // 2, (img.shape[1] - n) // 2
    crop = Image.fromarray((np.clip(img[top:top + n, left:left + n], 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(crop.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0


def image_geometry(side_hw: tuple[int, int], tile: int, batch: int, overlap: int | None = None) -> dict[str, Any]:
    """Tiles, engine calls and padded tiles one image costs at this tile, overlap and batch."""
    from alignvar_edge.runtimes.tiling import default_overlap, tile_starts
    ov = default_overlap(tile) if overlap is None else overlap
    h, w = (max(tile, s) for s in side_hw)
    n = len(tile_starts(h, tile, ov)) * len(tile_starts(w, tile, ov))
    calls = -(-n // max(1, batch))
    return {"tiles": n, "overlap": ov, "batch": batch, "calls": calls, "padded_tiles": calls * batch - n}


def image_call(engine: Any, lr: np.ndarray, scale: int, overlap: int | None = None) -> Callable[[], object]:
    """One timed unit: the whole image through the engine's tiling (`engine is None`: bicubic)."""
    if engine is None:
        from alignvar_edge.runtimes.tiling import upscale_plane_bicubic
        return lambda: [upscale_plane_bicubic(lr[..., c], scale) for c in range(3)]
    from alignvar_edge.runtimes.tiling import upscale_rgb
    return lambda: upscale_rgb(engine, lr, overlap=overlap)


def image_summary(times_ms: list[float], side_hw: tuple[int, int], scale: int,
                  geometry: dict[str, Any] | None) -> dict[str, Any]:
    """Per-image statistics and whole-image SR MP/s (median run), with the raw times."""
    mp = side_hw[0] * side_hw[1] * scale * scale / 1e6
    per = percentiles(times_ms)
    out: dict[str, Any] = {
        "lr": list(side_hw), "sr": [side_hw[0] * scale, side_hw[1] * scale], "sr_megapixels": mp,
        "runs": len(times_ms), "per_image_ms": per,
        "megapixels_per_s": round(mp / (per["p50"] / 1e3), 6) if per["p50"] > 0 else None,
        "raw_ms": [round(float(t), 3) for t in times_ms],
    }
    if geometry:
        out.update(geometry)
    why = p99_omitted(len(times_ms))
    if why:
        out["p99_omitted"] = why
    return out
