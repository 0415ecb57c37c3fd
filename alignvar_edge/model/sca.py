r"""SCA: Spatial Consistency Autoregression (AlignVAR).

An adaptive, data-dependent mask re-weights *intra-scale* attention toward tokens whose LR
structure is similar. The paper does not publish its exact formula; the form used here is:

1. Structural guidance: the Laplacian of the LR luma, g = lap(Y(lr)), at LR resolution
   (replicate-padded border, so image edges add no false structure).
2. For scale k, g is resampled to p_k x p_k (area down, bicubic up: the constant matrices).
3. Each token gets a descriptor d_i: its k x k guidance neighbourhood (default 3 x 3), centred
   (mean removed) and L2-normalised, d_i = v_i / sqrt(|v_i|^2 + eps). Flat regions give d ~ 0.
4. Affinity S_k = D_k D_k^T in [-1, 1]; flat tokens have ~0 affinity with everything.
5. Bias: alpha_{l,h} * S_k is added to the attention logits of the scale's own (query k, key k)
   block, with alpha learned per layer l and head h and clamped to [0, alpha_max], so the bias is
   bounded (|bias| <= alpha_max) and fp16 stays finite. alpha = 0 adds exact zeros: plain attention.

Everything is conv / matmul / elementwise with constant weights, so it exports to every backend.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alignvar_edge.model.resample import ResampleBank

_LUMA = (0.299, 0.587, 0.114)


def replicate_pad_matrix(n: int, pad: int) -> torch.Tensor:
    """(n + 2 pad, n) matrix that pads a signal by repeating its border samples."""
    idx = torch.clamp(torch.arange(-pad, n + pad), 0, n - 1)
    return F.one_hot(idx, n).float()


class SCAGuidance(nn.Module):
    """Turns an LR tile into per-scale token descriptors D_k (B, p_k^2, kernel^2)."""

    def __init__(self, lr_size: int, patch_nums: tuple[int, ...], kernel: int = 3, eps: float = 1e-4):
        super().__init__()
        self.kernel = kernel
        self.eps = eps
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("lap_kernel", lap.view(1, 1, 3, 3), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pad1", replicate_pad_matrix(lr_size, 1), persistent=False)
        # one-hot kernels gather each token's k x k neighbourhood as k^2 channels (an unfold)
        eye = torch.eye(kernel * kernel).view(kernel * kernel, 1, kernel, kernel)
        self.register_buffer("gather_kernel", eye, persistent=False)
        pairs = [("area" if p <= lr_size else "bicubic", lr_size, p) for p in patch_nums]
        self.resample = ResampleBank(pairs)

    def guidance(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """Laplacian of the LR luma, (B, 1, h, w)."""
        y = (lr_B3hw * self.luma).sum(dim=1, keepdim=True)
        y = torch.matmul(torch.matmul(self.pad1, y), self.pad1.transpose(0, 1))
        return F.conv2d(y, self.lap_kernel)

    def descriptors(self, g_B1hw: torch.Tensor, p: int) -> torch.Tensor:
        """Centred, normalised k x k neighbourhoods of the guidance at scale p: (B, p*p, k*k)."""
        kind = "area" if p <= g_B1hw.shape[-1] else "bicubic"
        g = self.resample.resize(kind, g_B1hw, p)
        v = F.conv2d(g, self.gather_kernel, padding=self.kernel // 2)        # B, k^2, p, p
        v = v.flatten(2).transpose(1, 2)                                     # B, p^2, k^2
        v = v - v.mean(dim=-1, keepdim=True)
        return v * torch.rsqrt((v * v).sum(dim=-1, keepdim=True) + self.eps)


def affinity(d_q: torch.Tensor, d_k: torch.Tensor) -> torch.Tensor:
    """S = D_q D_k^T, (B, lq, lk), values in [-1, 1]."""
    return torch.matmul(d_q, d_k.transpose(1, 2))


def clamp_alpha(alpha_H: torch.Tensor, alpha_max: float) -> torch.Tensor:
    return torch.clamp(alpha_H, 0.0, alpha_max)


def sca_bias(alpha_H: torch.Tensor, s_Bqk: torch.Tensor) -> torch.Tensor:
    """alpha_h * S as an additive attention bias, (B, H, lq, lk)."""
    return alpha_H.view(1, -1, 1, 1) * s_Bqk.unsqueeze(1)
