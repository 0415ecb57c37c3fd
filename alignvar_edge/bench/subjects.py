"""What a benchmark measures: engines named on the command line, plus the two baselines.

An ENGINE argument is `[LABEL=][BACKEND[@DEVICE]:]PATH` or `bicubic`:
    exports/tiny                       backend from the manifest (an ONNX export runs on onnxruntime)
    openvino:exports/tiny              OpenVINO reading the ONNX export directly
    ov-int8=engines/tiny-openvino-int8 a built engine dir, labelled "ov-int8" in tables
    onnxruntime@cuda:exports/tiny      a device for the backend
    torch@cuda+eager:alignvar-tiny     the torch engine on CUDA without its CUDA-graph replay
A TensorRT build kit (`build --target tensorrt` without TensorRT) counts as a TensorRT engine.
A backend that cannot run here is recorded as unavailable with its one-line reason, never timed.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alignvar_edge.bench.fidelity import bicubic_tiles
from alignvar_edge.errors import AlignVAREdgeError, BackendUnavailableError, InputError
from alignvar_edge.manifest import Manifest
from alignvar_edge.name_text import shell_word

__all__ = ["BICUBIC", "EAGER", "EngineSpec", "Subject", "artifact_bytes", "call_for", "check_cache_dir",
           "open_subject", "parse_spec", "spec_manifest", "takes_load_option", "unique_label", "untimed_error"]

BICUBIC, EAGER = "bicubic", "pytorch-eager"


@dataclass(frozen=True)
class EngineSpec:
    text: str
    label: str | None
    backend: str          # a runtimes backend name, "auto" or "bicubic"
    device: str | None
    path: str | None
    hint: str | None = None   # OpenVINO's performance hint ("throughput": parallel streams)
    eager: bool = False       # torch: each call eagerly, no CUDA-graph replay (torch+eager)


@dataclass
class Subject:
    """One row of the report: an opened engine (or a baseline), or why it could not be opened."""

    label: str
    backend: str
    kind: str                          # "engine" | "baseline"
    path: str | None = None
    precision: str | None = None
    device: str | None = None
    engine: Any = None                 # a runtimes Engine, None for bicubic and unavailable ones
    status: str = "ok"
    reason: str | None = None
    manifest: Manifest | None = None        # None for a checkpoint and for bicubic
    info: dict[str, Any] = field(default_factory=dict)

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason = status, " ".join(str(reason).split())
        if self.engine is not None:
            try:
                self.engine.close()
            finally:
                self.engine = None


def parse_spec(text: str) -> EngineSpec:
    from alignvar_edge.recipes import ALIASES, BACKENDS

    label, rest = None, text
    head, eq, tail = text.partition("=")
    if eq and head and "/" not in head and ":" not in head:
        label, rest = head, tail
    if rest.lower() == BICUBIC:
        return EngineSpec(text, label or BICUBIC, BICUBIC, None, None)
    backend, device, path, hint, eager = "auto", None, rest, None, False
    prefix, colon, after = rest.partition(":")
    prefix, plus, mode = prefix.partition("+")
    name, _, dev = prefix.partition("@")
    key = ALIASES.get(name.lower(), name.lower())
    if colon and key in BACKENDS:
        backend, device, path = key, dev or None, after
        if plus:
            modes = {("openvino", "throughput"), ("torch", "eager")}
            if (key, mode.lower()) not in modes:
                raise InputError(f"'+{mode}' in engine '{text}': the modes are openvino+throughput (asynchronous "
                                 "requests on parallel streams) and torch+eager (no CUDA-graph replay)")
            hint, eager = ("throughput", False) if key == "openvino" else (None, True)
    elif colon and ("@" in prefix or plus):
        raise _unknown_backend(name, text)
    if not path:
        raise InputError(f"engine '{text}' names no path; use [LABEL=][BACKEND[@DEVICE][+MODE]:]PATH "
                         "or bicubic")
    return EngineSpec(text, label, backend, device, path, hint, eager)


def _unknown_backend(name: str, text: str) -> InputError:
    from alignvar_edge.recipes import BACKENDS
    return InputError(f"unknown backend '{name}' in engine '{text}'; choose one of {', '.join(BACKENDS)}")


def check_exists(spec: EngineSpec) -> None:
    """Fail fast (before minutes of measuring) on a path that is not there, is neither a checkpoint
    nor an artifact, or is an artifact that fails verification (a file edited, missing or added):
    its own message, as `upscale` and `selftest` refuse it, where the reference search would only
    say that no model could be told from the engines, and the row would fail after the timing."""
    if spec.path is None:
        return
    p = Path(spec.path)
    if p.exists():                                        # (no model import for paths: no PyTorch)
        if p.is_file() and p.suffix.lower() == ".json":  # `bench A.json B.json` for `bench merge ...`
            raise InputError(f"'{spec.path}' is a file, not an engine; to merge bench reports run "
                             f"`alignvar-edge bench merge {shell_word(spec.path)} ... --md MERGED.md`")
        from alignvar_edge.model.checkpoint import is_checkpoint
        if not is_checkpoint(p):          # a torch engine holds config.json too: verified like any engine
            from alignvar_edge.manifest import load_verified
            load_verified(p)          # not a directory, no manifest.json or not JSON, files not as it lists
        from alignvar_edge.runtimes import check_backend
        try:
            check_backend(p, spec.backend)    # 'openvino:ORT-ENGINE': its row would fail after the timing
        except BackendUnavailableError:       # 'tensorrt:KIT': its row says what a kit is, as for 'KIT'
            pass
        return
    from alignvar_edge.model.checkpoint import BUNDLED
    prefix, colon, _ = spec.path.partition(":")
    if spec.backend == "auto" and colon and prefix and "/" not in prefix and "\\" not in prefix:
        # 'openvin:engines/x': a misspelt backend, not a path with a colon (no such path either)
        raise _unknown_backend(prefix, spec.text)
    if spec.path not in BUNDLED:
        raise InputError(f"no engine at '{spec.path}' (from '{spec.text}'); pass an export, engine dir "
                         "or checkpoint made by alignvar-edge")


def artifact_bytes(path: str | None) -> int | None:
    """Bytes of every file of an artifact (a bundled name counts its checkpoint directory)."""
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        from alignvar_edge.model.checkpoint import BUNDLED, resolve_checkpoint_dir
        p = resolve_checkpoint_dir(path) if path in BUNDLED else p
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else None


def spec_manifest(path: str) -> Manifest | None:
    """The manifest of a subject's folder; None for a checkpoint or a folder without a readable one."""
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.checkpoint import is_checkpoint
    if is_checkpoint(path):
        return None
    try:
        return read_manifest(path)
    except AlignVAREdgeError:
        return None


