"""This machine's measured fp32 matmul peak: the roof an engine's achieved GFLOP/s is set against.

A large square fp32 GEMM is the best case for every CPU library (BLAS-bound, cache-blocked), so
its GFLOP/s is a practical peak for the same threads in the same run; a datasheet number would
ignore the background load that every other figure of the report also sees. Both numpy (its BLAS)
and torch (oneDNN/MKL) are timed and the better one is the peak.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["measure_peak"]


def _best_gflops(fn: Callable[[], object], flops: float, repeats: int) -> float:
    fn()                                   # warm-up: page in, pick kernels, spin up threads
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


@contextlib.contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    """numpy's BLAS with `threads` threads when threadpoolctl is installed (else as imported)."""
    if not threads:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:          # optional: without it numpy keeps its import-time thread count
        yield
        return
    with threadpool_limits(limits=int(threads), user_api="blas"):
        yield


def measure_peak(n: int = 2048, repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    """{"gflops": best, "best_gflops", "numpy_gflops", "torch_gflops", "library", "n", "threads", "method"}.

    The best of `repeats` runs (not the median): a peak is what the hardware can do, and the
    shared machine only ever slows a run down.
    """
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    res: dict[str, Any] = {"n": n, "repeats": repeats, "dtype": "float32",
                           "method": f"best of {repeats} {n}x{n}x{n} fp32 matmuls (numpy BLAS and torch)"}
    with _blas_threads(threads):
        res["numpy_gflops"] = round(_best_gflops(lambda: a @ b, flops, repeats), 2)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        with torch.inference_mode():
            res["torch_gflops"] = round(_best_gflops(lambda: ta @ tb, flops, repeats), 2)
        res["threads"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(old)
    res["gflops"] = res["best_gflops"] = max(res["numpy_gflops"], res["torch_gflops"])
    res["library"] = "torch" if res["torch_gflops"] >= res["numpy_gflops"] else "numpy"
    return res


def gemm_call(n: int, library: str) -> tuple[Callable[[], object], float]:
    """(one n^3 fp32 matmul with the faster library, its FLOPs): timed once per benchmark round,
    so the peak is also measured under the load the engines see (torch uses its current threads)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if library == "torch":
        import torch
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def mm() -> object:
            with torch.inference_mode():
                return ta @ tb
        return mm, 2.0 * n ** 3
    return (lambda: a @ b), 2.0 * n ** 3


def in_run_peak(peak: dict[str, Any], samples_ms: list[float], flops: float) -> dict[str, Any]:
    """Fold the per-round GEMM timings into the peak: `gflops` becomes their median (the same
    conditions as the engines' p50, which the roofline fraction compares it with) and
    `best_gflops` the best GEMM seen at all (what the fp32 bound uses)."""
    if not samples_ms:
        return peak
    g = sorted(flops / (ms / 1e3) / 1e9 for ms in samples_ms)
    out = dict(peak)
    out["upfront_best_gflops"] = peak["gflops"]
    out["in_run"] = {"samples": len(g), "median_gflops": round(float(np.median(g)), 2),
                     "best_gflops": round(g[-1], 2), "worst_gflops": round(g[0], 2)}
    out["gflops"] = out["in_run"]["median_gflops"]
    out["best_gflops"] = round(max(peak["gflops"], g[-1]), 2)
    out["method"] = (f"{peak['method']} before the run (upfront_best_gflops), then one {peak['n']}^3 "
                     f"{out['library']} matmul per timed round: gflops = their median, best_gflops = the best seen")
    return out
