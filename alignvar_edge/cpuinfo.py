"""What this CPU is and can do: model, cores, memory and the ISA flags that decide kernel choice
(x86 vector widths, int8 dot products (VNNI / AMX), half/bf16 support; ARM's NEON/dot-product/fp16
for Jetson and Apple). Read from /proc/cpuinfo (or sysctl on macOS) without privileges; a probe
that fails leaves its field None and never raises. One reader for the host fingerprint, the int8
recipes (`has_vnni`) and the half-precision choice.
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

__all__ = ["ARM_ISA_FEATURES", "CPUINFO", "ISA_FEATURES", "ISA_FLAGS", "cpu_info", "cpu_words", "has_vnni", "host_info",
           "host_line", "is_jetson", "is_x86", "isa_features", "machine_detail", "probe_command", "probe_file", "usable_cores"]

CPUINFO = "/proc/cpuinfo"
CPU0 = "/sys/devices/system/cpu/cpu0"       # Linux's clock and cache facts of the first CPU
# ISA features that decide kernel choice for our engines: x86 vector widths, int8 dot products
# (VNNI / AMX), half/bf16 support; ARM's NEON/dot-product/fp16 for Jetson and Apple.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16")
# feature shown by `doctor` and used by the int8 and half choices -> the ISA_FLAGS that provide it.
# VNNI leaves out amx_tile: that flag is AMX's register file, amx_int8 is its int8 dot product.
ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "AMX": ("amx_bf16",),
    "AVX512-BF16": ("avx512_bf16",),
    "AVX512-FP16": ("avx512_fp16",),
    "VNNI": ("avx512_vnni", "avx_vnni", "amx_int8"),
}
# the same for an Arm CPU (Jetson, Apple silicon under Linux): NEON's int8 dot product and its
# 8-bit matrix multiply, and its fp16 and bf16 arithmetic
ARM_ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "NEON-DOT": ("asimddp",),
    "I8MM": ("i8mm",),
    "NEON-FP16": ("asimdhp",),
    "BF16": ("bf16",),
    "SVE": ("sve",),
}


def probe_command(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a probe command, or None when it is absent, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def probe_file(path: str | os.PathLike[str]) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


JETSON_RELEASE = "/etc/nv_tegra_release"      # present on every Jetson Linux (L4T) install
DEVICE_TREE_MODEL = "/proc/device-tree/model"    # the board's name on ARM boards: "NVIDIA Jetson ..."


def is_jetson() -> bool:
    """Whether this is an NVIDIA Jetson: L4T's release file, or a device tree naming a Jetson (a
    container on one may have another distribution's /etc)."""
    if Path(JETSON_RELEASE).is_file():
        return True
    model = probe_file(DEVICE_TREE_MODEL)
    return bool(model and "jetson" in model.lower())


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; all of them where the OS has none)."""
    try:
        return len(os.sched_getaffinity(0))          # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_info(cpuinfo: str | os.PathLike[str] = CPUINFO, cpu0: str | os.PathLike[str] = CPU0) -> dict[str, Any]:
    """CPU model, logical/physical/usable cores, ISA flags of interest, memory, and what tells two
    machines of one name apart: whether it is a virtual machine, its clock and its L2/L3 sizes
    (`cpuinfo`, `cpu0`: the /proc/cpuinfo and /sys CPU folder to read, fakes in tests)."""
    info: dict[str, Any] = {"model": None, "arch": platform.machine(), "logical_cores": os.cpu_count(),
                            "physical_cores": None, "usable_cores": None, "isa": [], "memory_gb": None,
                            "x86_family": None, "x86_model": None, "virtual_machine": None,
                            "clock_mhz": None, "clock": None, "cache_kb": _cache_kb(cpu0)}
    info["usable_cores"] = usable_cores()
    text = probe_file(cpuinfo)
    if text:
        model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
        info["model"] = model.group(1).strip() if model else None
        # a VM often names its CPU only "AMD EPYC": family and model tell Zen 1 from Zen 3 or 4
        family = re.search(r"^cpu family\s*:\s*(\d+)\s*$", text, re.M)
        number = re.search(r"^model\s*:\s*(\d+)\s*$", text, re.M)
        if family and number:
            info["x86_family"], info["x86_model"] = int(family.group(1)), int(number.group(1))
        flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        have = set(flags.group(1).split()) if flags else set()
        info["isa"] = [f for f in ISA_FLAGS if f in have]
        if is_x86():             # the CPUID bit a hypervisor sets; Arm's cpuinfo has no such flag
            info["virtual_machine"] = "hypervisor" in have
        info["clock_mhz"], info["clock"] = _clock(cpu0, text)
        cores = {(m.group(1), m.group(2)) for m in re.finditer(
            r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.S)}
        info["physical_cores"] = len(cores) or None
        mem = re.search(r"^MemTotal:\s*(\d+) kB", probe_file("/proc/meminfo") or "", re.M)
        if mem:
            info["memory_gb"] = round(int(mem.group(1)) / 1024 ** 2, 1)
    elif sys.platform == "darwin":
        info["model"] = probe_command(["sysctl", "-n", "machdep.cpu.brand_string"])
        phys = probe_command(["sysctl", "-n", "hw.physicalcpu"])
        info["physical_cores"] = int(phys) if phys and phys.isdigit() else None
        mem = probe_command(["sysctl", "-n", "hw.memsize"])
        info["memory_gb"] = round(int(mem) / 1024 ** 3, 1) if mem and mem.isdigit() else None
        feats = (probe_command(["sysctl", "hw.optional"]) or "").lower()
        # sysctl names -> the Linux /proc/cpuinfo spelling used everywhere else in reports
        names = {"avx2_0": "avx2", "avx512f": "avx512f", "fma": "fma", "neon": "asimd",
                 "arm.feat_dotprod": "asimddp", "arm.feat_fp16": "asimdhp", "arm.feat_bf16": "bf16",
                 "arm.feat_i8mm": "i8mm"}
        info["isa"] = [v for k, v in names.items() if f"hw.optional.{k}: 1" in feats]
    if info["model"] is None:
        info["model"] = platform.processor() or None
    return info


def _clock(cpu0: str | os.PathLike[str], text: str) -> tuple[int | None, str | None]:
    """(MHz, 'max' or 'current'): cpufreq's maximum where Linux exposes it, else /proc/cpuinfo's
    current clock (a VM's guest often has no cpufreq); (None, None) where neither is given."""
    top = probe_file(Path(cpu0) / "cpufreq" / "cpuinfo_max_freq")
    if top and top.isdigit():
        return round(int(top) / 1000), "max"
    now = re.search(r"^cpu MHz\s*:\s*([\d.]+)\s*$", text, re.M)
    return (round(float(now.group(1))), "current") if now else (None, None)


def _cache_kb(cpu0: str | os.PathLike[str]) -> dict[str, int] | None:
    """{'L2': KB, 'L3': KB}: the size of each unified cache level the first CPU sees (one instance:
    an L3 may be shared by many cores), from /sys; None where Linux does not say."""
    sizes = {}
    for index in sorted(Path(cpu0).glob("cache/index*")):
        level, kind, size = (probe_file(index / f) for f in ("level", "type", "size"))
        found = re.fullmatch(r"(\d+)([KM])", size or "")
        if level in ("2", "3") and kind == "Unified" and found:
            sizes[f"L{level}"] = int(found.group(1)) * (1024 if found.group(2) == "M" else 1)
    return sizes or None


def machine_detail(info: dict[str, Any]) -> str | None:
    """`cpu_info`'s virtualisation, clock and cache sizes in words ('virtual machine, 2596 MHz
    (current), L2 1 MB, L3 32 MB'); None where none was recorded (an older report, macOS)."""
    words = ["virtual machine"] if info.get("virtual_machine") else []
    if info.get("clock_mhz"):
        words.append(f"{info['clock_mhz']} MHz ({info.get('clock')})")
    words += [f"{level} {kb // 1024} MB" if kb % 1024 == 0 else f"{level} {kb} KB"
              for level, kb in (info.get("cache_kb") or {}).items()]
    return ", ".join(words) or None


def cpu_words(info: dict[str, Any]) -> str:
    """`cpu_info`'s CPU in words: its model name, and on x86 its family and model numbers."""
    name = info.get("model") or info.get("arch") or "unknown CPU"
    if info.get("x86_family") is not None and info.get("x86_model") is not None:
        return f"{name} (x86 family {info['x86_family']} model {info['x86_model']})"
    return str(name)


def isa_features(isa: list[str] | None = None) -> dict[str, bool]:
    """Which ISA_FEATURES this CPU has (`isa`: its flags; default: read /proc/cpuinfo); an Arm CPU's
    (NEON's `asimd` among its flags), which has none of those, by ARM_ISA_FEATURES instead."""
    if isa is None:
        isa = cpu_info()["isa"]
    have = set(isa)
    features = ARM_ISA_FEATURES if "asimd" in have else ISA_FEATURES
    return {f: any(x in have for x in flags) for f, flags in features.items()}


def is_x86(arch: str | None = None) -> bool:
    """Whether this machine (or a CPU of architecture `arch`, as `cpu_info` records it) is x86 (where
    VNNI, AMX and int8 saturation without them apply)."""
    return (platform.machine() if arch is None else arch).lower() in ("x86_64", "amd64", "i386", "i686")


def has_vnni(cpuinfo: str | os.PathLike[str] = CPUINFO) -> bool | None:
    """Whether int8 dot products are native (AVX-VNNI / AVX512-VNNI / AMX) on this x86 CPU; None
    where it does not apply (not x86) or cannot be read."""
    if not is_x86():
        return None
    if probe_file(cpuinfo) is None:
        return None
    return isa_features(cpu_info(cpuinfo)["isa"])["VNNI"]


def host_info() -> dict[str, Any]:
    """The host in brief, for `doctor` and selftest reports: OS, CPU in words, the cores this
    process may use (the figure --threads is checked against, not the machine's count), Python
    and the ISA features."""
    info = cpu_info()
    return {"os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "cpu": cpu_words(info), "usable_cores": info["usable_cores"], "python": platform.python_version(),
            "isa_features": isa_features(info["isa"])}


def host_line(host: dict[str, Any]) -> str:
    """`host_info`'s host on one line, as doctor and selftest print it."""
    return f"{host['os']} {host['machine']}, {host['cpu']}, {host['usable_cores']} usable cores, Python {host['python']}"
