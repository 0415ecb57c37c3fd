"""Latency statistics: percentiles of per-call times, normalised per tile and per megapixel, and the
per-round spread of a ratio between two subjects timed in the same rounds."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["latency_summary", "percentiles", "ratio_spread", "separated", "spread_bounds", "summary_from_percentiles",
           "TAIL_MIN_RUNS", "tails_omitted"]

PERCENTILES = (50, 90, 99)
# below this many samples a tail percentile is an interpolation between the slowest runs, not a
# tail estimate (p90 of 5 runs lies between the two slowest): it is left out (with the reason)
# rather than printed as if it were one
TAIL_MIN_RUNS = {90: 10, 99: 100}
# below this many rounds the quartiles of per-round ratios interpolate between two or three rounds:
# the spread a report states is then their whole range
QUARTILE_MIN_ROUNDS = 5


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
                    flops_per_tile: float | None = None, peak_gflops: float | None = None,
                    median_peak_gflops: float | None = None) -> dict[str, Any]:
    """Per call, per tile and per SR megapixel latencies; throughput; achieved GFLOP/s vs peak.

    Throughput and GFLOP/s use the median call: with a shared machine the median is the figure a
    reader can reproduce; p90/p99 show the noise. The raw per-call times are kept (`raw_call_ms`,
    in run order) so a reader can recompute any statistic.
    """
    out = summary_from_percentiles(percentiles(call_ms), len(call_ms), tiles_per_call,
                                   sr_megapixels_per_tile, flops_per_tile, peak_gflops, median_peak_gflops)
    out["raw_call_ms"] = [round(float(t), 4) for t in call_ms]
    out.update(tails_omitted(len(call_ms)))
    return out


def summary_from_percentiles(per_call: dict[str, float], runs: int | None, tiles_per_call: int,
                             sr_megapixels_per_tile: float | None, flops_per_tile: float | None = None,
                             peak_gflops: float | None = None,
                             median_peak_gflops: float | None = None) -> dict[str, Any]:
    """`latency_summary` from per-call statistics measured elsewhere (p50, min, ...; e.g. trtexec's).
    `sr_megapixels_per_tile` None (the tile is not known): no per-megapixel figures. `peak_gflops`:
    the best GEMM rate of the run; `median_peak_gflops`: the median of those timed between its rounds."""
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
        if median_peak_gflops:
            # p50 against the median GEMM: one statistic on both sides, under the same load
            out["roofline_fraction_median"] = round(achieved / median_peak_gflops, 4)
    return out


def ratio_spread(num_ms: Sequence[float], den_ms: Sequence[float]) -> dict[str, Any] | None:
    """The per-round spread of num / den, two subjects timed once in each of the same rounds (in
    round order: the interleaved timing's raw lists): {rounds, p25, p50, p75, min, max} of num's
    time / den's time per round. Load that hits both in one round cancels in its ratio, so this is the
    noise left in a ratio of medians. None where the lists do not pair (other lengths, none)."""
    if len(num_ms) != len(den_ms) or not len(num_ms):
        return None
    r = np.asarray(num_ms, dtype=np.float64) / np.asarray(den_ms, dtype=np.float64)
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    return {"rounds": int(r.size), "p25": round(float(q25), 3), "p50": round(float(q50), 3),
            "p75": round(float(q75), 3), "min": round(float(r.min()), 3), "max": round(float(r.max()), 3)}


def spread_bounds(spread: dict[str, Any]) -> tuple[float, float, str]:
    """(low, high, what) of the interval a report states for a per-round spread: its quartiles
    ('IQR', the middle half of the rounds), or below QUARTILE_MIN_ROUNDS rounds its 'range'."""
    if spread["rounds"] >= QUARTILE_MIN_ROUNDS:
        return spread["p25"], spread["p75"], "IQR"
    return spread["min"], spread["max"], "range"


def separated(best: dict[str, Any], other: dict[str, Any], other_over_best: dict[str, Any]) -> bool:
    """Whether the faster of two subjects is told from the other beyond the noise of one run: their
    ratios against one baseline (`best`, `other`: `ratio_spread`s) have per-round intervals that do not
    overlap, and, paired round by round (`other_over_best`: the other's time / the best's), the best
    was faster throughout its interval."""
    return spread_bounds(other)[1] < spread_bounds(best)[0] and spread_bounds(other_over_best)[0] > 1.0
