"""Latency statistics: percentiles of per-call times, normalised per tile and per megapixel."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["latency_summary", "percentiles", "summary_from_percentiles", "TAIL_MIN_RUNS", "tails_omitted"]

PERCENTILES = (50, 90, 99)
# below this many samples a tail percentile is an interpolation between the slowest runs, not a
# tail estimate (p90 of 5 runs lies between the two slowest): it is left out (with the reason)
# rather than printed as if it were one
TAIL_MIN_RUNS = {90: 10, 99: 100}


def tails_omitted(runs: int, flag: str = "--runs {n} (or a --duration that gives as many)") -> dict[str, str]:
    """Why a report of `runs` timings has no p90 / p99: {"p90_omitted": why, ...} (empty when it has
    both); `flag`: what sets the runs, with {n} for how many are needed."""
    return {f"p{p}_omitted": f"p{p} needs >= {n} runs, this run has {runs}; pass {flag.format(n=n)}"
            for p, n in TAIL_MIN_RUNS.items() if runs < n}


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50, p90 and p99 (linear interpolation; the tails only from TAIL_MIN_RUNS samples on), min,
    mean and max (ms)."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timings")
    out = {f"p{p}": round(float(np.percentile(a, p)), 4) for p in PERCENTILES if a.size >= TAIL_MIN_RUNS.get(p, 0)}
    out.update(min=round(float(a.min()), 4), mean=round(float(a.mean()), 4), max=round(float(a.max()), 4))
    return out


def latency_summary(call_ms: Sequence[float], tiles_per_call: int, sr_megapixels_per_tile: float,
                    flops_per_tile: float | None = None, peak_gflops: float | None = None) -> dict[str, Any]:
    """Per call, per tile and per SR megapixel latencies; throughput; achieved GFLOP/s vs peak.

    Throughput and GFLOP/s use the median call: with a shared machine the median is the figure a
    reader can reproduce; p90/p99 show the noise. The raw per-call times are kept (`raw_call_ms`,
    in run order) so a reader can recompute any statistic.
    """
    out = summary_from_percentiles(percentiles(call_ms), len(call_ms), tiles_per_call,
                                   sr_megapixels_per_tile, flops_per_tile, peak_gflops)
    out["raw_call_ms"] = [round(float(t), 4) for t in call_ms]
    out.update(tails_omitted(len(call_ms)))
    return out


def summary_from_percentiles(per_call: dict[str, float], runs: int | None, tiles_per_call: int,
                             sr_megapixels_per_tile: float | None, flops_per_tile: float | None = None,
                             peak_gflops: float | None = None) -> dict[str, Any]:
    """`latency_summary` from per-call statistics measured elsewhere (p50, min, ...; e.g. trtexec's).
    `sr_megapixels_per_tile` None (the tile is not known): no per-megapixel figures."""
    per_tile = {k: round(v / tiles_per_call, 4) for k, v in per_call.items()}
    mp = sr_megapixels_per_tile or None
    per_mp = {k: round(v / mp, 3) for k, v in per_tile.items()} if mp else None
    p50_s = per_tile["p50"] / 1e3
    out: dict[str, Any] = {
        "runs": runs, "tiles_per_call": tiles_per_call,
        "per_call_ms": per_call, "per_tile_ms": per_tile, "per_megapixel_ms": per_mp,
        "throughput": {"tiles_per_s": round(1 / p50_s, 3) if p50_s > 0 else None,
                       "megapixels_per_s": round(mp / p50_s, 4) if mp and p50_s > 0 else None},
    }
    if flops_per_tile and p50_s > 0:
        achieved = flops_per_tile / p50_s / 1e9
        out["gflops_achieved"] = round(achieved, 3)
        best = flops_per_tile / (per_tile["min"] / 1e3) / 1e9 if per_tile.get("min", 0) > 0 else None
        out["gflops_best"] = round(best, 3) if best else None
        if peak_gflops:
            # p50 against the best GEMM: what a user gets; min against it: the engine's own best
            out["roofline_fraction"] = round(achieved / peak_gflops, 4)
            out["roofline_fraction_best"] = round(best / peak_gflops, 4) if best else None
            out["below_peak_x"] = round(peak_gflops / achieved, 2)
    return out
