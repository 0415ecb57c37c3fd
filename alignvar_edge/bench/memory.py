"""Memory of an engine, measured the way each quantity can honestly be measured.

- `rss_mb()`: resident set size of this process now (/proc/self/statm; ru_maxrss elsewhere).
- `PeakRSS`: the process's peak RSS during a block, above the RSS at its start. On Linux the
  kernel's high-water mark (VmHWM) is reset by writing "5" to /proc/self/clear_refs, so the peak
  belongs to the block alone; elsewhere the lifetime peak (ru_maxrss) is the only figure, and the
  result says so (`method`). RSS counts everything the runtime allocates natively (ONNX Runtime
  arenas, OpenVINO buffers, torch tensors), which tracemalloc cannot see.
- `traced_peak_mb()`: Python-heap peak of a call with tracemalloc (numpy buffers are traced;
  native runtime memory is not): the host-side input/output cost of one inference.
"""
from __future__ import annotations

import os
import resource
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PeakRSS", "rss_mb", "traced_peak_mb"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Current resident set size in MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * _PAGE / 2 ** 20
    except (OSError, IndexError, ValueError):
        return _maxrss_mb()


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024      # bytes on macOS, KiB on Linux


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """`with PeakRSS() as p: ...` then p.result(): start / peak / delta in MiB and the method."""

    def __enter__(self) -> PeakRSS:
        self.resettable = _reset_hwm() and _vm_hwm_mb() is not None
        self.start = rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = rss_mb()
        hwm = _vm_hwm_mb() if self.resettable else None
        self.peak = hwm if hwm is not None else _maxrss_mb()

    def result(self) -> dict[str, Any]:
        return {"rss_start_mb": round(self.start, 1), "rss_peak_mb": round(self.peak, 1),
                "peak_delta_mb": round(max(0.0, self.peak - self.start), 1),
                "method": "VmHWM reset via /proc/self/clear_refs" if self.resettable
                else "ru_maxrss (process lifetime peak: an upper bound)"}


def traced_peak_mb(fn: Callable[[], object]) -> float:
    """Peak Python-heap allocation (MiB) during fn(), tracemalloc (see module doc)."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was:
            tracemalloc.stop()
    return round(max(0, peak - base) / 2 ** 20, 2)
