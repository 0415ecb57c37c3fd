"""A whole rollout replayed as one CUDA graph: what the torch engine runs on CUDA devices.

At batch 1 a GPU rollout is bound by kernel launches, not arithmetic: the early scales launch
thousands of tiny kernels. Capturing the rollout once and replaying it removes that cost (on an
H200, `--preset d24-512` in fp16: 117.9 ms per 512x512 image as a graph, 221.1 ms eager; with
fused attention 96.9 ms; docs/benchmarks.md). A graph replays fixed shapes and addresses, so a
capture owns static input buffers; each call copies its tiles in and copies the outputs out.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignvar_edge.caller import warn_caller


@dataclass
class Captured:
    replay: Callable[[], Any]
    lr: Any                      # the static LR batch the graph reads
    noise: Any | None            # the static refiner noise (steps, batch * P * P, C), or None
    outputs: tuple[Any, ...]     # the static (SR, tokens_0, ...) each replay overwrites


# PyTorch allows one graph capture at a time in a process; engines in several threads (one
# engine per thread is how `Engine` runs in parallel) take turns here
_CAPTURING = threading.Lock()


def capture(model: Any, lr: Any, noise: Any | None = None) -> Captured:
    """Capture `model(lr, noise)` as one CUDA graph reading `lr` and `noise` in place. The outputs
    hold one replay's results on return (a capture records kernels without running them).

    One capture at a time per process. The capture refuses unsafe CUDA calls (a host sync, say)
    in its own thread only ("thread_local"): in PyTorch's default mode ("global") an engine
    running in another thread meanwhile would fail on its own allocations, and break the capture."""
    import torch
    with _CAPTURING:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):                   # warm-up off the capture (allocator, cuBLAS, cuDNN)
                model(lr, noise)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"), torch.inference_mode():
            out = model(lr, noise)
        graph.replay()
        torch.cuda.synchronize()
    return Captured(graph.replay, lr, noise, tuple(out))


def _fits(g: Captured, lr: Any, noise: Any | None) -> bool:
    """Whether a call can replay `g`: at most its batch of tiles of its shape, and noise exactly
    when it was captured with noise, with as many rows per tile (a graph captured with noise
    would refine a call without it with stale noise)."""
    n = lr.shape[0]
    if n > g.lr.shape[0] or g.lr.shape[1:] != lr.shape[1:]:
        return False
    if noise is None or g.noise is None:
        return noise is None and g.noise is None
    return noise.shape[::2] == g.noise.shape[::2] and noise.shape[1] * g.lr.shape[0] == g.noise.shape[1] * n


class GraphedRollout:
    """`model(lr, noise)` through one captured graph: that of the largest batch seen so far. A
    smaller batch is copied into the first rows of its buffers and the other rows are computed
    and dropped (each tile's rollout is its own: the shared condition row does not depend on the
    tiles, and pruning picks tokens per tile), so an image's last, partial batch costs no second
    capture and no second graph's memory."""

    def __init__(self, model: Any, capture_fn: Callable[..., Captured] = capture):
        self.model = model
        self._capture = capture_fn
        self.graph: Captured | None = None
        self.captures = 0
        self.failed: str | None = None           # why capture failed; the rollout then stays eager

    def __call__(self, lr: Any, noise: Any | None = None) -> tuple[Any, ...]:
        if self.failed:
            return tuple(self.model(lr, noise))
        n = lr.shape[0]
        g = self.graph
        if g is None or not _fits(g, lr, noise):
            g = self.graph = None                # let the old graph's memory go before the new capture
            try:
                g = self._capture(self.model, lr.clone(), None if noise is None else noise.clone())
            except RuntimeError as err:          # e.g. an op that syncs with the host: run eagerly
                self.failed = f"{type(err).__name__}: {err}".splitlines()[0]
                warn_caller(f"CUDA graph capture failed, running eagerly: {self.failed}", RuntimeWarning)
                return tuple(self.model(lr, noise))
            self.graph = g
            self.captures += 1
        else:
            g.lr[:n].copy_(lr)
            if noise is not None and g.noise is not None:        # both or neither (`_fits`)
                g.noise[:, :noise.shape[1]].copy_(noise)      # batch-major rows: the first n tiles'
            g.replay()
        return tuple(o[:n].clone() for o in g.outputs)
