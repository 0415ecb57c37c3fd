"""Transformer pieces of AlignVAR: AdaLN self-attention blocks (VAR names), LR embedding, head.

Attention: L2-normalised q/k, a learned per-head scale clamped so |logits| <= 100, 2-D rotary
positions, and an additive, finite bias (block-causal mask plus SCA). q and k are normalised,
scaled and rotated as one tensor, so an exported attention call is a handful of graph ops.
Inference has two forms with the same arithmetic up to rounding (`ATTENTION_FORMS`):

    explicit   plain ops (ReduceL2, MatMul, Softmax): eager inference's reference, and graphs for
               targets whose operator lists lack the opset-23 ops (TensorRT 10.3, Core ML, NPUs)
    fused      one ONNX op each for the q/k normalisation (RMSNormalization), the rotary
               (RotaryEmbedding) and the attention core (Attention): opset 23
Training runs torch's scaled_dot_product_attention, and teacher forcing's block-causal sequence
is attended block by block (`BlockCausal`).

The KV cache is plain tensors passed in and returned: no module state.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alignvar_edge.model.config import ATTENTION_FORMS
from alignvar_edge.model.rope import apply_rope, pair_swap
from alignvar_edge.model.sca import alpha_from_raw, raw_from_alpha, sca_bias

MASK_VALUE = -1e4       # finite "minus infinity": exp underflows to exactly 0, fp16 stays finite
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass(frozen=True)
class BlockCausal:
    """The teacher-forced sequence's attention mask by its structure: consecutive query blocks
    (the prefix, then one per scale) whose rows see every key before their block's `end`.

    Attention computed block by block skips the third of the L x L scores the mask hides and the
    dense mask and SCA bias themselves: the tiny32 transformer's teacher-forced training step ran
    1.7x faster on one CPU thread (docs/training.md). `mask()` is the same as a dense additive mask."""
    ends: tuple[int, ...]

    @staticmethod
    def from_levels(levels: Sequence[int]) -> BlockCausal:
        """Blocks of equal, non-decreasing attention level: a row sees the keys of level <= its own."""
        if any(b < a for a, b in zip(levels, levels[1:])):
            raise ValueError("attention levels must not decrease along the sequence")
        return BlockCausal((*(i for i in range(1, len(levels)) if levels[i] != levels[i - 1]), len(levels)))

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(1, 1, L, L): 0 where a row sees a key, MASK_VALUE elsewhere."""
        L = self.ends[-1]
        sees = torch.zeros(L, dtype=torch.long, device=device)
        start = 0
        for end in self.ends:
            sees[start:end] = end
            start = end
        visible = torch.arange(L, device=device)[None, :] < sees[:, None]
        return torch.where(visible, 0.0, MASK_VALUE).view(1, 1, L, L)


