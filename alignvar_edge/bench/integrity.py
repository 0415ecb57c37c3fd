"""A report agrees with itself: every figure that follows from what it holds is made again on reading
(`bench merge`), and a report that contradicts itself is refused in one line.

Made again by the functions that made it, from the report's own data:
    latency     percentiles per call, per tile and per megapixel, runs and throughput from raw_call_ms
                (stats.latency_summary); where a report keeps no raw timings (trtexec's, older ones)
                the per-tile and per-megapixel figures from its per-call ones
                (stats.summary_from_percentiles), whose order (min <= p50 <= p90 <= p99 <= max) is checked
    image, folder   percentiles, runs, SR megapixels and MP/s from raw_ms (image.image_summary, folder_summary)
    ratios      each entry's speed-ups against eager and their per-round spreads, the summary's eager
                p50, best engine (per tile, whole image, folder), fp32 bound and target verdict
                (runner.summary_again); none in a device report, which timed no eager
The summary's choices (which engine is best, which it is not told from, the target's verdict) are
checked only in a report whose summary chose by today's rules (runner.SUMMARY_RULES): one written
under earlier rules keeps the engines it named, and their figures are made again from those
engines' own, so that a change of the rules never makes an honest older report read as edited.
A stored figure is compared with the one made again within the rounding a report is written with
(TOLERANCE). This tells an edit that left a report contradicting itself (a p50 divided by 4 beside
its raw timings); a report is a record, not a proof: one whose every figure was made again from
edited raw timings reads as written. Roofline fractions are not made again: a GPU script's are set
against its dtype's own GEMM peak, not the report's.
"""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from alignvar_edge.bench.image import folder_summary, image_summary
from alignvar_edge.bench.runner import RULED_FIELDS, made_by_these_rules, summary_again
from alignvar_edge.bench.schema import ROUNDS, SPEEDUPS, ReportSchemaError, is_number
from alignvar_edge.bench.stats import latency_summary, summary_from_percentiles

__all__ = ["RAW_TIMINGS", "TOLERANCE", "check_figures", "made_again"]

# a stored figure and the one made again agree within TOLERANCE (relative, absolute): figures are
# written rounded to 3-6 decimals. One made again from raw timings also differs by the raw timings' own
# rounding (0.1 us for a call, 1 us for a whole image), relative to the shortest of them (`_slack`)
TOLERANCE = (1e-3, 1e-3)
# a timed part's figures and what they are made again from
_TIMED = {"latency": ("runs", "per_call_ms", "per_tile_ms", "per_megapixel_ms", "throughput"),
          "image": ("runs", "sr_megapixels", "per_image_ms", "megapixels_per_s"),
          "folder": ("runs", "sr_megapixels", "per_folder_ms", "megapixels_per_s")}
# each timed part's raw timings, in run order (merge tells two runs apart by them)
RAW_TIMINGS = {"latency": "raw_call_ms", "image": "raw_ms", "folder": "raw_ms"}
# the percentile figures of each timed part, whose order is checked
_PERCENTILES = {"latency": ("per_call_ms", "per_tile_ms", "per_megapixel_ms"), "image": ("per_image_ms",),
                "folder": ("per_folder_ms",)}
_ORDER = ("min", "p50", "p90", "p99", "max")
_TAILS = ("p90", "p99")
# the ratios of an entry, and the summary's figures, made again from the entries' timings
_RATIOS = tuple(key + rounds for key in SPEEDUPS for rounds in ("", ROUNDS))
_SUMMARY = ("eager_p50_ms_per_tile", "best_cpu", "image", "folder", "fp32_bound_ms_per_tile", "fp32_bound_speedup",
            "fp32_bound_ms_per_tile_median", "fp32_bound_speedup_median", "target_met", "target_within_spread")


