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

Options (config fields; their defaults give exactly the form above):
- `sca_exclude_radius` r >= 0: token pairs within Chebyshev distance r on the scale's grid get no
  bias (r = 0: the diagonal), so SCA cannot spend itself on a token's affinity with itself.
- `sca_gate` kappa > 0: g is divided by the LR's noise level (Immerkaer's estimate, sigma_n, times
  the Laplacian's noise gain sqrt(20)), and d_i = v_i / sqrt(|v_i|^2 + eps + (kappa c_k)^2), c_k the
  rms descriptor norm that unit white noise gives at scale k (measured once, seeded). Structure at
  the noise level gets |d| ~ 1/sqrt(1 + kappa^2) or less instead of a unit-norm noise descriptor.
- `sca_alpha_param` "softplus": alpha = alpha_max tanh(softplus(a) / alpha_max), smooth and never
  flat, so no head is permanently dead at 0 (the clamp has zero gradient below 0).

Everything is conv / matmul / elementwise with constant weights, so it exports to every backend.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alignvar_edge.model.resample import ResampleBank

_LUMA = (0.299, 0.587, 0.114)
LAPLACIAN_NOISE_GAIN = 20.0 ** 0.5      # std of the 4-neighbour Laplacian of unit white noise
NOISE_FLOOR = 0.5 / 255                 # sigma_n below this counts as this (clean images)


def replicate_pad_matrix(n: int, pad: int) -> torch.Tensor:
    """(n + 2 pad, n) matrix that pads a signal by repeating its border samples."""
    idx = torch.clamp(torch.arange(-pad, n + pad), 0, n - 1)
    return F.one_hot(idx, n).float()


