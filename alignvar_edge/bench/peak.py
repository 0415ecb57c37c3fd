"""This machine's measured fp32 matmul peak: the roof an engine's achieved GFLOP/s is set against.

A large square fp32 GEMM is the best case for every CPU library (BLAS-bound, cache-blocked), so
its GFLOP/s is a practical peak for the same threads in the same run; a datasheet number would
ignore the background load that every other figure of the report also sees. numpy (its BLAS),
torch (oneDNN/MKL) and, where installed, ONNX Runtime (MLAS) and OpenVINO (oneDNN) are timed and
the best one is the peak: the BLAS builds of numpy and torch may run AVX2 kernels on a CPU whose
AVX-512 the runtimes use (measured on a Zen 5 EPYC at one thread: numpy 98, torch 82, ONNX
Runtime 143, OpenVINO 160 GFLOP/s), and a roof below what the engines reach bounds nothing.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from alignvar_edge.extras import pip_install, requirement_of

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
    """numpy's BLAS with `threads` threads (numpy is timed with a thread count only where
    `_blas_threads_unsettable` found threadpoolctl controlling its BLAS)."""
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=int(threads), user_api="blas"):
        yield


def _blas_threads_unsettable() -> str | None:
    """Why numpy's BLAS threads cannot be set here; None where threadpoolctl is installed and controls
    the BLAS numpy loaded (it has no controller for Apple's Accelerate, numpy's BLAS on macOS 14 and later)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"threadpoolctl is not installed: {pip_install([requirement_of('threadpoolctl')])}"
    if any(pool.get("user_api") == "blas" for pool in threadpool_info()):
        return None
    return "its BLAS threads cannot be set here (threadpoolctl controls none it loaded)"


def _torch_threads(threads: int | None) -> contextlib.AbstractContextManager[None]:
    import torch

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(old)
    return ctx()


# the runtimes set their threads when the session is made, not around a call
_RUNTIMES = ("onnxruntime", "openvino")
# the largest --peak-n: three 8192^2 fp32 matrices are 0.8 GB; more only fills memory
MAX_PEAK_N = 8192


def _libraries() -> list[str]:
    """numpy, and each of torch, ONNX Runtime (its graph is built with onnx) and OpenVINO that is installed."""
    import importlib.util
    needs = {"torch": ("torch",), "onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino",)}
    return ["numpy"] + [lib for lib, mods in needs.items()
                        if all(importlib.util.find_spec(m) is not None for m in mods)]


def _matmul(library: str, n: int, seed: int = 0, threads: int | None = None) -> Callable[[], object]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if library == "numpy":
        return lambda: a @ b
    if library == "onnxruntime":
        return _onnxruntime_matmul(a, b, threads)
    if library == "openvino":
        return _openvino_matmul(a, b, threads)
    import torch
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def mm() -> object:
        with torch.inference_mode():
            return ta @ tb
    return mm


def matmul_model(a_shape: tuple[int, int], b: np.ndarray) -> Any:
    """One MatMul (a @ b, b a constant) as an ONNX model at opset 18 and the oldest IR version that
    opset allows: a newer onnx than the runtime otherwise writes an IR the runtime refuses (onnx
    1.23 writes 14, onnxruntime 1.30 reads up to 13)."""
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape))],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [a_shape[0], b.shape[1]])],
                              [numpy_helper.from_array(b, "b")])
    opsets = [helper.make_opsetid("", 18)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def _onnxruntime_matmul(a: np.ndarray, b: np.ndarray, threads: int | None) -> Callable[[], object]:
    from alignvar_edge.onnx_session import open_session
    session = open_session(matmul_model(a.shape, b).SerializeToString(), threads=threads, inter_threads=1,
                           fix="check its install with `alignvar-edge doctor`")
    return lambda: session.run(None, {"a": a})


def _openvino_matmul(a: np.ndarray, b: np.ndarray, threads: int | None) -> Callable[[], object]:
    from alignvar_edge.lazy import keep_openvino_local
    keep_openvino_local()
    import openvino as ov

    from alignvar_edge.runtimes.openvino.opset import opset13
    ops = opset13()
    x = ops.parameter(list(a.shape), np.float32)
    config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}      # an fp32 roof, on bf16 CPUs too
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(ov.Model([ops.matmul(x, ops.constant(b), False, False)], [x]), "CPU", config)
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a})


