"""Area and bicubic resampling as exact constant matrices.

`F.interpolate(mode='area'|'bicubic')` is replaced by Y = M_h X M_w^T with constant matrices that
reproduce PyTorch's arithmetic (bicubic: a = -0.75, align_corners=False, border indices clamped;
area: adaptive average pooling). Training, reference inference and every exported graph use the
same matrices, so ONNX Runtime, OpenVINO, TensorRT and Core ML all see two MatMuls instead of a
Resize op that some of them lack (Core ML has no bicubic) or run slowly (ORT's cubic Resize).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

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


def apply_matrix(x_BCHW: torch.Tensor, m_hH: torch.Tensor, m_wW: torch.Tensor) -> torch.Tensor:
    """Separable resampling: rows with m_hH (h, H), columns with m_wW (w, W)."""
    return torch.matmul(torch.matmul(m_hH, x_BCHW), m_wW.transpose(0, 1))


class ResampleBank(nn.Module):
    """Holds the constant matrices for a fixed set of square (kind, n_in, n_out) resizes.

    Buffers are non-persistent: they are derived from the config, never stored in checkpoints.
    """

    def __init__(self, pairs: list[tuple[str, int, int]]):
        super().__init__()
        for kind, n_in, n_out in sorted(set(pairs)):
            if n_in != n_out:
                m = torch.from_numpy(resize_matrix(kind, n_in, n_out)).float()
                self.register_buffer(self._key(kind, n_in, n_out), m, persistent=False)

    @staticmethod
    def _key(kind: str, n_in: int, n_out: int) -> str:
        return f"{kind}_{n_in}_{n_out}"

    def resize(self, kind: str, x_BCHW: torch.Tensor, size: int) -> torch.Tensor:
        n_in = x_BCHW.shape[-1]
        if n_in == size:
            return x_BCHW
        m = getattr(self, self._key(kind, n_in, size))
        return apply_matrix(x_BCHW, m, m)

    def area(self, x_BCHW: torch.Tensor, size: int) -> torch.Tensor:
        return self.resize("area", x_BCHW, size)

    def bicubic(self, x_BCHW: torch.Tensor, size: int) -> torch.Tensor:
        return self.resize("bicubic", x_BCHW, size)