class SCAGuidance(nn.Module):
    """Turns an LR tile into per-scale token descriptors D_k (B, p_k^2, kernel^2)."""

    # constant, non-persistent buffers (register_buffer below)
    noise_kernel: torch.Tensor
    lap_kernel: torch.Tensor
    luma: torch.Tensor
    pad1: torch.Tensor
    gather_kernel: torch.Tensor

    def __init__(self, lr_size: int, patch_nums: tuple[int, ...], kernel: int = 3, eps: float = 1e-4,
                 gate: float = 0.0, exclude_radius: int = -1):
        super().__init__()
        self.kernel = kernel
        self.eps = eps
        self.gate = gate
        self.exclude_radius = exclude_radius
        # Immerkaer's noise mask: zero response to constant, linear and quadratic surfaces
        imm = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
        self.register_buffer("noise_kernel", imm.view(1, 1, 3, 3), persistent=False)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("lap_kernel", lap.view(1, 1, 3, 3), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pad1", replicate_pad_matrix(lr_size, 1), persistent=False)
        # one-hot kernels gather each token's k x k neighbourhood as k^2 channels (an unfold)
        eye = torch.eye(kernel * kernel).view(kernel * kernel, 1, kernel, kernel)
        self.register_buffer("gather_kernel", eye, persistent=False)
        pairs = [("area" if p <= lr_size else "bicubic", lr_size, p) for p in patch_nums]
        self.resample = ResampleBank(pairs)
        # a meta-device model (`info`: shapes and FLOPs only) has no values to measure the gain with
        measure = gate > 0 and not self.lap_kernel.is_meta
        self.noise_gain = {p: self._noise_gain(lr_size, p) if measure else 1.0 for p in patch_nums}

    def guidance(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """Laplacian of the LR luma, (B, 1, h, w); with the gate, in units of its noise std."""
        y = (lr_B3hw * self.luma).sum(dim=1, keepdim=True)
        y = torch.matmul(torch.matmul(self.pad1, y), self.pad1.transpose(0, 1))
        g = F.conv2d(y, self.lap_kernel)
        if self.gate <= 0:
            return g
        sigma_B111 = self.noise_sigma(y)
        return g / (torch.clamp(sigma_B111, min=NOISE_FLOOR) * LAPLACIAN_NOISE_GAIN)

    def noise_sigma(self, y_padded_B1HW: torch.Tensor) -> torch.Tensor:
        """Immerkaer (1996): sigma_n = sqrt(pi/2) / 6 * mean |y * N|, per image, (B, 1, 1, 1)."""
        r = F.conv2d(y_padded_B1HW, self.noise_kernel).abs()
        return r.mean(dim=(2, 3), keepdim=True) * ((torch.pi / 2) ** 0.5 / 6)

    def _raw_descriptors(self, g_B1hw: torch.Tensor, p: int) -> torch.Tensor:
        kind = "area" if p <= g_B1hw.shape[-1] else "bicubic"
        g = self.resample.resize(kind, g_B1hw, p)
        v = F.conv2d(g, self.gather_kernel, padding=self.kernel // 2)        # B, k^2, p, p
        v = v.flatten(2).transpose(1, 2)                                     # B, p^2, k^2
        return v - v.mean(dim=-1, keepdim=True)

    @torch.no_grad()
    def _noise_gain(self, lr_size: int, p: int, n: int = 16) -> float:
        """rms |v| at scale p for unit white noise (seeded): the descriptor norm of pure noise."""
        noise = torch.randn(n, 1, lr_size + 2, lr_size + 2, generator=torch.Generator().manual_seed(0))
        g = F.conv2d(noise, self.lap_kernel) / LAPLACIAN_NOISE_GAIN
        v = self._raw_descriptors(g, p)
        return float((v * v).sum(-1).mean().sqrt())

    def descriptors(self, g_B1hw: torch.Tensor, p: int) -> torch.Tensor:
        """Centred, normalised k x k neighbourhoods of the guidance at scale p: (B, p*p, k*k)."""
        v = self._raw_descriptors(g_B1hw, p)
        eps = self.eps + (self.gate * self.noise_gain[p]) ** 2 if self.gate > 0 else self.eps
        return v * torch.rsqrt((v * v).sum(dim=-1, keepdim=True) + eps)

    def keep(self, p: int) -> torch.Tensor | None:
        """(p^2, p^2): 0 for pairs within the excluded window, 1 elsewhere; None: nothing excluded."""
        if self.exclude_radius < 0:
            return None
        ij = torch.stack(torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")).flatten(1)
        cheb = (ij[:, :, None] - ij[:, None, :]).abs().amax(0)
        return (cheb > self.exclude_radius).float()


def affinity(d_q: torch.Tensor, d_k: torch.Tensor) -> torch.Tensor:
    """S = D_q D_k^T, (B, lq, lk), values in [-1, 1]."""
    return torch.matmul(d_q, d_k.transpose(1, 2))


def clamp_alpha(alpha_H: torch.Tensor, alpha_max: float) -> torch.Tensor:
    return torch.clamp(alpha_H, 0.0, alpha_max)


def alpha_from_raw(raw_H: torch.Tensor, param: str, alpha_max: float) -> torch.Tensor:
    """The bias weight alpha in [0, alpha_max] from the stored parameter (config.ALPHA_PARAMS)."""
    if param == "softplus":
        return alpha_max * torch.tanh(F.softplus(raw_H) / alpha_max)
    return clamp_alpha(raw_H, alpha_max)


def raw_from_alpha(alpha: float, param: str, alpha_max: float) -> float:
    """The stored parameter that gives `alpha` (the inverse of alpha_from_raw inside its range)."""
    if param == "softplus":
        y = alpha_max * math.atanh(alpha / alpha_max)
        return y + math.log(-math.expm1(-y))        # softplus^-1(y), stable for large y
    return alpha


def sca_bias(alpha_H: torch.Tensor, s_Bqk: torch.Tensor) -> torch.Tensor:
    """alpha_h * S as an additive attention bias, (B, H, lq, lk)."""
    return alpha_H.view(1, -1, 1, 1) * s_Bqk.unsqueeze(1)
