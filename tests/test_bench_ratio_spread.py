"""What a report says about the noise in its ratios and its roofline bound.

A ratio of medians (eager's p50 / an engine's) hides how much the load still moved it: each report
also records the per-round spread of eager's time / the engine's in the same round, names the
engines its best one is not told from, and sets the fp32 bound at the median GEMM rate beside the
best. The synthetic rounds below are built so that every figure can be read off by hand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alignvar_edge.bench.render import report_markdown, roofline_line, run_words, shared_line, summary_lines
from alignvar_edge.bench.runner import BenchOptions, _summary
from alignvar_edge.bench.stats import latency_summary, ratio_spread, separated, spread_bounds
from alignvar_edge.bench.subjects import EAGER

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
BUSY = {"start": 5.7, "end": 4.6, "own": 0.6, "others": 4.0, "cores": 2}


def _row(label: str, tile_ms: list[float], p50: float, batch: int = 1, kind: str = "engine",
         image_ms: list[float] | None = None) -> dict[str, Any]:
    """A timed row: its raw calls (`tile_ms` per tile, times `batch` per call) in round order, and
    the p50 per tile the table prints."""
    row: dict[str, Any] = {"label": label, "backend": "onnxruntime" if kind == "engine" else "torch",
                           "kind": kind, "status": "ok", "device": "cpu",
                           "latency": {"per_tile_ms": {"p50": p50}, "tiles_per_call": batch, "runs": len(tile_ms),
                                       "raw_call_ms": [t * batch for t in tile_ms]},
                           "fidelity": None if kind != "engine" else {"vs_reference": {"token_agreement": 1.0}}}
    if image_ms is not None:
        row["image"] = {"per_image_ms": {"p50": float(np.median(image_ms))}, "raw_ms": image_ms,
                        "megapixels_per_s": 0.262144 / float(np.median(image_ms)) * 1e3, "batch": batch,
                        "lr": [128, 128], "sr": [512, 512]}
    return row


def _report(engines: list[dict[str, Any]], eager: dict[str, Any], **opts: Any) -> dict[str, Any]:
    entries = [eager, *engines]
    summary = _summary(entries, BenchOptions(min_token_agreement=0.99, **opts), flops_total=1e9,
                       peak_gflops=200.0, median_gflops=100.0)
    return {"summary": {**summary, "shared_load": BUSY}, "engines": entries, "model": {"tile": {"hr": 64}},
            "settings": {"threads": 1, "interleaved": not opts.get("sequential", False)}}


# eager 10 ms per tile in every round (timed at batch 2: 20 ms a call)
EAGER_ROW = _row(EAGER, [10.0] * 6, 10.0, batch=2, kind="baseline")
# x and y: one engine twice, the load landing on one or the other in turn. x's ratios per round are
# 5, 4.17, 5, 4.17, 5, 4.17 (quartiles 4.17 and 5); y's overlap them, and y / x per round is 1.2,
# 0.83, 1.2, 0.83, 1.2, 0.875: x is faster in half the rounds only. y's ratios: 4.17 (three times),
# 4.76, 5, 5, quartiles 4.17 and 4.76 + 0.75 * (5 - 4.76) = 4.94
X = [2.0, 2.4, 2.0, 2.4, 2.0, 2.4]
Y = [2.4, 2.0, 2.4, 2.0, 2.4, 2.1]


def test_a_ratio_spread_is_the_quartiles_of_the_per_round_ratios() -> None:
    # per round 10/5, 20/5, 30/10, 40/10, 50/25 = 2, 4, 3, 4, 2: sorted 2 2 3 4 4
    spread = ratio_spread([10, 20, 30, 40, 50], [5, 5, 10, 10, 25])
    assert spread == {"rounds": 5, "p25": 2.0, "p50": 3.0, "p75": 4.0, "min": 2.0, "max": 4.0}
    assert spread_bounds(spread) == (2.0, 4.0, "IQR")
    # two rounds have no quartiles worth the name: their range is stated
    assert spread_bounds(ratio_spread([10, 30], [5, 10])) == (2.0, 3.0, "range")
    # lists of other lengths are not rounds of one timing
    assert ratio_spread([10, 20], [5]) is None and ratio_spread([], []) is None


def _spread(lo: float, hi: float) -> dict[str, Any]:
    """A spread of 10 rounds whose IQR is lo..hi."""
    return {"rounds": 10, "p25": lo, "p50": (lo + hi) / 2, "p75": hi, "min": lo - 1, "max": hi + 1}


def test_separated_needs_disjoint_intervals_and_a_consistent_paired_comparison() -> None:
    best, other = _spread(4.0, 5.0), _spread(3.0, 3.5)
    assert separated(best, other, _spread(1.1, 1.4))
    assert not separated(best, _spread(3.0, 4.2), _spread(1.1, 1.4))      # the intervals overlap
    assert not separated(best, other, _spread(0.9, 1.4))                  # the other was faster in some rounds


def test_intervals_that_meet_and_rounds_that_tie_do_not_separate() -> None:
    best, other, faster = _spread(4.0, 5.0), _spread(3.0, 3.5), _spread(1.1, 1.4)
    assert separated(best, other, faster)
    # the other's IQR ends where the best's begins: both hold 4.0x, so they are not told apart
    assert not separated(best, _spread(3.0, 4.0), faster)
    # the other's time / the best's per round: equal in 4 of 10 rounds (p25 exactly 1.000), more after:
    # the best was not faster throughout its interval
    tied = ratio_spread([10, 10, 10, 10, 11, 12, 12, 13, 13, 14], [10] * 10)
    assert tied is not None and tied["p25"] == 1.0
    assert not separated(best, other, tied)


def test_every_row_records_its_per_round_spread_and_the_best_names_who_it_is_not_told_from() -> None:
    report = _report([_row("x", X, 2.2), _row("y", Y, 2.25), _row("slow", [4.0] * 6, 4.0)], EAGER_ROW)
    x, y, slow = report["engines"][1:]
    assert x["speedup_vs_eager"] == round(10 / 2.2, 3)             # the headline stays the ratio of p50s
    assert x["speedup_vs_eager_rounds"] == {"rounds": 6, "p25": 4.167, "p50": 4.583, "p75": 5.0,
                                            "min": 4.167, "max": 5.0}
    assert slow["speedup_vs_eager_rounds"] == {"rounds": 6, "p25": 2.5, "p50": 2.5, "p75": 2.5, "min": 2.5, "max": 2.5}
    best = report["summary"]["best_cpu"]
    assert best["label"] == "x" and best["within_noise_of"] == ["y"]        # slow is told apart
    assert best["speedup_vs_eager_rounds"] == x["speedup_vs_eager_rounds"]
    lines = summary_lines(report)
    assert lines[0].endswith("1 thread(s). Per round 4.17–5.00x, IQR of 6 rounds; within the noise of y."), lines[0]
    assert ("Per round, eager's time / each engine's: per tile (IQR of 6 rounds) x 4.17–5.00x, y 4.17–4.94x, "
            "slow 2.50–2.50x.") in lines
    # the caution says how far interleaving protected the ratios, not that they hold
    caution = shared_line(report)
    assert caution.endswith("absolute times are inflated, and interleaving protects the ratios only partly; per "
                            "round, x's ratio to eager was 4.17–5.00x, IQR of 6 rounds."), caution
    # without y, nothing is within the noise of x
    alone = _report([_row("x", X, 2.2), _row("slow", [4.0] * 6, 4.0)], EAGER_ROW)
    assert alone["summary"]["best_cpu"]["within_noise_of"] == []
    assert summary_lines(alone)[0].endswith("Per round 4.17–5.00x, IQR of 6 rounds."), summary_lines(alone)[0]


def test_the_whole_image_best_is_judged_on_its_own_rounds() -> None:
    # two rounds: a's ratios 1000/100, 1000/125 = 10, 8; b's 1000/110, 1000/120 = 9.09, 8.33
    eager = _row(EAGER, [10.0] * 2, 10.0, kind="baseline", image_ms=[1000.0, 1000.0])
    report = _report([_row("a", [2.0] * 2, 2.0, image_ms=[100.0, 125.0]),
                      _row("b", [2.0] * 2, 2.0, image_ms=[110.0, 120.0])], eager)
    best = report["summary"]["image"]["best_cpu"]
    assert best["label"] == "a" and best["speedup_vs_eager_rounds"]["min"] == 8.0
    assert best["within_noise_of"] == ["b"]
    assert summary_lines(report)[1].endswith("Per round 8.00–10.00x, range of 2 rounds; within the noise of b.")


def test_a_target_inside_the_best_engines_spread_is_not_settled() -> None:
    inside = _report([_row("x", X, 2.2)], EAGER_ROW, target_speedup=4.5)["summary"]
    assert inside["target_met"] is True and inside["target_within_spread"] is True
    assert inside["target_verdict"].startswith("met: ")
    assert inside["target_verdict"].endswith("x >= 4.5x; but 4.5x lies within its per-round spread "
                                             "(4.17–5.00x, IQR of 6 rounds): not settled by this run")
    beyond = _report([_row("x", X, 2.2)], EAGER_ROW, target_speedup=6.0)["summary"]
    assert beyond["target_met"] is False and beyond["target_within_spread"] is False
    assert "per-round" not in beyond["target_verdict"]


def test_subjects_timed_one_after_another_get_no_per_round_spread() -> None:
    report = _report([_row("x", X, 2.2), _row("y", Y, 2.25)], EAGER_ROW, sequential=True)
    assert not [k for e in report["engines"] for k in e if k.endswith("_rounds")]
    assert "within_noise_of" not in report["summary"]["best_cpu"]
    assert summary_lines(report)[0].endswith("1 thread(s)."), summary_lines(report)[0]


def test_the_roofline_bound_is_stated_at_the_median_and_the_best_gemm_of_the_run() -> None:
    # 1 GFLOP a tile: 5 ms at the best GEMM (200 GFLOP/s), 10 ms at the median (100); eager's p50 is 10 ms
    report = _report([_row("x", X, 2.2)], EAGER_ROW)
    s = report["summary"]
    assert (s["fp32_bound_ms_per_tile"], s["fp32_bound_speedup"]) == (5.0, 2.0)
    assert (s["fp32_bound_ms_per_tile_median"], s["fp32_bound_speedup_median"]) == (10.0, 1.0)
    line = roofline_line(report)
    assert line.startswith("fp32 roofline bound, as measured in this run: FLOPs / GEMM rate = 10.00 ms/tile at the "
                           "median GEMM between the rounds, 5.00 at the best: an fp32 engine at that rate would be "
                           "1.00x eager at the median, at most 2.00x at the best, 1 thread(s)."), line
    assert line.endswith(" The best GEMM was 2.00x the median: the load varied, so the bound at the best is loose.")
    # a steady GEMM (best 1.25x the median) is not flagged
    steady = {**report, "summary": {**s, "fp32_bound_speedup_median": 1.6}}
    assert roofline_line(steady).endswith("at most 2.00x at the best, 1 thread(s).")
    # % peak beside it: a 10 ms tile of 1 GFLOP is 100 GFLOP/s, half the best GEMM and all of the median
    lat = latency_summary([10.0], 1, 0.004, flops_per_tile=1e9, peak_gflops=200.0, median_peak_gflops=100.0)
    assert (lat["roofline_fraction"], lat["roofline_fraction_median"]) == (0.5, 1.0)


def test_the_header_states_the_rounds_a_duration_timed() -> None:
    settings = {"runs": 12, "duration_s": 110.0, "interleaved": True}
    eager = {"latency": {"runs": 102}}
    # the rows' latency.runs are the one record of the rounds timed; a settings key (written by one
    # day's version) is not read
    assert run_words({"settings": {**settings, "rounds_timed": 5}, "engines": [eager]}) == \
        "102 interleaved rounds timed (110 s budget, at least 12)"
    # sequential: each subject had its own budget, the header gives the most any row got
    rows = [{"latency": {"runs": 31}}, {"latency": {"runs": 40}}, {"status": "failed"}]
    assert run_words({"settings": {**settings, "interleaved": False}, "engines": rows}) == \
        "up to 40 sequential rounds per subject (110 s budget each, at least 12)"
    assert run_words({"settings": settings, "engines": []}) == "12 interleaved rounds (at least; 110 s budget)"
    assert run_words({"settings": {"runs": 12, "duration_s": None}, "engines": [eager]}) == "12 interleaved rounds"


def _committed_reports() -> list[Path]:
    found = []
    for path in sorted(RESULTS.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("schema") == "alignvar-edge.bench" and data.get("kind") == "bench":
            found.append(path)
    return found


def _records_spreads(report: dict) -> bool:
    """Whether a report was written by a version that records each ratio's per-round spread."""
    return any(row.get("speedup_vs_eager_rounds") for row in report.get("engines", []))


