"""Host fingerprint: what machine a report was measured on, so reports from devices can be merged.

Everything is read from the OS without privileges and without network: /proc/cpuinfo (or sysctl
on macOS), nvidia-smi and the Jetson files when present. A probe that fails leaves its field None;
the fingerprint never raises. The hostname is not recorded (reports get shared).
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from alignvar_edge import cpuinfo
from alignvar_edge.cpuinfo import cpu_info, cpu_words, is_x86, machine_detail, probe_command, probe_file
from alignvar_edge.runtimes.base import check_thread_count

__all__ = ["MACHINE_FIELDS", "fingerprint", "gpu_info", "identity_words", "isa_word", "jetson_info",
           "machine_differences", "machine_identity", "short_label"]

def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs from nvidia-smi (name, driver, memory, power limit); empty when none."""
    out = probe_command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,compute_cap",
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
    if not cpuinfo.is_jetson():
        return None
    release = probe_file(cpuinfo.JETSON_RELEASE)
    model = probe_file(cpuinfo.DEVICE_TREE_MODEL)
    power = probe_command(["nvpmodel", "-q"])
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


class OwnLoad:
    """Started with a run: `record` writes the load average at its end and the run's own busy threads
    (CPU seconds per second) into the fingerprint, which `shared_load` tells apart."""

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def record(self, fp: dict[str, Any]) -> None:
        fp["load_average_end"] = fp.get("load_average") and [round(x, 2) for x in os.getloadavg()]
        fp["own_load"] = round((time.process_time() - self._cpu) / (time.perf_counter() - self._wall), 2)


def shared_load(fp: dict[str, Any]) -> dict[str, Any] | None:
    """The load of other work a run shared its machine with, where it was heavy enough to inflate its
    times: the 1-min load average at the end (`load_average_end`) less the run's own busy threads
    (`own_load`), above half the usable cores. Reports without `own_load` (older ones) take the start
    and end averages as they are. None on an idle machine, or where no run was timed here (an
    imported trtexec log) or the OS gives no load average."""
    start, end, own = fp.get("load_average"), fp.get("load_average_end"), fp.get("own_load")
    cores = (fp.get("cpu") or {}).get("usable_cores")
    if not (start and end and cores):
        return None
    # the start is not used with `own_load`: the minute before may be this process's own build work
    others = max(0.0, end[0] - own) if own is not None else max(start[0], end[0])
    if others <= 0.5 * cores:
        return None
    return {"start": start[0], "end": end[0], "own": own, "others": round(others, 2), "cores": cores}


def load_words(load: dict[str, Any]) -> str:
    """`shared_load`'s result in words, the same in every report, table and warning."""
    own = f", {load['own']} of it the run's own" if load.get("own") is not None else ""
    return (f"1-min load average {load['start']} at the start, {load['end']} at the end{own}, "
            f"on {load['cores']} usable cores")


def run_threads(threads: int | None, fp: dict[str, Any]) -> int:
    """The thread count of a bench: --threads, or every core this process may use. More threads than
    those cores are refused: the extra ones only wait for a core, so every figure would be inflated
    (and a GEMM peak at hundreds of threads takes minutes)."""
    cores = (fp.get("cpu") or {}).get("usable_cores") or os.cpu_count() or 1
    return check_thread_count(threads, "--threads", cores) or int(cores)


def machine_words(fp: dict[str, Any]) -> str:
    """The CPU a report was timed on, its ISA and OS, in words (report and merged tables alike); for
    a trtexec log copied off its device, the log's GPU and the machine that imported it."""
    if "imported_by" in fp:
        gpu = (fp.get("gpus") or [{}])[0]
        cc = f" (compute capability {gpu['compute_capability']})" if gpu.get("compute_capability") else ""
        by = (fp["imported_by"].get("cpu") or {}).get("model") or "another machine"
        return f"{gpu.get('name')}{cc}, timed by trtexec there; its log imported on {by}"
    cpu = fp.get("cpu") or {}
    detail = machine_detail(cpu)
    return (f"{cpu_words(cpu)}{f' [{detail}]' if detail else ''}, {cpu.get('usable_cores')} usable cores, ISA "
            f"{' '.join(cpu.get('isa') or []) or '–'}; {fp['os']['platform']}")


