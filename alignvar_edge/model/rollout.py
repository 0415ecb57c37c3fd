"""The rollout: next-scale prediction, coarse to fine, with an explicit KV cache. Written once here.

    ctx, state, f_hat = stages.start(lr)          condition, SCA guidance, the prefix's cache; f_hat = 0
    for k < K:
        tokens_k, f_hat, state, extra = stages.step(k, f_hat, state, ctx, noise if k = K-1)
    sr = stages.finish(f_hat, lr)

`run` is that loop; a `Stages` says what each stage is. `ModelStages` runs the model in PyTorch:
eager inference, the single ONNX graph (traced from it), each staged graph (one stage each) and the
Core ML conversion all run it. `StagedRunner` (export/staged.py) runs the same stages as ONNX
Runtime sessions, and `FreeRunning` is HCC's free-running rollout for training.

`state` is the keys and values of every block for all tokens so far (in VARSR's layout, before
scale 0: the LR tokens, which step 0 runs with sos as one block). How the PyTorch stages hold it
is a strategy, a `KVLayout`:

    STACKED    one tensor (depth, 2, B2, H, L, hd), L growing by p_k^2 at every scale: eager, ONNX
    PER_LAYER  a (keys, values) pair of (B2, H, L, hd) per block: no tensor above rank 5 (Core ML)

The layout changes where the tensors are kept, never the arithmetic: both give the same bits.
Importing this module needs no torch, so the ONNX Runtime host driver shares the loop without it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from alignvar_edge.model.alignvar import AlignVAR

__all__ = ["PER_LAYER", "STACKED", "Context", "FreeRunning", "KVLayout", "ModelStages", "Stages", "guidance_weight", "run"]


@dataclass
class Context:
    """Per-tile tensors every scale step reads (all are graph tensors, no Python state)."""

    cond_BD: torch.Tensor      # (B2, C) AdaLN condition; B2 = 2B with CFG (positive, negative), 1 without
    guide_B1hw: torch.Tensor   # (B, 1, h, w) SCA structural guidance (LR Laplacian)


def guidance_weight(cfg: float, k: int, num_scales: int) -> float:
    """Classifier-free guidance's weight at scale k, ramping from 0 to `cfg` at the last scale, in
    VARSR's order of operations (cfg times the scale's ratio). cfg * k / (K - 1) differs from it in
    the last bit of the float64 for some values (cfg 0.03 at scale 3 of 10); the logits it scales are
    float32, where the two rarely differ, but the formula is upstream's."""
    return cfg * (k / (num_scales - 1))


class Stages(Protocol):
    """The three stages of one rollout implementation (the staged export's graphs)."""

    num_scales: int

    def start(self, lr: Any) -> tuple[Any, Any, Any]:
        """LR tile(s) -> (context, state before scale 0, f_hat = 0)."""

    def step(self, k: int, f_hat: Any, state: Any, ctx: Any, noise: Any = None) -> tuple[Any, Any, Any, Any]:
        """Scale k -> (tokens_k, f_hat with scale k added, state for scale k+1, extra)."""

    def finish(self, f_hat: Any, lr: Any) -> Any:
        """The final f_hat -> SR tile(s)."""


def run(stages: Stages, lr: Any, noise: Any = None,
        around: Callable[[str], AbstractContextManager[Any]] | None = None) -> tuple[Any, list[Any], list[Any]]:
    """The coarse-to-fine loop: (SR, [tokens_k], [extra_k]).

    `noise` (VARSR's refiner) goes to the last scale's step only. `around(stage)` wraps each stage,
    named 'conditioning', 'scale_k' and 'decoder' (e.g. to time it or count its FLOPs).
    """
    def stage(name: str) -> AbstractContextManager[Any]:
        return around(name) if around is not None else contextlib.nullcontext()

    with stage("conditioning"):
        ctx, state, f_hat = stages.start(lr)
    tokens, extras = [], []
    last = stages.num_scales - 1
    for k in range(stages.num_scales):
        with stage(f"scale_{k}"):
            idx, f_hat, state, extra = stages.step(k, f_hat, state, ctx, noise if k == last else None)
        tokens.append(idx)
        extras.append(extra)
    with stage("decoder"):
        sr = stages.finish(f_hat, lr)
    return sr, tokens, extras


