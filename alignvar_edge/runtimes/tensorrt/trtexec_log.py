"""trtexec's log: the TensorRT version, device, precision flags, DLA core and timing statistics it
reports, read from its text (with or without the `[date] [I]` prefixes). Used by `adopt` and by
`bench trtexec`; no TensorRT needed. `other_file_named` and `log_contradictions` find a log that is
not of the engine it is read for; each caller words the refusal for what it was given.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignvar_edge.errors import InputError
from alignvar_edge.manifest import sha256_file

__all__ = ["Contradiction", "log_built", "log_contradictions", "logged_precision", "other_file_named",
           "parse_trtexec_log", "read_trtexec_log"]

_PREFIX = r"^(?:\[[^\]]*\]\s*)*"          # "[10/03/2024-10:47:59] [I] " or nothing
_STATS = ("Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency")


def _stats(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in re.findall(r"\b(min|max|mean|median)\s*=?\s*([0-9.eE+-]+)\s*ms", text):
        out[key] = float(value)
    for pct, value in re.findall(r"percentile\(([0-9.]+)%\)\s*=?\s*([0-9.eE+-]+)\s*ms", text):
        out[f"p{float(pct):g}"] = float(value)
    return out


def read_trtexec_log(log: str | Path) -> str:
    """The text of a trtexec log file, or one line naming it and how to save one."""
    path = Path(log)
    if not path.is_file():
        raise InputError(f"trtexec log '{log}' does not exist; save trtexec's output with `2>&1 | tee FILE`")
    return path.read_text(errors="replace")


def parse_trtexec_log(text: str, timing: bool = True) -> dict[str, Any]:
    """trtexec's performance summary, device and command line, as numbers (ms, qps, s). With
    `timing=False` a log without a summary (`--buildOnly`) will do: version, device and flags."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        body = re.sub(_PREFIX, "", line.strip())
        m = re.match(r"Throughput:\s*([0-9.eE+-]+)\s*qps", body)
        if m:
            found["throughput_qps"] = float(m.group(1))
            continue
        m = re.match(r"Set layer (.+) to precision (\w+)$", body)     # one per --layerPrecisions layer it set
        if m:
            found.setdefault("layers_set", []).append(m.group(1))
            continue
        name, colon, rest = body.partition(":")
        if colon and name in _STATS:
            stats = _stats(rest)
            if "median" in stats:
                found[name.lower().replace(" ", "_") + "_ms"] = stats
        elif colon and name in ("Total Host Walltime", "Total GPU Compute Time"):
            m = re.match(r"\s*([0-9.eE+-]+)\s*s", rest)
            if m:
                found[name.lower().replace(" ", "_") + "_s"] = float(m.group(1))
        elif colon and name == "Selected Device":
            found["device"] = rest.strip()
        elif colon and name == "Compute Capability":
            found["compute_capability"] = rest.strip()
        m = re.search(r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\] # (.*)$", line)
        if m:
            found["status"] = m.group(1) if m.group(1) != "RUNNING" else found.get("status", "RUNNING")
            found["tensorrt_version"] = _trt_version(m.group(2))
            found["command"] = m.group(3).strip()
    if timing and ("latency_ms" not in found or "throughput_qps" not in found):
        raise InputError("no trtexec performance summary (\"Throughput: ... qps\" and \"Latency: min = ... "
                         "ms, ...\") in the log; run trtexec with inference (not --buildOnly) and save its "
                         "whole output: trtexec ... 2>&1 | tee trtexec.log")
    cmd = shlex.split(found.get("command", ""))
    found["flags"] = [c for c in cmd[1:] if c.startswith("--")]
    # strongly typed: the ONNX's own types decide, so the flags say nothing (the kit's precision)
    found["precision"] = ("int8" if "--int8" in cmd or "--best" in cmd else
                          "fp16" if "--fp16" in cmd else
                          None if "--stronglyTyped" in cmd else "fp32" if log_built(found) else None)
    dla = [c.split("=", 1)[1] for c in cmd if c.startswith("--useDLACore=")]
    found["dla_core"] = int(dla[0]) if dla else None
    return found