def short_label(fp: dict[str, Any]) -> str:
    """A default device label for tables: Jetson model, else GPU, else CPU model and cores."""
    if fp.get("jetson") and fp["jetson"].get("model"):
        mode = fp["jetson"].get("power_mode")
        return fp["jetson"]["model"] + (f" ({mode})" if mode else "")
    cpu = fp.get("cpu") or {}
    name = (cpu.get("model") or cpu.get("arch") or "unknown CPU").replace("(R)", "").replace("(TM)", "")
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    return f"{' '.join(name.split())}, {cores} cores" if cores else name


# what tells one machine from another in a fingerprint (the hostname is never recorded), in the order
# a merged report's labels take them: its CPU's (key -> what a message calls it), then the OS's
# system, the GPUs' names and the Jetson model
_CPU_IDENTITY = (("model", "CPU name"), ("arch", "CPU architecture"), ("x86_family", "x86 family"),
                 ("x86_model", "x86 model"), ("logical_cores", "logical core count"))
MACHINE_FIELDS = (*(word for _, word in _CPU_IDENTITY), "OS", "GPUs", "Jetson model")
_X86_ONLY = ("x86_family", "x86_model")


def machine_identity(fp: dict[str, Any]) -> dict[str, Any]:
    """What names the machine of a fingerprint (a report's `host`), by what a message calls each
    field (MACHINE_FIELDS): the CPU's name, architecture, x86 family and model (an x86 CPU's only) and
    logical core count, the OS's system (Linux, Darwin, Windows: not its release or C library, which
    an update changes), the GPUs' names and the Jetson model. The one rule for "the same machine": a
    bench's --out and `bench merge` read it alike. A field a report does not record (an older one; a
    trtexec log's, which records no CPU) is left out."""
    cpu, system = fp.get("cpu"), fp.get("os")
    cpu, system = cpu if isinstance(cpu, dict) else {}, system if isinstance(system, dict) else {}
    x86 = is_x86(str(cpu.get("arch") or ""))
    out = {word: cpu[key] for key, word in _CPU_IDENTITY if key in cpu and (x86 or key not in _X86_ONLY)}
    if "system" in system:
        out["OS"] = system["system"]
    if isinstance(fp.get("gpus"), list):
        out["GPUs"] = sorted(str(g.get("name")) for g in fp["gpus"] if isinstance(g, dict))
    if "jetson" in fp:
        out["Jetson model"] = fp["jetson"].get("model") if isinstance(fp["jetson"], dict) else None
    return out


def identity_words(value: Any) -> str:
    """A `machine_identity` value in words: GPUs' names joined, 'none' for no GPU or an unknown value."""
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def machine_differences(fp: dict[str, Any], other: dict[str, Any], other_name: str) -> list[str]:
    """What tells the machine of fingerprint `fp` (a report's `host`) from that of `other`, called
    `other_name`, with both values ('x86 model 17 where this run has 2'); empty where every field both
    record (`machine_identity`) is the same: one machine, as far as the reports can tell."""
    theirs, ours = machine_identity(fp), machine_identity(other)
    return [f"{word} {identity_words(value)} where {other_name} has {identity_words(ours[word])}"
            for word, value in theirs.items() if word in ours and ours[word] != value]


# the widest vector ISA, where a CPU has no half units (isa_class): flag -> its name in labels
_VECTOR_ISA = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
               ("sve", "SVE"), ("asimd", "NEON"))


def isa_word(fp: dict[str, Any]) -> str | None:
    """The ISA class of the CPU a report was timed on, for telling apart machines one label names:
    its half-precision class (AMX, AVX512-BF16, AVX512-FP16), else its widest vector ISA (AVX-512,
    AVX2, ...); None where the report records no ISA (a trtexec log imported elsewhere)."""
    from alignvar_edge.cpuinfo import isa_features
    from alignvar_edge.runtimes.half import HALF_CLASSES, isa_class
    isa = (fp.get("cpu") or {}).get("isa") or []
    if not isa:
        return None
    half = isa_class(isa_features(isa))
    if half in HALF_CLASSES:
        return half
    return next((word for flag, word in _VECTOR_ISA if flag in isa), None)
