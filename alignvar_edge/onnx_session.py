"""The one place that opens ONNX Runtime sessions: export parity, the staged host loop,
calibration, the fidelity search, the onnxruntime backend and the bench's GEMM peak all come here.

Session options are exposed: `threads` (intra-op), `inter_threads`, `optimization`
(disable|basic|extended|all), `spin` (busy-wait between ops; off helps on a shared, loaded machine).
Needs only onnxruntime (the `device` extra), imported on first use.
"""
from __future__ import annotations

import os
import re
import weakref
from typing import Any

from alignvar_edge.errors import ArtifactError, InputError, out_of_memory
from alignvar_edge.lazy import lazy_import
from alignvar_edge.native_paths import opened_natively

ort = lazy_import("onnxruntime")

__all__ = ["CPU", "OPT_LEVELS", "open_session", "session_options"]

CPU = "CPUExecutionProvider"
OPT_LEVELS = ("disable", "basic", "extended", "all")


def session_options(threads: int | None = None, inter_threads: int | None = None, optimization: str = "all",
                    spin: bool | None = None) -> Any:
    if optimization not in OPT_LEVELS:
        raise InputError(f"optimization must be one of {', '.join(OPT_LEVELS)}, got '{optimization}'")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    if threads:
        so.intra_op_num_threads = int(threads)
    if inter_threads:
        so.inter_op_num_threads = int(inter_threads)
    if spin is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # fatal only: warnings (unused initialisers) are noise here, and an error is also raised, which
    # the caller turns into one line; logged too, it came first with ORT's C++ source paths
    so.log_severity_level = 4
    return so


def open_session(model: str | os.PathLike[str] | bytes, providers: list[Any] | None = None,
                 threads: int | None = None, inter_threads: int | None = None, optimization: str = "all",
                 spin: bool | None = None, fix: str = "re-export the artifact") -> Any:
    """An InferenceSession on a model path or serialized bytes (CPU unless `providers` say
    otherwise); a graph ONNX Runtime refuses is an ArtifactError that says `fix`, and no memory
    to load it an OutOfMemoryError (no re-export cures that)."""
    so = session_options(threads, inter_threads, optimization, spin)
    src, folder = (model, None) if isinstance(model, bytes) else opened_natively(model)
    try:
        session = ort.InferenceSession(src, sess_options=so, providers=providers or [CPU])
    except BaseException as e:  # ORT raises its own exception types for broken, truncated or invalid graphs
        if folder is not None:
            os.close(folder)
        if not isinstance(e, Exception):       # a Ctrl-C while it loads
            raise
        what = "an in-memory model" if isinstance(model, bytes) else model
        if (memory := out_of_memory(e, f"loading {what} in ONNX Runtime")) is not None:
            raise memory from e
        raise ArtifactError(f"ONNX Runtime cannot load {what}: {ort_reason(e)}; {fix}") from e
    if folder is not None:
        # the session keeps the path it was given and opens it again (set_providers, a GPU provider's
        # fallback to CPU): the folder it goes through stays open while the session lives
        weakref.finalize(session, os.close, folder)
    return session


# "[ONNXRuntimeError] : 1 : FAIL : " before each nested message, and ORT's "file.cc:123 Function "
# (the C++ place it was raised at) before, or run into, the innermost one's text
_ORT_STATUS = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : ")
_CPP_PLACE = re.compile(r"(?:\S*/)?\w+\.(?:cc|cpp|h):\d+\s+(?:[A-Za-z_][\w:~]*(?:\([^)]*\))?\s+)?")


def ort_reason(error: BaseException) -> str:
    """ONNX Runtime's reason without its wrapping: the innermost status message, without the C++
    source places in it."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    inner = _ORT_STATUS.split(text)[-1]
    return " ".join(_CPP_PLACE.sub(" ", inner).split()).rstrip(".") or text
