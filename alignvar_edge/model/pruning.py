"""Training-free token pruning at the finest scales, after FastVAR (Guo et al., ICCV 2025).

At a pruned scale only its pivotal tokens run through the blocks: those whose transformer input is
farthest from the scale's mean input (a high-frequency proxy: flat regions are already settled by
the coarser scales). The others are restored from the previous scale's final hidden states,
area-resampled to this scale's grid, before the head picks tokens everywhere. The pruned tokens
add no keys or values to the cache, so the next scale also attends to fewer.

The budget per scale is a fixed count, so exported graphs keep static shapes (TopK, Gather,
ScatterElements). Ratios are given for the last scales, finest last: `(0.5, 0.75)` prunes half of
the second-to-last scale and three quarters of the last, FastVAR's setting for its two largest.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from alignvar_edge.errors import ConfigError
from alignvar_edge.manifest import prune_text
from alignvar_edge.model.matrices import area_matrix

__all__ = ["PivotalSelect", "effective_prune", "gather_tokens", "keep_counts", "parse_prune", "pivotal", "pruning",
           "restore"]


def parse_prune(text: str | None) -> tuple[float, ...]:
    """'0.5,0.75' -> (0.5, 0.75); '' or None -> () (no pruning)."""
    if not text:
        return ()
    try:
        ratios = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ConfigError(f"--prune takes ratios in [0, 1) separated by commas, finest scale last "
                          f"(e.g. 0.5,0.75); got {text!r}") from None
    if not all(0.0 <= r < 1.0 for r in ratios):
        raise ConfigError(f"--prune ratios must be in [0, 1) (the share of a scale's tokens left out); got {text!r}")
    return ratios


@contextlib.contextmanager
def pruning(model: Any, ratios: tuple[float, ...]) -> Iterator[None]:
    """The model's rollout prunes with `ratios` while inside; its own setting is restored after."""
    keep_counts(model.config.patch_nums, ratios)
    before = model.prune
    model.prune = tuple(ratios)
    try:
        yield
    finally:
        model.prune = before


def keep_counts(patch_nums: tuple[int, ...], ratios: tuple[float, ...]) -> list[int | None]:
    """Tokens each scale forwards: None where it is not pruned (ratio 0). Scale 0 is never pruned.

    The one rule for ratios (export, eval --prune and `pruning` all come here): a budget is a whole
    count of tokens, so a ratio > 0 that leaves no token out is refused; the run would be unpruned
    while the manifest, `inspect` and eval's table said pruned."""
    if len(ratios) >= len(patch_nums):
        raise ConfigError(f"--prune gives {len(ratios)} ratios for a model with {len(patch_nums)} scales; "
                          f"at most {len(patch_nums) - 1} (scale 0 has nothing to restore from)")
    keep: list[int | None] = [None] * len(patch_nums)
    for k, r in zip(range(len(patch_nums) - len(ratios), len(patch_nums)), ratios):
        n = patch_nums[k] ** 2
        pruned = int(n * r)
        if pruned:
            keep[k] = n - pruned
        elif r > 0:
            raise ConfigError(f"--prune {prune_text(ratios)}: {r:g} of scale {k}'s {n} tokens is "
                              f"less than one token, so nothing would be pruned there; give at least "
                              f"{1 / n:.3g} (one token) or 0 to leave the scale unpruned")
    return keep


def effective_prune(patch_nums: tuple[int, ...], ratios: tuple[float, ...]) -> tuple[float, ...]:
    """`ratios` checked by `keep_counts`' rule, as a run records them: () where they leave no token
    out (0 at every scale is the unpruned model, and export and eval say so)."""
    keep_counts(patch_nums, ratios)
    return tuple(ratios) if any(ratios) else ()


SCORE_LEVELS = 1024


def pivotal(x_BlC: torch.Tensor, n_keep: int) -> torch.Tensor:
    """(B, n_keep) indices of the tokens farthest (squared L2) from their scale's mean token.

    Flat regions give many equal or nearly equal scores, and a TopK over them picks whichever the
    last bit of rounding favours: PyTorch and a runtime then prune different tokens. So scores are
    rounded to SCORE_LEVELS steps of the scale's largest, and equal ones go to the lower index
    (one exact float32 key per token): rounding noise can only matter at a step's midpoint."""
    x_BlC = x_BlC.float()                 # a half model's too: the keys need float32's integers
    score = ((x_BlC - x_BlC.mean(dim=1, keepdim=True)) ** 2).sum(dim=-1)
    n = score.shape[1]
    levels = min(SCORE_LEVELS, (1 << 24) // n - 1)              # keys stay integers below 2**24
    level = torch.round(score / score.amax(dim=1, keepdim=True).clamp_min(1e-30) * levels)
    key = level * n + torch.arange(n - 1, -1, -1, dtype=score.dtype, device=score.device)
    return torch.topk(key, n_keep, dim=1).indices


class PivotalSelect(torch.nn.Module):
    """`pivotal` as a module (no weights) so exported graphs scope its nodes: its keys are integers
    up to 2**24 that half precision cannot hold (fp16 overflows at 65504, bf16 keeps 8 bits), so
    every half policy keeps this scope in f32 (`quantize.policy.EXACT_SCOPES`)."""

    def forward(self, x_BlC: torch.Tensor, n_keep: int) -> torch.Tensor:
        return pivotal(x_BlC, n_keep)


def gather_tokens(x_BlC: torch.Tensor, idx_Bn: torch.Tensor) -> torch.Tensor:
    return torch.gather(x_BlC, 1, idx_Bn.unsqueeze(-1).expand(-1, -1, x_BlC.shape[-1]))


def _area(q: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (p, q) area-resampling matrix on `device`. On a GPU it is made once (`_area_on_gpu`);
    elsewhere each call makes its own, since an export traces this call with fake tensors and a
    cached fake matrix would leak into the eager rollout after it."""
    if device.type == "cuda":
        return _area_on_gpu(q, p, dtype, device)
    return torch.from_numpy(area_matrix(q, p)).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _area_on_gpu(q: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached: a host-to-GPU copy inside a rollout would break CUDA graph capture (the capture's
    warm-up runs fill this cache). Made outside inference mode, so a cached matrix also serves a
    later rollout that autograd tracks."""
    with torch.inference_mode(False):
        return torch.from_numpy(area_matrix(q, p)).to(dtype=dtype, device=device)


def restore(prev_BmC: torch.Tensor, p: int, kept_BnC: torch.Tensor, idx_Bn: torch.Tensor) -> torch.Tensor:
    """(B, p*p, C): the previous scale's hidden states area-resampled to p x p, with the kept
    tokens' own states written back at their positions."""
    B, m, C = prev_BmC.shape
    q = round(m ** 0.5)
    a = _area(q, p, prev_BmC.dtype, prev_BmC.device)                        # (p, q)
    grid = prev_BmC.transpose(1, 2).reshape(B, C, q, q)
    full = torch.matmul(torch.matmul(a, grid), a.transpose(0, 1)).reshape(B, C, p * p).transpose(1, 2)
    return full.scatter(1, idx_Bn.unsqueeze(-1).expand(-1, -1, C), kept_BnC)