class SelfAttention(nn.Module):
    # constant, non-persistent buffers (register_buffer below)
    zero_k_bias: torch.Tensor
    rope_swap: torch.Tensor
    rms_weight: torch.Tensor

    def __init__(self, width: int, heads: int, sca: bool, sca_alpha_init: float, sca_alpha_max: float,
                 sca_alpha_param: str = "clamp"):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width), persistent=False)
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        self.proj = nn.Linear(width, width)
        self.sca_alpha_max = sca_alpha_max
        self.sca_alpha_param = sca_alpha_param
        raw = raw_from_alpha(sca_alpha_init, sca_alpha_param, sca_alpha_max)
        self.sca_alpha = nn.Parameter(torch.full((heads,), raw)) if sca else None
        self.register_buffer("rope_swap", pair_swap(self.head_dim), persistent=False)
        # the exported fused form's RMSNormalization scale: an initializer, not a ConstantOfShape per call
        self.register_buffer("rms_weight", torch.ones(self.head_dim), persistent=False)
        self.form = "explicit"                     # inference core, see ATTENTION_FORMS
        self.probs_out: list[torch.Tensor] | None = None    # set to a list to record attention (eval)

    def alpha(self) -> torch.Tensor | None:
        return None if self.sca_alpha is None else alpha_from_raw(self.sca_alpha, self.sca_alpha_param,
                                                                 self.sca_alpha_max)

    def qk_scale(self) -> torch.Tensor:
        """(2, 1, H, 1, 1): the clamped learned scale for q, exactly 1 for k."""
        scale = torch.exp(torch.clamp(self.scale_mul_1H11, max=MAX_LOGIT_SCALE))
        return torch.stack([scale, torch.ones_like(scale)])

    def _qkv_bias(self) -> torch.Tensor:
        """(3C,): VAR's q/k/v biases, on q and v only."""
        return torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])

    def _qkv(self, x_BLC: torch.Tensor) -> torch.Tensor:
        """(B, l, 3C): VAR's q/k/v projection."""
        return F.linear(x_BLC, self.mat_qkv.weight, self._qkv_bias())

    def _bias(self, bias: torch.Tensor | None, sca_S: torch.Tensor | None) -> torch.Tensor | None:
        """The additive attention bias: the mask (or None) plus SCA's alpha_h * S where SCA is on."""
        alpha = self.alpha()
        if alpha is None or sca_S is None:
            return bias
        s = sca_bias(alpha, sca_S)
        return s if bias is None else bias + s

    def _onnx_call(self, x_BLC: torch.Tensor, cos_Ld: torch.Tensor | None, sin_Ld: torch.Tensor | None,
                   bias: torch.Tensor | None, sca_S: torch.Tensor | None,
                   past_k: torch.Tensor | None, past_v: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fused form: ONNX RMSNormalization, RotaryEmbedding and Attention (opset 23).

        Written for TensorRT's importer (>= 10.15): 4-D q, k, v and mask, and the KV cache
        concatenated outside `Attention` (TensorRT rejects its past and present tensors).
        x / |x| = rms_norm(x) / sqrt(d), its eps scaled so the floor equals the explicit form's clamp.
        Exported, a scale's call is 13 nodes: its arithmetic and the cache (docs/export.md lists them).
        """
        B, l, C = x_BLC.shape
        H, d = self.heads, self.head_dim
        # In the graph the projections read their weights per head, (3H, d, C) and (C, H, d), views
        # folded at export: q/k/v arrive as (B, 3H, l, d) and the output leaves as (B, l, C) with no
        # Reshape or Transpose per call. Eager (CUDA inference) keeps the linear + view it was timed with.
        graph = torch.onnx.is_in_onnx_export()
        if graph:
            qkv = torch.einsum("blc,hdc->bhld", x_BLC, self.mat_qkv.weight.view(3 * H, d, C))
            qkv = qkv + self._qkv_bias().view(3 * H, 1, d)
        else:
            qkv = self._qkv(x_BLC).view(B, l, 3 * H, d).transpose(1, 2)
        qk, v = qkv.split([2 * H, H], dim=1)
        qk = F.rms_norm(qk, (d,), self.rms_weight if graph else None, eps=1e-24 / d)
        qk = qk * (self.qk_scale().view(1, 2 * H, 1, 1) / math.sqrt(d))
        if cos_Ld is not None and sin_Ld is not None:
            # pair_tables repeat cos per pair and sign sin (-s, +s): even and odd columns undo that
            cos, sin = cos_Ld[..., 0::2], sin_Ld[..., 1::2]
            positions: torch.Tensor | None = torch.arange(l, device=qk.device).expand(B, l)
            if cos.dim() > 2:           # a pruned scale's (B, 1, l, hd) rows: one table per sample
                cos, sin, positions = cos.reshape(B, l, -1), sin.reshape(B, l, -1), None
            qk = torch.onnx.ops.rotary_embedding(qk, cos, sin, positions, interleaved=True)
        q, k = qk.split([H, H], dim=1)
        if past_k is not None and past_v is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(bias, sca_S), scale=1.0)
        if graph:
            return torch.einsum("bhld,chd->blc", out, self.proj.weight.view(C, H, d)) + self.proj.bias, k, v
        return self.proj(out.transpose(1, 2).reshape(B, l, C)), k, v

    def forward(self, x_BLC: torch.Tensor, cos_Ld: torch.Tensor | None, sin_Ld: torch.Tensor | None,
                bias: torch.Tensor | BlockCausal | None, sca_S: torch.Tensor | None,
                past_k: torch.Tensor | None, past_v: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, l, C); bias (B|1, 1|H, l, L) with L = past + l, or None (no mask); sca_S (B, l, L)
        or None; cos/sin the rotary `pair_tables` rows (l, hd).

        Returns the output and the full (past + new) keys and values, (B, H, L, hd).
        """
        fused = self.form == "fused" and self.probs_out is None and not self.training
        blocks = None
        if isinstance(bias, BlockCausal):     # recorded probabilities and the fused form take it dense
            blocks, bias = (None, bias.mask(x_BLC.device)) if fused or self.probs_out is not None else (bias, None)
        if fused:
            return self._onnx_call(x_BLC, cos_Ld, sin_Ld, bias, sca_S, past_k, past_v)
        B, l, C = x_BLC.shape
        qkv = self._qkv(x_BLC).view(B, l, 3, self.heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)                                      # 3, B, H, l, hd
        qk, v = qkv[:2], qkv[2]
        # F.normalize's arithmetic, written without its expand
        qk = qk / torch.linalg.vector_norm(qk, dim=-1, keepdim=True).clamp_min(1e-12) * self.qk_scale()
        if cos_Ld is not None and sin_Ld is not None:          # VAR has no rotary positions
            qk = apply_rope(qk, cos_Ld, sin_Ld, self.rope_swap)
        q, k = qk[0], qk[1]
        if past_k is not None and past_v is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        if blocks is not None:
            out = self._block_causal(q, k, v, blocks.ends, sca_S)
        else:             # training: torch's kernels; inference: the explicit reference (and its probabilities)
            out = softmax_attend(q, k, v, self._bias(bias, sca_S), self.training, self.probs_out)
        out = out.transpose(1, 2).reshape(B, l, C)                          # B, l, C
        return self.proj(out), k, v

    def _block_causal(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ends: tuple[int, ...],
                      sca_S: torch.Tensor | None) -> torch.Tensor:
        """softmax(q k^T + alpha * S) v, each query block over the keys before its end (BlockCausal)."""
        alpha = self.alpha() if sca_S is not None else None
        outs, start = [], 0
        for end in ends:
            bias = sca_bias(alpha, sca_S[:, start:end, :end]) if alpha is not None and sca_S is not None else None
            outs.append(softmax_attend(q[:, :, start:end], k[:, :, :end], v[:, :, :end], bias, q.is_cuda))
            start = end
        return torch.cat(outs, dim=2)


def softmax_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                   sdpa: bool, probs_out: list[torch.Tensor] | None = None) -> torch.Tensor:
    """softmax(q k^T + bias) v with q, k already scaled. `sdpa`: torch's fused kernels (a GPU keeps
    no probabilities for backward); else the plain products, twice as fast forward on a CPU as its
    SDPA kernel for a teacher-forced block of tiny32 (30 against 64 ms, one thread), which append
    the probabilities to `probs_out` where it is a list."""
    if sdpa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    logits = torch.matmul(q, k.transpose(-2, -1))
    probs = torch.softmax(logits if bias is None else logits + bias, dim=-1)
    if probs_out is not None:
        probs_out.append(probs.detach())
    return torch.matmul(probs, v)