def _limits(library: str, threads: int | None) -> contextlib.AbstractContextManager[None]:
    if library in _RUNTIMES:
        return contextlib.nullcontext()
    return _blas_threads(threads) if library == "numpy" else _torch_threads(threads)


def measure_peak(n: int = 1024, repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    """{"gflops": best, "best_gflops", "library", "threads", "by_config", "n", "method"}.

    Best of `repeats` runs (not the median: a peak is what the hardware can do, and a shared
    machine only ever slows a run down) for numpy and torch, with `threads` threads and, when that
    is more than one, also with one: on an oversubscribed machine a second thread can make a GEMM
    slower, and the roof must not sit below what an engine demonstrably achieves.
    """
    flops = 2.0 * n ** 3
    counts = [threads] if not threads or threads <= 1 else [threads, 1]
    libraries, left_out = _libraries(), {}
    unsettable = _blas_threads_unsettable() if threads else None
    if unsettable:
        # its GEMM would run on every core it likes (or a matrix unit) under a one-thread label
        libraries.remove("numpy")
        left_out["numpy"] = unsettable
    by: dict[str, float] = {}
    for lib in libraries:
        for t in counts:
            fn = _matmul(lib, n, threads=t)
            with _limits(lib, t):
                by[f"{lib}/{t or 'default'}t"] = round(_best_gflops(fn, flops, repeats), 2)
    best = max(by, key=lambda k: by[k])
    lib, count = best.split("/")
    return {"n": n, "repeats": repeats, "dtype": "float32", "by_config": by,
            "numpy_gflops": max((v for k, v in by.items() if k.startswith("numpy")), default=None),
            "torch_gflops": max((v for k, v in by.items() if k.startswith("torch")), default=None),
            "gflops": by[best], "best_gflops": by[best], "library": lib,
            "threads": None if count == "defaultt" else int(count[:-1]),
            "method": f"best of {repeats} {n}x{n}x{n} fp32 matmuls per library ({', '.join(libraries)}) "
                      f"and thread count ({', '.join(str(c) for c in counts)})",
            **({"left_out": left_out} if left_out else {})}


def gemm_call(n: int, library: str, threads: int | None = None) -> tuple[Callable[[], object], float]:
    """(one n^3 fp32 matmul in the configuration that won `measure_peak`, its FLOPs): timed once
    per benchmark round, so the roof is also measured under the load the engines see."""
    fn = _matmul(library, n, seed=1, threads=threads)

    def call() -> object:
        with _limits(library, threads):
            return fn()
    return call, 2.0 * n ** 3


def in_run_peak(peak: dict[str, Any], samples_ms: list[float], flops: float) -> dict[str, Any]:
    """Fold the per-round GEMM timings into the peak: `gflops` = `best_gflops` = the best GEMM
    seen before or during the run (the hardware's demonstrated roof); the in-run median (the roof
    under the load the engines' median times saw: the summary's median bound) and worst are kept
    beside it, and show how much the load varied."""
    if not samples_ms:
        return peak
    g = sorted(flops / (ms / 1e3) / 1e9 for ms in samples_ms)
    out = dict(peak)
    out["upfront_best_gflops"] = peak["gflops"]
    out["in_run"] = {"samples": len(g), "median_gflops": round(float(np.median(g)), 2),
                     "best_gflops": round(g[-1], 2), "worst_gflops": round(g[0], 2)}
    out["gflops"] = out["best_gflops"] = round(max(peak["gflops"], g[-1]), 2)
    out["method"] = (f"{peak['method']} before the run, and one {peak['n']}^3 {out['library']} matmul "
                     f"({out['threads']} thread(s)) per timed round; the peak is the best of all")
    return out
