"""Host-aware half precision: which (backend, device) computes half fast here, and the build that
tries half first and keeps f32 when the half build misses the token / PSNR target.

One row per (backend, device kind): the half precision it would use and the CPU features that
make it fast (None: the device itself has half units). The ISA features come from /proc/cpuinfo
(`cpuinfo.isa_features`): OpenVINO's CPU plugin computes bf16 on AMX and AVX512-BF16 and, by
default, does so on those CPUs whatever the engine was checked for (see runtimes/openvino/backend.py).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignvar_edge import runtimes
from alignvar_edge.cpuinfo import isa_features
from alignvar_edge.errors import HalfPrecisionError
from alignvar_edge.runtimes.openvino.devices import device_kind

__all__ = ["FAST_HALF", "HALF_CLASSES", "build_auto", "half_somewhere", "host_half", "isa_class", "isa_phrase"]

# (backend, device kind) -> (half precision, CPU features that make it fast; None = the device's own)
FAST_HALF: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {
    ("openvino", "CPU"): ("bf16", ("AMX", "AVX512-BF16")),
    ("openvino", "GPU"): ("fp16", None),
    ("openvino", "NPU"): ("fp16", None),
}


def isa_phrase(features: dict[str, bool]) -> str:
    """'AVX512-BF16, VNNI (without AMX, AVX512-FP16)': the CPU features that decide half and int8 speed."""
    have = [f for f, on in features.items() if on]
    lack = [f for f, on in features.items() if not on]
    return (", ".join(have) or "none of " + ", ".join(lack)) + (f" (without {', '.join(lack)})" if have and lack else "")


# the ISA classes of CPUs with half units, best first
HALF_CLASSES = ("AMX", "AVX512-BF16", "AVX512-FP16")


def isa_class(features: dict[str, bool]) -> str:
    """The row of the benchmark table a CPU belongs to: AMX, AVX512-BF16, AVX512-FP16 or other."""
    return next((f for f in HALF_CLASSES if features.get(f)), "no half units")


def half_somewhere(backend: str, device: str | None) -> str | None:
    """The half precision a plain build for this backend and device tries on a host that computes it
    fast (`host_half` says whether this one does), or None where no host's plain build is half."""
    row = FAST_HALF.get((backend, device_kind(device)))
    return None if row is None else row[0]


def host_half(backend: str, device: str | None, features: dict[str, bool] | None = None) -> str | None:
    """The half precision worth trying for this backend and device here, or None (keep f32)."""
    row = FAST_HALF.get((backend, device_kind(device)))
    if row is None:
        return None
    precision, needs = row
    if needs is None:
        return precision
    features = isa_features() if features is None else features
    return precision if any(features.get(f) for f in needs) else None


def build_auto(source: Path, target: str, out_for: Callable[[str], Path], device: str | None = None,
               log: Callable[[str], None] = lambda _m: None, **kw: Any) -> tuple[Path, str]:
    """Build half where `host_half` says so and the build keeps the target, else fp32; returns
    (engine dir, precision built). `out_for(precision)` names the engine directory."""
    half = host_half(target, device)
    if half:
        try:
            return runtimes.build(source, target, half, out=out_for(half), device=device, **kw), half
        except HalfPrecisionError as e:
            log(f"{target} {half} missed the target ({e.measured}); nothing of it was kept: building fp32 instead")
    return runtimes.build(source, target, "fp32", out=out_for("fp32"), device=device, **kw), "fp32"
