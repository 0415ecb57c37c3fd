"""VARSR's AdaIN colour fix on whole images, torch-free: every engine's `upscale` applies it for
models whose own test script does (VARSR's), so an engine's image is the model's image.

The SR image is normalised per channel and given the mean and deviation of the LR image resized
to the output size with Pillow's bicubic filter (what VARSR's script matches against). VARSR's
script rounds its SR to 8 bits before the fix and truncates after; here both stay float, within
one 8-bit level of it.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5              # added to each channel's variance (VARSR's calc_mean_std), unbiased as there


def _mean_std(x_HWC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x_HWC.reshape(-1, x_HWC.shape[-1]).astype(np.float64)
    return flat.mean(axis=0), np.sqrt(flat.var(axis=0, ddof=1) + EPS)


def adain_color_fix(sr_HWC: np.ndarray, reference_HWC: np.ndarray) -> np.ndarray:
    """sr normalised per channel, then scaled and shifted to the reference's statistics; float32
    in [0, 1]."""
    sr_mean, sr_std = _mean_std(sr_HWC)
    ref_mean, ref_std = _mean_std(reference_HWC)
    out = (sr_HWC.astype(np.float64) - sr_mean) / sr_std * ref_std + ref_mean
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def color_reference(lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """The LR RGB image (float in [0, 1]) at `scale` times its size, as VARSR's script makes its
    colour reference: its 8-bit form resized by Pillow's bicubic filter."""
    from PIL import Image
    u8 = np.round(np.clip(lr_HWC, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w = u8.shape[:2]
    big = Image.fromarray(u8, "RGB").resize((w * scale, h * scale), Image.Resampling.BICUBIC)
    return np.asarray(big, np.float32) / 255.0


def color_fixed(sr_HWC: np.ndarray, lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """The SR image of `lr_HWC` with VARSR's colour fix toward that LR image."""
    return adain_color_fix(sr_HWC, color_reference(lr_HWC, scale))