def _backend_for(spec: EngineSpec, manifest: Manifest | None) -> str:
    from alignvar_edge.runtimes import detect_backend
    if spec.backend != "auto":
        return spec.backend
    if manifest and manifest.tensorrt_kit:
        return "tensorrt"       # a kit is ONNX, but its whole point is a TensorRT engine
    assert spec.path is not None
    return detect_backend(spec.path)


def takes_load_option(spec: EngineSpec, name: str) -> bool:
    """Whether the engine `spec` names opens on a backend whose `load_options` hold `name` (bicubic: no)."""
    from alignvar_edge import runtimes
    if spec.path is None:
        return False
    return name in runtimes.get_backend(_backend_for(spec, spec_manifest(spec.path))).load_options


def check_cache_dir(specs: Sequence[EngineSpec], cache_dir: str | os.PathLike[str] | None) -> None:
    """The compiled-model cache of the engines that take one (`cache_dir`, else the variable's), checked
    as their load checks it, before any timing: a folder they cannot use is one line naming the option
    or the variable, not failed rows after minutes."""
    from alignvar_edge.runtimes.openvino import CACHE_ENV
    if cache_dir is None and not os.environ.get(CACHE_ENV):
        return              # no cache asked for: nothing to check, no manifest to read for it
    from alignvar_edge.runtimes.openvino.backend import compile_cache
    given = {} if cache_dir is None else {"cache_dir": cache_dir}
    for spec in specs:
        if spec.path is not None and takes_load_option(spec, "cache_dir"):
            compile_cache(given, Path(spec.path))