def made_again(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of a bench report (not a merged one) with every figure that follows from its raw
    timings made again from them, and its ratios to eager and summary from those, its choices by
    today's rules (as a bench of this version writes it)."""
    return _ratios_again(_timings_again(report), keep_choices=False)


def check_figures(report: dict[str, Any], where: str) -> None:
    """Raise ReportSchemaError, naming `where`, the engine and the figure, where a stored figure of a
    (checked: schema.check_report) bench or merged report differs from the one its own data give:
    its timings' from its raw timings, its ratios and summary from its timings (checked first)."""
    for part in report["reports"] if report.get("kind") == "merged" else [report]:
        label = f"{where} ({part['label']})" if part is not report else where
        try:
            current = made_by_these_rules(part)
            wrong = (_timing_contradiction(part, _timings_again(part))
                     or _ratio_contradiction(part, _ratios_again(part, keep_choices=not current),
                                             () if current else RULED_FIELDS))
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as e:
            raise ReportSchemaError(f"{label}: its figures cannot be made again from its raw timings ({e!r}); it is "
                                    "truncated or hand-edited (pass report.json files written by `alignvar-edge "
                                    "bench`)") from e
        if wrong:
            raise ReportSchemaError(f"{label}: {wrong}; was it edited after it was written? Merge reports as "
                                    "`alignvar-edge bench` wrote them, or run the bench again")


def _timings_again(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of `report` whose timed parts' figures are made again from their raw timings (or, where it
    keeps none, an entry's per-tile and per-megapixel figures from its per-call ones)."""
    out = copy.deepcopy(report)
    mp, scale = out["model"].get("sr_megapixels_per_tile"), out["model"]["tile"].get("scale")
    peak = out.get("peak") or {}
    flops = sum((out["model"].get("flops_per_stage") or {}).values()) or None
    for e in out["engines"]:
        if e["status"] != "ok":
            continue
        lat = e["latency"]
        if lat.get("raw_call_ms"):
            _update(lat, latency_summary(lat["raw_call_ms"], lat["tiles_per_call"], mp,
                                         e.get("flops_per_tile", flops), peak.get("gflops"),
                                         (peak.get("in_run") or {}).get("median_gflops")))
        elif lat.get("tiles_per_call") and isinstance(lat.get("per_call_ms"), dict):
            again = summary_from_percentiles(lat["per_call_ms"], lat.get("runs"), lat["tiles_per_call"], mp)
            lat.update({k: again[k] for k in ("per_tile_ms", "per_megapixel_ms")})
            if "source" not in (lat.get("throughput") or {}):      # trtexec's is its own qps, not 1 / p50
                lat["throughput"] = again["throughput"]
        if (image := e.get("image")) and image.get("raw_ms") and scale:
            _update(image, image_summary(image["raw_ms"], tuple(image["lr"]), scale, None))
        if (folder := e.get("folder")) and folder.get("raw_ms") and scale:
            _update(folder, folder_summary(folder["raw_ms"], tuple(folder["image_lr"]), folder["images"], scale, None))
    return out


def _update(stored: dict[str, Any], again: dict[str, Any]) -> None:
    """`stored` timing figures replaced by those made again, but for the tail percentiles an older
    report computed from fewer runs than stats.TAIL_MIN_RUNS now takes (p90 of 5 runs): those are
    kept, and only their order is checked (`_out_of_order`)."""
    for key, figures in again.items():
        old = stored.get(key)
        if isinstance(figures, dict) and isinstance(old, dict):
            figures = {**figures, **{p: old[p] for p in _TAILS if p in old and p not in figures}}
        stored[key] = figures


def _ratios_again(report: dict[str, Any], keep_choices: bool) -> dict[str, Any]:
    """A copy of `report` whose ratios to eager and summary are made again from its entries' timings
    (`keep_choices`: the best engines it names kept, runner.summary_again)."""
    out = copy.deepcopy(report)
    summary = summary_again(out, keep_choices)
    if summary is not None:
        out["summary"] = {**(out.get("summary") or {}), **summary}
    return out


def _timing_contradiction(stored: dict[str, Any], again: dict[str, Any]) -> str | None:
    """The first timing figure `stored` holds that `again` (`_timings_again`) does not, or that is out
    of order, in words; None where there is none."""
    for e, e2 in zip(stored["engines"], again["engines"]):
        if e["status"] != "ok":
            continue
        for part, keys in _TIMED.items():
            raw = (e.get(part) or {}).get(RAW_TIMINGS[part])
            slack = _slack(raw) if raw else 0.0
            basis = f"its {'' if part == 'latency' else part + ' '}{RAW_TIMINGS[part]}" if raw else "its per-call figures"
            order = [f"{part}.{key} {o}" for key in _PERCENTILES[part]
                     if (o := _out_of_order((e.get(part) or {}).get(key) or {}))]
            values = [] if slack is None or not isinstance(e.get(part), dict) else [
                w for key in keys if (w := _differs(e[part].get(key), e2[part].get(key), f"{part}.{key}", basis, slack))]
            # raw timings say most; without them the per-call figures are what the rest follows from
            wrong = values + order if raw else order + values
            if wrong:
                return f"engine {e['label']}: {wrong[0]}"
    return None


def _ratio_contradiction(stored: dict[str, Any], again: dict[str, Any], unchecked: tuple[str, ...]) -> str | None:
    """The first ratio to eager or summary figure `stored` holds that `again` (`_ratios_again`) does
    not, in words, but for the summary's fields named `unchecked`; None where there is none."""
    for e, e2 in zip(stored["engines"], again["engines"]):
        for key in _RATIOS:
            wrong = _differs(e.get(key), e2.get(key), key, "the engines' timings")
            if wrong:
                return f"engine {e['label']}: {wrong}"
    for key in (k for k in _SUMMARY if k not in unchecked):
        wrong = _differs((stored.get("summary") or {}).get(key), (again.get("summary") or {}).get(key),
                         f"summary.{key}", "the engines' timings", unchecked=unchecked)
        if wrong:
            return wrong
    return None


def _slack(raw: list[Any]) -> float | None:
    """How far, relative, a figure made again from raw timings may stray by their rounding: the
    rounding unit (read off the timings' decimals) over the shortest. None where the shortest is within
    ten units of zero: then nothing follows from them to any precision."""
    unit, shortest = 10.0 ** -max(map(_decimals, raw)), min(float(t) for t in raw)
    return None if shortest < 10 * unit else unit / shortest


def _decimals(t: Any) -> int:
    """How many decimals a timing was written with (3.25: 2)."""
    exponent = Decimal(repr(float(t))).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _differs(stored: Any, again: Any, path: str, basis: str, slack: float = 0.0,
             unchecked: tuple[str, ...] = ()) -> str | None:
    """Where a stored figure (a number, a label, or a dict or list of them) differs from the one made
    again from `basis` (beyond TOLERANCE, widened by `slack`), in words; a figure the report does not
    hold (an older report's), or held under a key named `unchecked`, is not compared."""
    if stored is None:
        return None
    if isinstance(stored, dict) and isinstance(again, dict):
        return next((w for k, v in stored.items() if k not in unchecked
                     and (w := _differs(v, again.get(k), f"{path}.{k}", basis, slack, unchecked))), None)
    if isinstance(stored, list) and isinstance(again, list) and len(stored) == len(again):
        return next((w for i, (a, b) in enumerate(zip(stored, again))
                     if (w := _differs(a, b, f"{path}[{i}]", basis, slack, unchecked))), None)
    if is_number(stored) and is_number(again):
        rel, absolute = TOLERANCE
        if abs(stored - again) <= (rel + slack) * abs(again) + absolute:
            return None
    elif stored == again:
        return None
    return f"{path} is {_words(stored)}, but {basis} give {_words(again)}"


def _out_of_order(figures: dict[str, Any]) -> str | None:
    """Where a report's percentiles are out of order (min <= p50 <= p90 <= p99 <= max, the mean
    within min and max), in words; None where they are in order."""
    ranked = [(k, figures[k]) for k in _ORDER if is_number(figures.get(k))]
    for (low, a), (high, b) in zip(ranked, ranked[1:]):
        if a > b:
            return f"has its {low} {a} above its {high} {b}"
    mean, lowest, highest = (figures.get(k) for k in ("mean", "min", "max"))
    if is_number(mean) and is_number(lowest) and is_number(highest) and not lowest <= mean <= highest:
        return f"has its mean {mean} outside its min {lowest} and max {highest}"
    return None


def _words(v: Any) -> str:
    return "missing" if v is None else repr(v) if isinstance(v, str) else f"{v}"
