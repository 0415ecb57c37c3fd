"""PyTorch's area and bicubic resampling along one axis as constant numpy matrices (bicubic:
a = -0.75, align_corners=False, border indices clamped; area: adaptive average pooling), and the
bicubic upscale they make. No torch here: the model's ResampleBank (resample.py) turns them into
buffers, and the bench's bicubic baseline and the demo apply them with numpy where no PyTorch is.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["CUBIC_A", "area_matrix", "bicubic_matrix", "bicubic_upscale", "resize_matrix"]

CUBIC_A = -0.75


def _cubic_weights(t: float, a: float = CUBIC_A) -> list[float]:
    """Keys' cubic convolution weights for taps at offsets -1, 0, 1, 2 from floor(src)."""

    def near(x: float) -> float:      # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:       # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of PyTorch's bicubic interpolation along one axis."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5           # cubic: no clamping of the source coordinate
        base = math.floor(src)
        for off, w in zip((-1, 0, 1, 2), _cubic_weights(src - base)):
            j = min(max(base + off, 0), n_in - 1)   # clamped border taps
            m[i, j] += w
    return m


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of adaptive average pooling (PyTorch's 'area' mode)."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)     # ceil
        m[i, start:end] = 1.0 / (end - start)
    return m


def resize_matrix(kind: str, n_in: int, n_out: int) -> np.ndarray:
    if n_in == n_out:
        return np.eye(n_in)
    if kind == "area":
        return area_matrix(n_in, n_out)
    if kind == "bicubic":
        return bicubic_matrix(n_in, n_out)
    raise ValueError(f"unknown resampling kind {kind!r}")


def bicubic_upscale(lr_HWC: np.ndarray, scale: int) -> np.ndarray:
    """PyTorch-convention bicubic (the same matrices the model uses), clipped to [0, 1]. Not
    `tiling.upscale_plane_bicubic` (Pillow's a = -0.5), which upscales an alpha plane beside the
    model's RGB: this one is the bench's and demo's baseline, so it is the model's own kernel."""
    h, w, c = lr_HWC.shape
    mh, mw = bicubic_matrix(h, h * scale), bicubic_matrix(w, w * scale)
    # separable, one axis at a time as two BLAS products: the three-operand einsum it replaces
    # summed every (h, w) pair for each output pixel, 3/4 of `eval`'s time on 512 px photos
    rows = (mh @ lr_HWC.astype(np.float64).reshape(h, w * c)).reshape(h * scale, w, c)
    return np.clip(mw @ rows, 0, 1).astype(np.float32)
