"""Fidelity of an engine's output: against the PyTorch reference and against the HR photographs.

Tokens first (an autoregressive model is its choices), then images: PSNR/SSIM on the Y channel
with `scale` border pixels cropped (parity.py holds the formulas). The HR tiles are crops of the
held-out photographs whose degraded versions are the LR input, so `vs_hr` is real SR quality.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from alignvar_edge.export.parity import psnr, psnr_y, ssim_y, token_agreement

__all__ = ["bicubic_tiles", "fidelity"]


def _r(x: float, nd: int = 3) -> float:
    return x if math.isinf(x) else round(x, nd)


def _images(ref: np.ndarray, test: np.ndarray, scale: int) -> dict[str, Any]:
    try:
        ssim: float | None = _r(ssim_y(ref, test, border=scale), 5)
    except ImportError:            # scikit-image is not part of alignvar-edge[device]
        ssim = None
    return {"psnr_y_db": _r(psnr_y(ref, test, border=scale)), "ssim_y": ssim, "psnr_rgb_db": _r(psnr(ref, test))}


def fidelity(sr: np.ndarray, tokens: Sequence[np.ndarray] | None, ref_sr: np.ndarray,
             ref_tokens: Sequence[np.ndarray], hr: np.ndarray | None, scale: int,
             reference: str | None = None) -> dict[str, Any]:
    """{"tiles", "vs_reference": tokens + images, "vs_hr": images}; tokens=None for baselines without,
    hr=None where no HR tiles exist (golden outputs only: `vs_hr` is None); `reference` names what
    made `ref_sr` where it is not the plain PyTorch model (`vs_reference.reference`)."""
    vs_ref = _images(ref_sr, sr, scale)
    if reference is not None:
        vs_ref["reference"] = reference
    vs_ref["max_abs_diff"] = round(float(np.max(np.abs(np.asarray(ref_sr, np.float64) - sr))), 6)
    if tokens is not None:
        agree = token_agreement(ref_tokens, tokens)
        vs_ref["token_agreement"] = round(agree["overall"], 6)
        vs_ref["token_agreement_per_scale"] = [round(a, 6) for a in agree["per_scale"]]
        vs_ref["identical_tiles"] = round(agree["identical_samples"], 4)
    else:
        vs_ref["token_agreement"] = None
    return {"tiles": int(sr.shape[0]), "vs_reference": vs_ref,
            "vs_hr": None if hr is None else _images(hr, sr, scale)}


def bicubic_tiles(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline on LR tiles (N, 3, h, w) -> (N, 3, sh, sw), the model's own kernel."""
    from alignvar_edge.model.matrices import bicubic_upscale      # numpy only: no torch on a device
    return np.stack([bicubic_upscale(t.transpose(1, 2, 0), scale).transpose(2, 0, 1) for t in lr])
