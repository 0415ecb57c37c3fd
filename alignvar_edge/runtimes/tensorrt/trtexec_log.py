"""trtexec's log: the TensorRT version, device, precision flags, DLA core and timing statistics it
reports, read from its text (with or without the `[date] [I]` prefixes). Used by `adopt` and by
`bench trtexec`; no TensorRT needed.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from alignvar_edge.errors import InputError

__all__ = ["parse_trtexec_log", "read_trtexec_log"]

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
    built = any(c.startswith("--onnx=") for c in cmd)     # --loadEngine: the flags say nothing
    # strongly typed: the ONNX's own types decide, so the flags say nothing (the kit's precision)
    found["precision"] = ("int8" if "--int8" in cmd or "--best" in cmd else
                          "fp16" if "--fp16" in cmd else
                          None if "--stronglyTyped" in cmd else "fp32" if built else None)
    dla = [c.split("=", 1)[1] for c in cmd if c.startswith("--useDLACore=")]
    found["dla_core"] = int(dla[0]) if dla else None
    return found


def _trt_version(code: str) -> str:
    """trtexec's version code: 8601 -> 8.6.1, 100300 -> 10.3.0 (major*1000 + minor*100 + patch up
    to TensorRT 9; major*10000 + minor*100 + patch from TensorRT 10)."""
    n = int(code)
    if n >= 100000:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"
