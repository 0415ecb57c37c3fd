"""The names of AlignVAR's graphs: the forms an export takes (`GRAPH_FORMS`), a graph's inputs
and outputs, `lr` [, `noise`] -> `sr`, `tokens_0..tokens_{K-1}`, and the staged form's graphs
(`cond`, `step_k`, `decode`) with the state they hand on (`f_hat`, `kv`, ...).

One owner for every layer that makes a graph (export, quantize), describes it (the manifest's
input contract) or runs it (runtimes): renaming or adding an input is one change here. A new form
is more: its graphs (export/graphs.py), and how each layer that branches on the form reads it.
"""
from __future__ import annotations

__all__ = ["COND", "COND_GRAPH", "DECODE_GRAPH", "ENGINE_GRAPH", "F_HAT", "F_HAT_OUT", "GRAPH_FORMS", "GUIDE", "H_OUT",
           "INPUT", "KV", "KV_OUT", "LAST_H", "NOISE", "PREFIX", "SINGLE_GRAPH", "SR", "STACK_TRACE",
           "is_token_name", "staged_graph_names", "step_name", "token_name", "token_names", "token_scale"]

# single: one graph, the whole rollout unrolled; staged: cond, step_k and decode, driven by a host loop
GRAPH_FORMS = ("single", "staged")
SINGLE_GRAPH = "model"   # the single form's one graph: its key in an export's `graphs`
ENGINE_GRAPH = "single"  # ... and in an engine's, which runs that graph (both are read: manifests on disk)

INPUT, SR = "lr", "sr"
NOISE = "noise"          # the refiner's sampler noise (graphs exported with VARSR's refiner)

_TOKENS = "tokens"

# the staged form: cond(lr) -> cond, guide, kv (prefix: VARSR's layout); step_k(f_hat, kv | prefix, cond,
# guide [, last_h] [, noise]) -> tokens_k, f_hat_out [, kv_out] [, h_out]; decode(f_hat, lr) -> sr
COND_GRAPH, DECODE_GRAPH = "cond", "decode"
COND, GUIDE = "cond", "guide"            # the conditioning every step reads
F_HAT, F_HAT_OUT = "f_hat", "f_hat_out"  # the latent summed over the scales so far
KV, KV_OUT = "kv", "kv_out"              # the key/value cache, handed from one step to the next
PREFIX = "prefix"                        # step 0's state where the LR tokens are a joint prefix (VARSR)
LAST_H, H_OUT = "last_h", "h_out"        # hidden states handed to a pruned next scale

# a node's metadata key for the exporter's stack trace: export makes its files module-relative,
# quantize's policy reads its frames (`/sca.py`), fp16 drops it from the nodes it rewrites
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def token_name(k: int) -> str:
    """The output holding scale k's token indices."""
    return f"{_TOKENS}_{k}"


def token_names(num_scales: int) -> list[str]:
    """Every scale's token output, coarsest first."""
    return [token_name(k) for k in range(num_scales)]


def token_scale(name: str) -> int | None:
    """The scale k whose tokens output `name` is (`token_name(k)`); None for any other name."""
    head, _, k = name.partition("_")
    return int(k) if head == _TOKENS and k.isascii() and k.isdigit() else None


def is_token_name(name: str) -> bool:
    """Whether `name` is a graph output `token_name` made."""
    return token_scale(name) is not None


def step_name(k: int) -> str:
    """The staged graph of scale k."""
    return f"step_{k}"


def staged_graph_names(num_scales: int) -> list[str]:
    """The staged form's graphs in the order they run."""
    return [COND_GRAPH, *(step_name(k) for k in range(num_scales)), DECODE_GRAPH]