def test_reports_written_before_these_figures_still_render() -> None:
    older = [p for p in _committed_reports() if not _records_spreads(json.loads(p.read_text()))]
    assert len(older) > 20
    for path in older:
        report = json.loads(path.read_text())
        text = report_markdown(report)
        assert "- run: " in text and "Per round" not in text, path
        bound = [ln for ln in summary_lines(report) if ln.startswith("fp32 roofline bound")]
        assert all("as measured in this run" in ln and "on this machine" not in ln for ln in bound), path


def test_a_bench_with_a_duration_records_the_rounds_it_timed_and_each_ratios_spread(micro_export: Path) -> None:
    from _runtime_fixtures import sharp_model
    from alignvar_edge.bench.runner import run_bench
    opts = BenchOptions(runs=2, warmup=0, tiles=1, threads=1, peak_n=64, profile_runs=0, image_size=16,
                        image_runs=2, duration=1.0)
    report = run_bench([str(micro_export)], reference=sharp_model("micro"), options=opts)
    eager, ort = report["engines"][0], report["engines"][1]
    rounds = len(eager["latency"]["raw_call_ms"])
    assert rounds > 2 and eager["latency"]["runs"] == ort["latency"]["runs"] == rounds
    assert report["peak"]["in_run"]["samples"] == rounds and "rounds_timed" not in report["settings"]
    assert f"- run: {rounds} interleaved rounds timed (1 s budget, at least 2)" in report_markdown(report)
    per_round = (np.asarray(eager["latency"]["raw_call_ms"]) / eager["latency"]["tiles_per_call"]) / (
        np.asarray(ort["latency"]["raw_call_ms"]) / ort["latency"]["tiles_per_call"])
    spread = ort["speedup_vs_eager_rounds"]
    assert spread["rounds"] == rounds and spread["p50"] == pytest.approx(np.median(per_round), abs=1e-3)
    assert ort["image_speedup_vs_eager_rounds"]["rounds"] == 2
    assert ort["latency"]["roofline_fraction_median"] > 0
    assert report["summary"]["fp32_bound_speedup_median"] > 0


def test_the_roofline_fraction_at_the_best_is_taken_from_the_fastest_call() -> None:
    # calls of 2 tiles: 10, 12, 8, 11, 9 ms, so 5 ms a tile at the median and 4 at the fastest; 1 GFLOP a tile
    # is 200 GFLOP/s at the median and 250 at the fastest, against a 400 GFLOP/s GEMM
    lat = latency_summary([10.0, 12.0, 8.0, 11.0, 9.0], 2, 0.25, flops_per_tile=1e9, peak_gflops=400.0)
    assert (lat["gflops_achieved"], lat["gflops_best"]) == (200.0, 250.0)
    assert (lat["roofline_fraction"], lat["roofline_fraction_best"]) == (0.5, 0.625)