def other_file_named(parsed: dict[str, Any], files: dict[str, Path]) -> tuple[str, Path, Path] | None:
    """The first file flag of the log's command line (a key of `files`: `--saveEngine`, `--loadEngine`,
    `--onnx`) naming a file here, relative to this folder, that is not the one given for it (a copy
    is the same file: compared by content), as (flag, named, given); None where none does."""
    for flag, given in files.items():
        for named in (Path(f.split("=", 1)[1]) for f in parsed.get("flags") or [] if f.startswith(flag + "=")):
            if named.is_file() and not named.samefile(given) and sha256_file(named) != sha256_file(given):
                return flag, named, given
    return None


def _trt_version(code: str) -> str:
    """trtexec's version code: 8601 -> 8.6.1, 100300 -> 10.3.0 (major*1000 + minor*100 + patch up
    to TensorRT 9; major*10000 + minor*100 + patch from TensorRT 10)."""
    n = int(code)
    if n >= 100000:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def _three_parts(version: str) -> str:
    """10.3.0.30 -> 10.3.0: trtexec's log knows three parts of the version, a build's manifest four."""
    return ".".join(version.split(".")[:3])


def log_built(parsed: dict[str, Any]) -> bool:
    """Whether the log's command built an engine (from --onnx), so its flags say how it was built
    (a --loadEngine run ignores the build flags it is given)."""
    return any(f.startswith("--onnx=") for f in parsed.get("flags") or [])


def logged_precision(parsed: dict[str, Any], graph_precision: str | None = None) -> str | None:
    """The precision the log's command built at: its flags', or for a `--stronglyTyped` build the
    ONNX's own (`graph_precision`); None where the log does not say (no build in it)."""
    if not log_built(parsed):
        return None
    if parsed.get("precision"):
        return str(parsed["precision"])
    return graph_precision if "--stronglyTyped" in (parsed.get("flags") or []) else None


@dataclass(frozen=True)
class Contradiction:
    """One fact of a trtexec log other than the one expected of the engine it is read for: `what`
    ("precision", "TensorRT version", "compute capability", "DLA core"), `logged` and `expected`
    (a DLA core: its number, None for the GPU), and `said_by`, the log's words that say it."""

    what: str
    logged: Any
    expected: Any
    said_by: str


_PRECISION_FLAGS = ("--int8", "--best", "--fp16", "--stronglyTyped")


def log_contradictions(parsed: dict[str, Any], *, precision: str | None = None, graph_precision: str | None = None,
                       tensorrt_version: str | None = None, compute_capability: str | None = None,
                       dla_core: int | None = None, check_dla: bool = True) -> list[Contradiction]:
    """What a parsed trtexec log says against the engine it is read for, in this order: its build's
    precision (`logged_precision`: `graph_precision` for a --stronglyTyped build) against
    `precision`; its TensorRT version (three parts) and compute capability; its DLA core against
    `dla_core` (None: the GPU; `check_dla=False`: none expected), where it says one: a build names
    the core it used (none: the GPU), a run names one with --useDLACore. What the log does not say,
    or is not expected (None), contradicts nothing."""
    flags = parsed.get("flags") or []
    found = []
    logged = logged_precision(parsed, graph_precision)
    if precision and logged and logged != precision:
        how = next((f for f in flags if f in _PRECISION_FLAGS), "no --fp16 or --int8")
        found.append(Contradiction("precision", logged, precision, how))
    version = _three_parts(str(parsed.get("tensorrt_version") or ""))
    if version and tensorrt_version and version != _three_parts(tensorrt_version):
        found.append(Contradiction("TensorRT version", version, _three_parts(tensorrt_version),
                                   "its '&&&& RUNNING TensorRT.trtexec' line"))
    cc = parsed.get("compute_capability")
    if cc and compute_capability and cc != compute_capability:
        found.append(Contradiction("compute capability", cc, compute_capability, "its 'Compute Capability' line"))
    logged_dla = parsed.get("dla_core")
    if check_dla and (log_built(parsed) or logged_dla is not None) and logged_dla != dla_core:
        found.append(Contradiction("DLA core", logged_dla, dla_core,
                                   "no --useDLACore" if logged_dla is None else f"--useDLACore={logged_dla}"))
    return found
