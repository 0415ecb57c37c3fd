"""Host fingerprint: what machine a report was measured on, so reports from devices can be merged.

Everything is read from the OS without privileges and without network: /proc/cpuinfo (or sysctl
on macOS), nvidia-smi and the Jetson files when present. A probe that fails leaves its field None;
the fingerprint never raises. The hostname is not recorded (reports get shared).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "cpu_info", "fingerprint", "gpu_info", "jetson_info", "short_label"]

# ISA features that decide kernel choice for our engines: x86 vector widths, int8 dot products
# (VNNI / AMX), half/bf16 support; ARM's NEON/dot-product/fp16 for Jetson and Apple.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16")


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a probe command, or None when it is absent, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical/physical/usable cores, ISA flags of interest, memory."""
    info: dict[str, Any] = {"model": None, "arch": platform.machine(), "logical_cores": os.cpu_count(),
                            "physical_cores": None, "usable_cores": None, "isa": [], "memory_gb": None}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))          # type: ignore[attr-defined]
    except (AttributeError, OSError):
        info["usable_cores"] = os.cpu_count()
    text = _read("/proc/cpuinfo")
    if text:
        model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
        info["model"] = model.group(1).strip() if model else None
        flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        have = set(flags.group(1).split()) if flags else set()
        info["isa"] = [f for f in ISA_FLAGS if f in have]
        cores = {(m.group(1), m.group(2)) for m in re.finditer(
            r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.S)}
        info["physical_cores"] = len(cores) or None
        mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo") or "", re.M)
        if mem:
            info["memory_gb"] = round(int(mem.group(1)) / 1024 ** 2, 1)
    elif sys.platform == "darwin":
        info["model"] = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        phys = _run(["sysctl", "-n", "hw.physicalcpu"])
        info["physical_cores"] = int(phys) if phys and phys.isdigit() else None
        mem = _run(["sysctl", "-n", "hw.memsize"])
        info["memory_gb"] = round(int(mem) / 1024 ** 3, 1) if mem and mem.isdigit() else None
        feats = (_run(["sysctl", "hw.optional"]) or "").lower()
        # sysctl names -> the Linux /proc/cpuinfo spelling used everywhere else in reports
        names = {"avx2_0": "avx2", "avx512f": "avx512f", "fma": "fma", "neon": "asimd",
                 "arm.feat_dotprod": "asimddp", "arm.feat_fp16": "asimdhp", "arm.feat_bf16": "bf16",
                 "arm.feat_i8mm": "i8mm"}
        info["isa"] = [v for k, v in names.items() if f"hw.optional.{k}: 1" in feats]
    if info["model"] is None:
        info["model"] = platform.processor() or None
    return info


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs from nvidia-smi (name, driver, memory, power limit); empty when none."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,compute_cap",
                "--format=csv,noheader,nounits"])
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_mib": parts[2],
                         "power_limit_w": parts[3] if len(parts) > 3 else None,
                         "compute_capability": parts[4] if len(parts) > 4 else None})
    return gpus


def jetson_info() -> dict[str, Any] | None:
    """Jetson model, L4T release and nvpmodel power mode; None when this is not a Jetson."""
    release = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    power = _run(["nvpmodel", "-q"])
    return {"model": model, "l4t_release": release.splitlines()[0] if release else None,
            "power_mode": " ".join(power.split()) if power else None,
            "power_mode_note": None if power else "nvpmodel -q gave no answer (needs the nvpmodel tool)"}


def _backend_versions() -> dict[str, Any]:
    from alignvar_edge.runtimes import available_backends
    out: dict[str, Any] = {}
    for b in available_backends():
        out[b.name] = {"available": b.available, "version": b.version,
                       "reason": b.reason or None, "devices": b.devices}
    return out


def fingerprint(with_backends: bool = True) -> dict[str, Any]:
    """Everything a reader needs to know which device a number belongs to (see module doc)."""
    from alignvar_edge import __version__
    from alignvar_edge.manifest import tool_versions

    fp: dict[str, Any] = {
        "cpu": cpu_info(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "python": platform.python_version(),
        "alignvar_edge": __version__,
        "gpus": gpu_info(),
        "jetson": jetson_info(),
        "apple": {"mac_ver": platform.mac_ver()[0]} if sys.platform == "darwin" else None,
        "tools": tool_versions(),
    }
    try:
        fp["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        fp["load_average"] = None
    if with_backends:
        fp["backends"] = _backend_versions()
    return fp


def short_label(fp: dict[str, Any]) -> str:
    """A default device label for tables: Jetson model, else GPU, else CPU model and cores."""
    if fp.get("jetson") and fp["jetson"].get("model"):
        mode = fp["jetson"].get("power_mode")
        return fp["jetson"]["model"] + (f" ({mode})" if mode else "")
    cpu = fp.get("cpu") or {}
    name = (cpu.get("model") or cpu.get("arch") or "unknown CPU").replace("(R)", "").replace("(TM)", "")
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    return f"{' '.join(name.split())}, {cores} cores" if cores else name