def set_attention_form(model: nn.Module, form: str) -> list[tuple[SelfAttention, str]]:
    """Every attention core of `model` in `form` (see ATTENTION_FORMS); returns each core with
    the form it had, for whoever restores them."""
    if form not in ATTENTION_FORMS:
        raise ValueError(f"attention form must be one of {ATTENTION_FORMS}, got {form!r}")
    before = [(m, m.form) for m in model.modules() if isinstance(m, SelfAttention)]
    for a, _ in before:
        a.form = form
    return before


def inference_form(device: str) -> str:
    """The attention form eager inference runs on `device`: fused on CUDA (on an H200 in fp16 a
    512 px rollout captured as a CUDA graph ran 1.21x faster with it, and the eager fused rollout
    kept every fp32 token); the explicit reference elsewhere."""
    return "fused" if str(device).startswith("cuda") else "explicit"


@contextlib.contextmanager
def attention_form(model: nn.Module, form: str) -> Iterator[None]:
    """Every attention core of `model` in `form` (see ATTENTION_FORMS) while inside; restored after."""
    before = set_attention_form(model, form)
    try:
        yield
    finally:
        for a, f in before:
            a.form = f


class FFN(nn.Module):
    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = round(width * mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNSelfAttn(nn.Module):
    """x += gamma1 * attn(LN(x)(1+scale1) + shift1); x += gamma2 * ffn(LN(x)(1+scale2) + shift2)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, norm_eps: float,
                 sca: bool, sca_alpha_init: float, sca_alpha_max: float, sca_alpha_param: str = "clamp"):
        super().__init__()
        self.width = width
        self.attn = SelfAttention(width, heads, sca, sca_alpha_init, sca_alpha_max, sca_alpha_param)
        self.ffn = FFN(width, mlp_ratio)
        self.ln_wo_grad = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor, cos_Ld: torch.Tensor | None,
                sin_Ld: torch.Tensor | None, bias: torch.Tensor | BlockCausal | None, sca_S: torch.Tensor | None,
                past_k: torch.Tensor | None = None, past_v: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ada = self.ada_lin(cond_BD).view(-1, 1, 6, self.width)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = ada.unbind(2)
        h, k, v = self.attn(self.ln_wo_grad(x_BLC) * (scale1 + 1) + shift1, cos_Ld, sin_Ld,
                            bias, sca_S, past_k, past_v)
        x_BLC = x_BLC + h * gamma1
        x_BLC = x_BLC + self.ffn(self.ln_wo_grad(x_BLC) * (scale2 + 1) + shift2) * gamma2
        return x_BLC, k, v


class AdaLNBeforeHead(nn.Module):
    def __init__(self, width: int, norm_eps: float):
        super().__init__()
        self.width = width
        self.ln_wo_grad = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.width).unbind(2)
        return self.ln_wo_grad(x_BLC) * (scale + 1) + shift


class LREmbed(nn.Module):
    """VARSR-style LR conditioning: strided convs map the LR tile to P x P prefix tokens.

    VARSR feeds the bicubic-upsampled LR; bicubic upsampling is a fixed linear map, so starting
    from the LR itself carries the same information at 1/scale^2 of the convolution cost.
    """

    def __init__(self, width: int, ch: int, stride: int, groups: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        n_down = int(math.log2(stride))
        self.down = nn.ModuleList(
            [nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, stride=2, padding=1))
             for _ in range(n_down)])
        self.norm_out = nn.GroupNorm(groups, ch)
        self.proj = nn.Conv2d(ch, width, 1)

    def forward(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(lr_B3hw)
        for d in self.down:
            h = d(h)
        h = self.proj(F.silu(self.norm_out(h)))
        return h.flatten(2).transpose(1, 2)                                # B, P*P, C


def init_weights(module: nn.Module, depth: int) -> None:
    """Truncated-normal linears; residual projections scaled down with depth (GPT-2 style)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if name.endswith("attn.proj") or name.endswith("ffn.fc2"):
                m.weight.data.mul_(1 / math.sqrt(2 * depth))
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=0.02)