def _load_opts(backend: str, threads: int | None, spin: bool | None, hint: str | None = None,
               eager: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The bench's settings that this backend's engines take, as its `load_options` declare them: every
    engine on the same threads (the report says them), ONNX Runtime's spin, the spec's mode, and
    OpenVINO's compiled-model cache."""
    from alignvar_edge import runtimes
    takes = runtimes.get_backend(backend).load_options
    wanted = {"threads": threads, "spin": spin, "hint": hint, "cuda_graphs": False if eager else None,
              "cache_dir": cache_dir}
    return {name: value for name, value in wanted.items() if value is not None and name in takes}


def open_subject(spec: EngineSpec, threads: int | None = None, spin: bool | None = False,
                 cache_dir: str | os.PathLike[str] | None = None) -> Subject:
    """Load an engine for measuring; an unusable backend gives an 'unavailable' subject. `cache_dir`:
    where the engines that compile as they load keep their compiled model (OpenVINO's `cache_dir`)."""
    from alignvar_edge import runtimes

    assert spec.path is not None
    manifest = spec_manifest(spec.path)
    backend = _backend_for(spec, manifest)
    kit = (manifest.tensorrt_kit if manifest else None) or {}
    precision = kit.get("precision") or (manifest.precision if manifest else None) or ("fp32" if backend == "torch" else None)
    mode = f"-{spec.hint}" if spec.hint else "-eager" if spec.eager else ""
    label = spec.label or f"{backend}-{precision or 'fp32'}{mode}"
    sub = Subject(label, backend, "engine", spec.path, precision, spec.device, manifest=manifest)
    sub.info["artifact_bytes"] = artifact_bytes(spec.path)
    b = runtimes.get_backend(backend)
    ok, why = b.is_available()
    if backend == "tensorrt" and kit:
        # the kit itself: whether or not TensorRT is here, there is no engine to time yet
        from alignvar_edge.runtimes.tensorrt.kit import not_an_engine
        sub.fail("unavailable", not_an_engine(spec.path, "bench the result") + " (its ONNX runs in ONNX Runtime "
                                f"anywhere: onnxruntime:{spec.path})")
        return sub
    if not ok:
        sub.fail("unavailable", why)
        return sub
    from alignvar_edge.bench.memory import rss_mb
    rss0, t0 = rss_mb(), time.perf_counter()
    try:
        sub.engine = runtimes.load(spec.path, backend=backend, device=spec.device,
                                   **_load_opts(backend, threads, spin, spec.hint, spec.eager, cache_dir))
    except AlignVAREdgeError as e:
        # an artifact this backend cannot run (a kit, a foreign engine) is not a number either
        sub.fail("unavailable" if "BackendUnavailable" in type(e).__name__ else "failed", str(e))
        return sub
    sub.info["load_s"] = round(time.perf_counter() - t0, 3)
    sub.info["load_rss_mb"] = round(rss_mb() - rss0, 1)
    sub.device = str(sub.engine.device)
    sub.info["compute_precision"] = getattr(sub.engine, "compute_precision", None)
    sub.info["expected_precision"] = getattr(sub.engine, "expected_precision", None)
    sub.precision = str(sub.engine.metadata.precision or precision or "fp32")
    if spec.label is None:
        sub.label = f"{backend}-{sub.precision}{mode}"
    sub.info["parallel_requests"] = sub.engine.parallel_requests
    from alignvar_edge.runtimes.selftest import cache_record
    sub.info["cache"] = cache_record(sub.engine)
    return sub


def call_for(sub: Subject, lr: np.ndarray, scale: int) -> Callable[[], object]:
    """One timed unit of a subject (the host runner's and the device bench's alike): an engine call
    on its batch (with the feeds `upscale` gives it: VARSR's refiner noise too), or bicubic on one tile."""
    if sub.backend == BICUBIC:
        one = lr[:1]
        return lambda: bicubic_tiles(one, scale)
    eng = sub.engine
    b = eng.batch
    x = lr[:b] if lr.shape[0] >= b else np.concatenate([lr, np.repeat(lr[-1:], b - lr.shape[0], 0)])
    feeds = eng.feeds_for(np.ascontiguousarray(x, np.float32))
    return lambda: eng.infer(feeds)


def unique_label(s: Subject, taken: set[str]) -> Subject:
    """Give `s` a label no other row has ('label#2', ...)."""
    label, n = s.label, 1
    while label in taken:
        n += 1
        label = f"{s.label}#{n}"
    s.label = label
    taken.add(label)
    return s


def untimed_error(engines: list[tuple[str, str, str | None]]) -> BackendUnavailableError | None:
    """Where engines were asked for (label, status, reason each) and every one is unavailable here,
    the one-line refusal, raised before any report is written: a report of no timed engine would be
    merged as if it were a device's figures. None otherwise (a run of the baselines alone included)."""
    if not engines or any(status != "unavailable" for _, status, _ in engines):
        return None
    return BackendUnavailableError("no engine could be timed here, so no report was written: "
                                   + "; ".join(f"{label}: {reason}" for label, _, reason in engines))
