"""Area and bicubic resampling as exact constant matrices.

`F.interpolate(mode='area'|'bicubic')` is replaced by Y = M_h X M_w^T with constant matrices that
reproduce PyTorch's arithmetic (bicubic: a = -0.75, align_corners=False, border indices clamped;
area: adaptive average pooling). Training, reference inference and every exported graph use the
same matrices, so ONNX Runtime, OpenVINO, TensorRT and Core ML all see two MatMuls instead of a
Resize op that some of them lack (Core ML has no bicubic) or run slowly (ORT's cubic Resize).
The matrices are built in numpy by matrices.py, which the torch-free bench also uses.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alignvar_edge.model.matrices import resize_matrix     # the matrices themselves: torch-free

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


# ------------------------------------------------------------------------------------------------
# PIL's bicubic resize of 8-bit images, exactly (VARSR resizes its LR input with PIL)
# ------------------------------------------------------------------------------------------------
PIL_PRECISION_BITS = 22        # Pillow's fixed-point precision for 8-bit resampling (32 - 8 - 2)
_SPLIT = 2 ** 11               # coefficients = hi * 2^11 + lo keeps every float32 sum an exact integer


def _pil_cubic(x: float, a: float = -0.5) -> float:
    """Pillow's bicubic kernel (a = -0.5, support 2)."""
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_bicubic_coefficients(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) int64 fixed-point weights Pillow uses to resize one axis of an 8-bit image.

    Taps beyond the border are dropped and the rest renormalised (Pillow's rule, unlike PyTorch's
    clamped taps); each weight is rounded half away from zero at 2^22.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    m = np.zeros((n_out, n_in), dtype=np.int64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)          # C's truncating (int) cast, then clamp
        hi = min(int(center + support + 0.5), n_in)
        w = [_pil_cubic((j - center + 0.5) / filterscale) for j in range(lo, hi)]
        total = sum(w)
        for j, wj in zip(range(lo, hi), w):
            v = (wj / total if total != 0.0 else wj) * (1 << PIL_PRECISION_BITS)
            m[i, j] = int(v - 0.5) if v < 0 else int(v + 0.5)
    return m


class PILBicubicResize(nn.Module):
    """Square RGB images in [0, 1] -> Pillow's `Image.resize(size, BICUBIC)` of their uint8 form.

    Pillow resizes rows, then columns, rounding to uint8 after each pass. Written as MatMul, Floor
    and Clip on integer-valued float32 tensors whose every partial sum stays below 2^24, so any
    runtime computing in float32 reproduces Pillow bit for bit (not so in fp16 or TF32).
    """

    # non-persistent buffers (register_buffer below)
    k_hi: torch.Tensor
    k_lo: torch.Tensor

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        k = pil_bicubic_coefficients(n_in, n_out)
        lo = np.mod(k, _SPLIT)
        hi = (k - lo) // _SPLIT
        # integer buffers: `model.to(half)` leaves them alone (bf16 cannot hold these integers)
        self.register_buffer("k_hi", torch.from_numpy(hi.T.astype(np.int32)).contiguous(), persistent=False)
        self.register_buffer("k_lo", torch.from_numpy(lo.T.astype(np.int32)).contiguous(), persistent=False)

    def _pass(self, u8_rows: torch.Tensor) -> torch.Tensor:
        """Resize the last axis of integer-valued x (0..255) as Pillow does: floor((x.k + 2^21) / 2^22)."""
        s_hi = torch.matmul(u8_rows, self.k_hi.float())          # |.| < 2^24: exact
        s_lo = torch.matmul(u8_rows, self.k_lo.float())
        q = torch.floor(s_hi / _SPLIT)
        r = s_hi - q * _SPLIT                                    # in [0, 2^11)
        half = float(1 << (PIL_PRECISION_BITS - 1))
        out = q + torch.floor((r * _SPLIT + s_lo + half) / float(1 << PIL_PRECISION_BITS))
        return torch.clamp(out, 0.0, 255.0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        # always float32, also in a half-precision model: the sums reach 2^24, past fp16's range
        # (the resize came out as inf, and every token after it wrong, on a GPU in fp16)
        u8 = torch.round(torch.clamp(x_BCHW.float(), 0.0, 1.0) * 255.0)
        rows = self._pass(u8)                                    # horizontal first, as Pillow
        cols = self._pass(rows.transpose(-1, -2)).transpose(-1, -2)
        return (cols / 255.0).to(x_BCHW.dtype)