# ----------------------------------------------------------------------------------------------
# KV-cache layouts
# ----------------------------------------------------------------------------------------------
class KVLayout:
    """How the rollout keeps every block's keys and values between scales."""

    name = ""

    def past(self, cache: Any, i: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Block i's cached (keys, values), each (B2, H, L, hd); (None, None) for an empty cache."""
        raise NotImplementedError

    def pack(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        """The cache holding every block's full (keys, values), block by block."""
        raise NotImplementedError

    def length(self, cache: Any) -> int:
        """Tokens the cache holds keys and values for (0 for an empty cache)."""
        k, _ = self.past(cache, 0)
        return 0 if k is None else int(k.shape[2])


class StackedKV(KVLayout):
    """One tensor (depth, 2, B2, H, L, hd): what a staged graph takes and returns as `kv`."""

    name = "stacked"

    def past(self, cache: Any, i: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (None, None) if cache is None else (cache[i, 0], cache[i, 1])

    def pack(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        import torch
        return torch.stack([torch.stack([k, v]) for k, v in kvs])


class PerLayerKV(KVLayout):
    """A (keys, values) pair per block, each (B2, H, L, hd): rank 4, for Core ML (rank <= 5)."""

    name = "per-layer"

    def past(self, cache: Any, i: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (None, None) if cache is None else cache[i]

    def pack(self, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        return tuple(kvs)


STACKED, PER_LAYER = StackedKV(), PerLayerKV()


# ----------------------------------------------------------------------------------------------
# the model's stages (PyTorch)
# ----------------------------------------------------------------------------------------------
class ModelStages:
    """AlignVAR's inference in PyTorch: greedy tokens with image CFG at every scale, VARSR's refiner
    at the last one when its noise is given. Extras: the guided logits (B, p_k^2, V) of each scale."""

    def __init__(self, model: AlignVAR, layout: KVLayout = STACKED):
        from alignvar_edge.model.pruning import keep_counts
        self.model = model
        self.layout = layout
        self.num_scales = model.config.num_scales
        # tokens each scale forwards (None: all), from the model's pruning setting (model/pruning.py)
        self.keep = keep_counts(model.config.patch_nums, model.prune)
        self.last_h: torch.Tensor | None = None      # previous scale's final hidden states

    def start(self, lr_B3hw: torch.Tensor) -> tuple[Context, Any, torch.Tensor]:
        ctx, prefix_BLC = self.model.prepare(lr_B3hw)
        return ctx, self.prefix_state(ctx, prefix_BLC), self.zero_latent(lr_B3hw)

    def step(self, k: int, f_hat_BCPP: torch.Tensor, state: Any, ctx: Context,
             noise_SNC: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor]:
        """Scale k: its tokens (B, p_k^2) int64, f_hat + their embedding, the extended cache, logits.

        At the last scale of a model with VARSR's refiner, `noise_SNC` (steps, B*P*P, Cvae) adds the
        refined residual (None: tokens only).
        """
        import torch
        m, c = self.model, self.model.config
        B = f_hat_BCPP.shape[0]
        h_BlC, logits, state = self.scale(k, f_hat_BCPP, state, ctx, m.use_cfg)
        t = guidance_weight(c.cfg, k, c.num_scales)
        if m.use_cfg:
            logits = (1 + t) * logits[:B] - t * logits[B:]
        idx = torch.argmax(logits, dim=-1)
        q = m.vae.quantize
        f_hat_BCPP = f_hat_BCPP + q.embed_scale(q.idx_to_h(idx, c.patch_nums[k]), k)
        if noise_SNC is not None and k == c.num_scales - 1 and m.diffloss is not None:
            f_hat_BCPP = f_hat_BCPP + m.refine(h_BlC, idx, noise_SNC, t)
        return idx, f_hat_BCPP, state, logits

    def finish(self, f_hat_BCPP: torch.Tensor, lr_B3hw: torch.Tensor) -> torch.Tensor:
        return self.model.decode(f_hat_BCPP, lr_B3hw)

    # ------------------------------------------------------------------------------------------
    def zero_latent(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        c = self.model.config
        return lr_B3hw.new_zeros(lr_B3hw.shape[0], c.vq_cvae, c.latent_size, c.latent_size)

    def prefix_state(self, ctx: Context, prefix_BLC: torch.Tensor) -> Any:
        """The state before scale 0: the prefix's keys and values in every block (it attends to
        itself); in VARSR's layout the prefix tokens themselves, which step 0 runs."""
        if self.model.joint_prefix:
            return prefix_BLC
        _, cache = self.attend(prefix_BLC, ctx.cond_BD, 0, prefix_BLC.shape[1], None, None, None)
        return cache

    def scale(self, k: int, f_hat_BCPP: torch.Tensor, state: Any, ctx: Context, paired: bool
              ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Scale k's pass through every block on area(f_hat, p_k) (sos at k = 0), attending to the
        cache. `paired`: ctx holds (positive, negative) rows and f_hat only the B positive ones.

        Returns the last block's hidden states (B', p_k^2, C), unguided logits and the extended cache.
        """
        import torch

        from alignvar_edge.model.pruning import gather_tokens, restore
        from alignvar_edge.model.sca import affinity
        m, c = self.model, self.model.config
        p = c.patch_nums[k]
        b, e = m.begin_ends[k]
        tokens = None
        if k > 0:
            tokens = m.coarse_tokens(f_hat_BCPP, k)
            if paired:
                tokens = torch.cat([tokens, tokens])
        x = m.scale_input(k, tokens, ctx.cond_BD)
        if k == 0:                               # sos has a row per condition row; the cache wants one per tile
            x = x.expand(f_hat_BCPP.shape[0] * (2 if paired else 1), -1, -1)
        if k == 0 and m.joint_prefix:            # VARSR: the state is the LR tokens; they and sos are one block
            x = torch.cat([state, x], dim=1)
            b, state = 0, None
        past = 0 if state is None else self.layout.length(state)
        idx, keep = None, self.keep[k]
        if keep is not None:                     # pivotal tokens only, the same for a CFG pair
            idx = m.select_pivotal(x[:f_hat_BCPP.shape[0]], keep)
            if paired:
                idx = torch.cat([idx, idx])
            x = gather_tokens(x, idx)
        sca_S = None
        d = m.descriptors(ctx.guide_B1hw, k)
        if d is not None:
            s_own = affinity(d, d)                                           # B, l, l
            if c.sca_exclude_radius >= 0:
                s_own = s_own * m.sca_reach[b:e, b:e]
            if paired:
                s_own = torch.cat([s_own, s_own])
            if idx is not None:
                s_own = gather_tokens(gather_tokens(s_own, idx).transpose(1, 2), idx).transpose(1, 2)
            sca_S = torch.cat([s_own.new_zeros(s_own.shape[0], s_own.shape[1], past), s_own], dim=2)
        rope = m.rope(b, e)
        if idx is not None and rope[0] is not None and rope[1] is not None:
            rope = (rope[0][idx].unsqueeze(1), rope[1][idx].unsqueeze(1))     # (B', 1, n, hd)
        # the cache holds exactly what scale k may see: no mask, only SCA's bias
        x, state = self.attend(x, ctx.cond_BD, b, e, None, sca_S, state, rope)
        if idx is None:
            x = x[:, -p * p:]
        else:
            assert self.last_h is not None, "a pruned scale follows a computed one"
            x = restore(self.last_h, p, x, idx)
        self.last_h = x
        return x, m.logits(x, ctx.cond_BD), state

    def attend(self, x_BlC: torch.Tensor, cond_BD: torch.Tensor, b: int, e: int, bias: torch.Tensor | None,
               sca_S: torch.Tensor | None, cache: Any,
               rope: tuple[torch.Tensor | None, torch.Tensor | None] | None = None) -> tuple[torch.Tensor, Any]:
        """Every block on x (sequence positions b..e, or the rotary rows `rope` of a pruned scale's
        tokens), each attending to its cached keys and values and to x's own; returns x and the
        cache extended by x's keys and values."""
        cos, sin = rope if rope is not None else self.model.rope(b, e)
        kvs = []
        for i, blk in enumerate(self.model.blocks):
            past_k, past_v = self.layout.past(cache, i)
            x_BlC, k, v = blk(x_BlC, cond_BD, cos, sin, bias, sca_S, past_k, past_v)
            kvs.append((k, v))
        return x_BlC, self.layout.pack(kvs)


class FreeRunning(ModelStages):
    """HCC's free-running rollout (training): the caller's quality labels (no CFG pairing), and
    scale k's tokens are `choose(k, logits)` (B, p_k^2, V) distributions (e.g. Gumbel straight-
    through one-hots) whose embedding is added to f_hat, so a deviation at scale j reaches every
    later scale's input. Extras: (logits (B, p_k^2, V), the scale's input (B, p_k^2, Cvae) or None
    at k = 0); `finish` returns f_hat (no image is decoded)."""

    def __init__(self, model: AlignVAR, quality_B: torch.Tensor,
                 choose: Callable[[int, torch.Tensor], torch.Tensor]):
        super().__init__(model)
        self.keep: list[int | None] = [None] * self.num_scales      # training never prunes
        self.quality_B = quality_B
        self.choose = choose

    def start(self, lr_B3hw: torch.Tensor) -> tuple[Context, Any, torch.Tensor]:
        cond, prefix_BLC = self.model.condition(lr_B3hw, self.quality_B)
        ctx = Context(cond, self.model.guide(lr_B3hw))
        return ctx, self.prefix_state(ctx, prefix_BLC), self.zero_latent(lr_B3hw)

    def step(self, k: int, f_hat_BCPP: torch.Tensor, state: Any, ctx: Context,
             noise_SNC: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        m = self.model
        q = m.vae.quantize
        inputs = m.coarse_tokens(f_hat_BCPP, k) if k > 0 else None
        _, logits, state = self.scale(k, f_hat_BCPP, state, ctx, paired=False)
        probs = self.choose(k, logits)
        f_hat_BCPP = f_hat_BCPP + q.embed_scale(q.soft_to_h(probs, m.config.patch_nums[k]), k)
        return probs, f_hat_BCPP, state, (logits, inputs)

    def finish(self, f_hat_BCPP: torch.Tensor, lr_B3hw: torch.Tensor) -> torch.Tensor:
        return f_hat_BCPP
