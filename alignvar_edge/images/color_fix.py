"""VARSR's AdaIN colour fix on whole images, torch-free: every engine's `upscale` applies it for
models whose own test script does (VARSR's), so an engine's image is the model's image.

The SR image is normalised per channel and given the mean and deviation of the LR image resized
to the output size with Pillow's bicubic filter (what VARSR's script matches against). VARSR's
script rounds its SR to 8 bits before the fix and truncates after; here both stay float, within
one 8-bit level of it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

EPS = 1e-5              # added to each channel's variance (VARSR's calc_mean_std), unbiased as there

# the float64 rows a strip converts at once: about this many bytes (the image is never converted whole)
_STRIP_BYTES = 1 << 20

Floats = Callable[[np.ndarray], np.ndarray]     # rows of an image -> its float samples in [0, 1]
Stats = tuple[np.ndarray, np.ndarray]           # per channel: mean, deviation (float64)


def _strips(x_HWC: np.ndarray) -> range:
    """The first row of each strip of `x_HWC`."""
    rows = max(1, _STRIP_BYTES // (8 * x_HWC.shape[1] * x_HWC.shape[2]))
    return range(0, x_HWC.shape[0], rows)


def _mean_std(x_HWC: np.ndarray, floats: Floats = np.asarray) -> Stats:
    """Per-channel mean and deviation (unbiased, + EPS) of `floats(x_HWC)`, summed in float64 a
    strip at a time: the mean first, then the squared deviations from it, as numpy's var does."""
    rows = _strips(x_HWC)
    step, n, c = rows.step, x_HWC.shape[0] * x_HWC.shape[1], x_HWC.shape[2]

    def summed(term: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return sum((term(floats(x_HWC[y:y + step]).astype(np.float64)).reshape(-1, c).sum(axis=0) for y in rows),
                   np.zeros(c))
    mean = summed(lambda f: f) / n
    return mean, np.sqrt(summed(lambda f: (f - mean) ** 2) / (n - 1) + EPS)


def _reference_floats(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) / np.float32(255.0)


def adain_color_fix(sr_HWC: np.ndarray, reference_HWC: np.ndarray) -> np.ndarray:
    """sr normalised per channel, then scaled and shifted to the reference's statistics; float32
    in [0, 1]."""
    return _fixed_rows(sr_HWC, _mean_std(sr_HWC), _mean_std(reference_HWC))


def _fixed_rows(sr_HWC: np.ndarray, sr_stats: Stats, ref_stats: Stats) -> np.ndarray:
    (sr_mean, sr_std), (ref_mean, ref_std) = sr_stats, ref_stats
    out = (sr_HWC.astype(np.float64) - sr_mean) / sr_std * ref_std + ref_mean
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _reference_u8(lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """`color_reference` as its 8-bit samples (a quarter of its float32 bytes)."""
    from PIL import Image
    u8 = np.round(np.clip(lr_HWC, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w = u8.shape[:2]
    return np.asarray(Image.fromarray(u8, "RGB").resize((w * scale, h * scale), Image.Resampling.BICUBIC))


def color_reference(lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """The LR RGB image (float in [0, 1]) at `scale` times its size, as VARSR's script makes its
    colour reference: its 8-bit form resized by Pillow's bicubic filter."""
    return _reference_floats(_reference_u8(lr_HWC, scale))


def color_fixed(sr_HWC: np.ndarray, lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """The SR image of `lr_HWC` with VARSR's colour fix toward that LR image."""
    out = np.empty(sr_HWC.shape, np.float32)
    for y, rows in fixed_strips(sr_HWC, reference_stats(lr_HWC, scale)):
        out[y:y + rows.shape[0]] = rows
    return out


def reference_stats(lr_HWC: np.ndarray, scale: int) -> Stats:
    """The statistics the fix gives the SR image of `lr_HWC`: `color_reference`'s, read from its
    8-bit samples. Taken before the SR image exists, Pillow's resized reference is gone by then."""
    return _mean_std(_reference_u8(lr_HWC, scale), _reference_floats)


def fixed_strips(sr_HWC: np.ndarray, reference: Stats) -> Iterator[tuple[int, np.ndarray]]:
    """`sr_HWC` fixed toward `reference` (`reference_stats`) as (y0, rows) strips: every float
    conversion is a strip's, so besides `sr_HWC` the fix holds about a strip."""
    sr_stats = _mean_std(sr_HWC)
    for y in (rows := _strips(sr_HWC)):
        yield y, _fixed_rows(sr_HWC[y:y + rows.step], sr_stats, reference)
