"""The names of AlignVAR's graphs: the forms an export takes (`GRAPH_FORMS`) and a graph's inputs
and outputs, `lr` [, `noise`] -> `sr`, `tokens_0..tokens_{K-1}`.

One owner for every layer that makes a graph (export, quantize), describes it (the manifest's
input contract) or runs it (runtimes): renaming or adding an input is one change here. A new form
is more: its graphs (export/graphs.py), and how each layer that branches on the form reads it.
"""
from __future__ import annotations

__all__ = ["GRAPH_FORMS", "INPUT", "NOISE", "SR", "is_token_name", "token_name", "token_names", "token_scale"]

# single: one graph, the whole rollout unrolled; staged: cond, step_k and decode, driven by a host loop
GRAPH_FORMS = ("single", "staged")

INPUT, SR = "lr", "sr"
NOISE = "noise"          # the refiner's sampler noise (graphs exported with VARSR's refiner)

_TOKENS = "tokens"


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
