"""Multi-scale residual VQ-VAE with VAR semantics (parameter names follow VAR's `vqvae.py`).

image -> encoder -> f (Cvae x P x P) -> residual quantisation over patch_nums -> f_hat -> decoder.

Residual quantisation, scale k = 0..K-1 (VAR):
    r_k   = area(f - f_hat_{k-1}, p_k)              residual at p_k x p_k
    idx_k = nearest codebook entry of each r_k token
    h_k   = phi_{k/(K-1)}(bicubic(E[idx_k], P))     phi(x) = (1-r) x + r conv3x3(x)
    f_hat_k = f_hat_{k-1} + h_k
With `residual_to_bicubic` the codes describe HR - bicubic(LR) and the decoder's output is added
to bicubic(LR): the same tokens, but the reconstruction leans on the LR image.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.model.resample import ResampleBank


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, ch, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention (used at the lowest resolution)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)
        self.w_ratio = ch ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        w = torch.softmax(torch.matmul(q.transpose(1, 2), k) * self.w_ratio, dim=-1)  # B,HW,HW
        h = torch.matmul(v, w.transpose(1, 2)).reshape(B, C, H, W)
        return x + self.proj_out(h)


class Downsample2x(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2x(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nearest x2 exports as one Resize (nearest, integer scale: exact in every runtime). The
        # earlier broadcast-and-reshape form made a rank-6 tensor (Core ML rejects rank > 5) and
        # ran as a generic Expand, 60x slower than Resize in ONNX Runtime on a 64x32x32 map.
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """Container with VAR's attribute names (block, attn, downsample/upsample; block_1, attn_1,
    block_2 for the middle). Each instance sets only the submodules of its role; `downsample` and
    `upsample` exist only on levels that resample (their state_dict keys follow), so test them with
    hasattr."""

    block: nn.ModuleList
    attn: nn.ModuleList
    downsample: Downsample2x
    upsample: Upsample2x
    block_1: ResnetBlock
    attn_1: nn.Module           # AttnBlock, or Identity without self-attention
    block_2: ResnetBlock


class Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_ch: int,
                 groups: int, using_sa: bool, in_ch: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in = ch
        n = len(ch_mult)
        for i, m in enumerate(ch_mult):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                lvl.block.append(ResnetBlock(c_in, ch * m, groups))
                c_in = ch * m
                if i == n - 1 and using_sa:
                    lvl.attn.append(AttnBlock(c_in, groups))
            if i != n - 1:
                lvl.downsample = Downsample2x(c_in)
            self.down.append(lvl)
        self.mid = _Level()
        self.mid.block_1 = ResnetBlock(c_in, c_in, groups)
        self.mid.attn_1 = AttnBlock(c_in, groups) if using_sa else nn.Identity()
        self.mid.block_2 = ResnetBlock(c_in, c_in, groups)
        self.norm_out = _norm(c_in, groups)
        self.conv_out = nn.Conv2d(c_in, z_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for lvl in cast("Iterable[_Level]", self.down):
            for j, block in enumerate(lvl.block):
                h = block(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_ch: int,
                 groups: int, using_sa: bool, out_ch: int = 3):
        super().__init__()
        n = len(ch_mult)
        c_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_ch, c_in, 3, padding=1)
        self.mid = _Level()
        self.mid.block_1 = ResnetBlock(c_in, c_in, groups)
        self.mid.attn_1 = AttnBlock(c_in, groups) if using_sa else nn.Identity()
        self.mid.block_2 = ResnetBlock(c_in, c_in, groups)
        up: list[nn.Module] = []
        for i in reversed(range(n)):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(c_in, ch * ch_mult[i], groups))
                c_in = ch * ch_mult[i]
                if i == n - 1 and using_sa:
                    lvl.attn.append(AttnBlock(c_in, groups))
            if i != 0:
                lvl.upsample = Upsample2x(c_in)
            up.insert(0, lvl)
        self.up = nn.ModuleList(up)
        self.norm_out = _norm(c_in, groups)
        self.conv_out = nn.Conv2d(c_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """`skip` (LR features) is added where the feature map reaches its resolution."""
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for lvl in cast("Iterable[_Level]", reversed(self.up)):
            if skip is not None and h.shape[-1] == skip.shape[-1]:
                h = h + skip
            for j, block in enumerate(lvl.block):
                h = block(h)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Conv2d):
    """phi(x) = (1 - r) x + r conv3x3(x): the residual refinement after upsampling."""

    def __init__(self, ch: int, ratio: float):
        super().__init__(ch, ch, 3, padding=1)
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 - self.ratio) + super().forward(x) * self.ratio


class PhiPartiallyShared(nn.Module):
    """`count` phi convs shared across K scales: scale k uses the one whose tick is nearest k/(K-1).

    The ticks are VAR's: count evenly spaced points on [1/(3n), 1 - 1/(3n)] for n = 4 convs and on
    [1/(2n), 1 - 1/(2n)] otherwise; the nearest tick is found in float64 and a tie goes to the lower
    index. Scales that sit half-way between two ticks (K = 10: scales 2 and 7) are decided by that
    arithmetic, so it is reproduced as is rather than rounded.
    """

    def __init__(self, ch: int, ratio: float, count: int):
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(ch, ratio) for _ in range(count)])
        edge = 1 / 3 / count if count == 4 else 1 / 2 / count
        self.ticks = np.linspace(edge, 1 - edge, count)

    def index_for(self, k: int, num_scales: int) -> int:
        return int(np.argmin(np.abs(self.ticks - k / (num_scales - 1))))

    def forward(self, x: torch.Tensor, k: int, num_scales: int) -> torch.Tensor:
        return self.qresi_ls[self.index_for(k, num_scales)](x)


class MultiScaleQuantizer(nn.Module):
    """VAR's residual quantiser (`VectorQuantizer2`), with the constant-matrix resampling."""

    def __init__(self, config: AlignVARConfig):
        super().__init__()
        self.patch_nums = config.patch_nums
        self.P = config.latent_size
        self.beta = config.vq_beta
        self.embedding = nn.Embedding(config.vq_vocab, config.vq_cvae)
        nn.init.uniform_(self.embedding.weight, -1.0 / config.vq_vocab, 1.0 / config.vq_vocab)
        self.quant_resi = PhiPartiallyShared(config.vq_cvae, config.vq_phi_ratio, config.vq_phi_count)
        self.phi_last = config.vq_phi_last
        pairs = [(k, p, self.P) for p in self.patch_nums for k in ("bicubic",)]
        pairs += [("area", self.P, p) for p in self.patch_nums]
        self.resample = ResampleBank(pairs)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def nearest(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry (squared L2)."""
        e = self.embedding.weight
        d = (z_NC * z_NC).sum(1, keepdim=True) - 2 * z_NC @ e.t() + (e * e).sum(1)[None]
        return torch.argmin(d, dim=1)

    def embed_scale(self, h_BCpp: torch.Tensor, k: int) -> torch.Tensor:
        """h_k = phi(bicubic(h, P)): a scale's contribution to f_hat (VARSR: no phi at the last)."""
        up = self.resample.bicubic(h_BCpp, self.P)
        if k == self.num_scales - 1 and not self.phi_last:
            return up
        return self.quant_resi(up, k, self.num_scales)

    def idx_to_h(self, idx_Bl: torch.Tensor, p: int) -> torch.Tensor:
        B = idx_Bl.shape[0]
        return self.embedding(idx_Bl).transpose(1, 2).reshape(B, -1, p, p)

    def soft_to_h(self, probs_BlV: torch.Tensor, p: int) -> torch.Tensor:
        """Expected embedding under a token distribution (HCC's soft prediction)."""
        B = probs_BlV.shape[0]
        return (probs_BlV @ self.embedding.weight).transpose(1, 2).reshape(B, -1, p, p)

    def quantize(self, f_BCPP: torch.Tensor, residuals_out: list[torch.Tensor] | None = None
                 ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Residual-quantise f. Returns per-scale indices, straight-through f_hat, VQ loss.

        `residuals_out`, if given, receives each scale's residual vectors r_k (N, C): what the
        codebook had to match (training uses them to re-seed unused codes).
        """
        f_rest = f_BCPP.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        idx_list: list[torch.Tensor] = []
        vq_loss = f_BCPP.new_zeros(())
        B, C = f_BCPP.shape[:2]
        for k, p in enumerate(self.patch_nums):
            z = self.resample.area(f_rest, p).permute(0, 2, 3, 1).reshape(-1, C)
            idx = self.nearest(z).view(B, p * p)
            if residuals_out is not None:
                residuals_out.append(z.detach())
            h = self.embed_scale(self.idx_to_h(idx, p), k)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            idx_list.append(idx)
            vq_loss = vq_loss + F.mse_loss(f_hat.detach(), f_BCPP) * self.beta + F.mse_loss(f_hat, f_BCPP.detach())
        vq_loss = vq_loss / self.num_scales
        f_hat_st = (f_hat.detach() - f_BCPP.detach()) + f_BCPP      # straight-through to the encoder
        return idx_list, f_hat_st, vq_loss

    def idx_to_fhat(self, idx_list: list[torch.Tensor]) -> list[torch.Tensor]:
        """Accumulated reconstructions F_k after each scale (teacher forcing, HCC targets)."""
        out: list[torch.Tensor] = []
        f_hat = None
        for k, (idx, p) in enumerate(zip(idx_list, self.patch_nums)):
            h = self.embed_scale(self.idx_to_h(idx, p), k)
            f_hat = h if f_hat is None else f_hat + h
            out.append(f_hat)
        return out

    def teacher_inputs(self, idx_list: list[torch.Tensor]) -> torch.Tensor:
        """Transformer inputs for scales 1..K-1: area(F_{k-1}, p_k), as (B, L-1, Cvae)."""
        f_hats = self.idx_to_fhat(idx_list[:-1])
        nxt = [self.resample.area(f, p).flatten(2).transpose(1, 2)
               for f, p in zip(f_hats, self.patch_nums[1:])]
        return torch.cat(nxt, dim=1)


class LRSkip(nn.Module):
    """LR features for the LR-aware decoder: two convs at LR resolution, the decoder's width there.

    With only the tokens to go on, a CPU-budget decoder learns to output the mean (bicubic); with
    the LR beside them it learns to sharpen and denoise, and the tokens add what the LR lacks.
    """

    def __init__(self, c: AlignVARConfig):
        super().__init__()
        n = len(c.vq_ch_mult)
        level = next(i for i in range(n) if c.latent_size * 2 ** (n - 1 - i) == c.lr_size)
        width = c.vq_ch * c.vq_ch_mult[min(level + 1, n - 1)]   # the width entering that level
        self.conv_in = nn.Conv2d(3, width, 3, padding=1)
        self.block = ResnetBlock(width, width, c.vq_norm_groups)

    def forward(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv_in(lr_B3hw))


class VQVAE(nn.Module):
    def __init__(self, config: AlignVARConfig):
        super().__init__()
        c = config
        self.config = c
        self.encoder = Encoder(c.vq_ch, c.vq_ch_mult, c.vq_num_res_blocks, c.vq_cvae,
                               c.vq_norm_groups, c.vq_using_sa)
        self.decoder = Decoder(c.vq_ch, c.vq_ch_mult, c.vq_num_res_blocks, c.vq_cvae,
                               c.vq_norm_groups, c.vq_using_sa)
        self.quantize = MultiScaleQuantizer(c)
        self.quant_conv = nn.Conv2d(c.vq_cvae, c.vq_cvae, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(c.vq_cvae, c.vq_cvae, 3, padding=1)
        self.lr_up = ResampleBank([("bicubic", c.lr_size, c.hr_size)])
        self.residual = c.residual_to_bicubic
        self.lr_skip = LRSkip(c) if c.decoder_lr else None

    # images are in [0, 1] at the API; the network works in [-1, 1] as VAR does
    def base_image(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """What the decoder's output is added to: bicubic(LR) in [-1, 1], or nothing."""
        return self.lr_up.bicubic(lr_B3hw * 2 - 1, self.config.hr_size)

    def encode(self, hr_B3HW: torch.Tensor, lr_B3hw: torch.Tensor | None) -> torch.Tensor:
        x = hr_B3HW * 2 - 1
        if self.residual:
            if lr_B3hw is None:
                raise ValueError("this VQ-VAE codes HR - bicubic(LR): pass the LR image too")
            x = x - self.base_image(lr_B3hw)
        return self.quant_conv(self.encoder(x))

    def decode(self, f_hat: torch.Tensor, lr_B3hw: torch.Tensor | None) -> torch.Tensor:
        """f_hat -> image in [0, 1] (clamped)."""
        return torch.clamp(self.decode_unclamped(f_hat, lr_B3hw), 0.0, 1.0)

    def decode_unclamped(self, f_hat: torch.Tensor, lr_B3hw: torch.Tensor | None) -> torch.Tensor:
        if (self.residual or self.lr_skip is not None) and lr_B3hw is None:
            raise ValueError("this VQ-VAE decodes with the LR image (residual / LR-aware decoder): pass it")
        skip = self.lr_skip(lr_B3hw * 2 - 1) if self.lr_skip is not None and lr_B3hw is not None else None
        x = self.decoder(self.post_quant_conv(f_hat), skip)
        if self.residual and lr_B3hw is not None:
            x = x + self.base_image(lr_B3hw)
        return x * 0.5 + 0.5

    def img_to_idx(self, hr_B3HW: torch.Tensor, lr_B3hw: torch.Tensor | None) -> list[torch.Tensor]:
        idx, _, _ = self.quantize.quantize(self.encode(hr_B3HW, lr_B3hw))
        return idx

    def forward(self, hr_B3HW: torch.Tensor, lr_B3hw: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: reconstruction in [0,1] (unclamped), VQ loss, indices."""
        f = self.encode(hr_B3HW, lr_B3hw)
        idx, f_hat, vq_loss = self.quantize.quantize(f)
        return self.decode_unclamped(f_hat, lr_B3hw), vq_loss, idx
