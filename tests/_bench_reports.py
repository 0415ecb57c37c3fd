"""Bench reports for merge tests: another run of a committed report. `bench merge` takes a copy
with the same raw timings on the same host for the same run under another label (merged once), and
refuses one on another host; a test that needs a second device makes another run of it instead."""
from __future__ import annotations

import copy
from typing import Any

from alignvar_edge.bench.integrity import made_again


def another_run(report: dict[str, Any], factor: float = 2.0) -> dict[str, Any]:
    """`report` as another run of its bench would have written it: every timing `factor` times as long
    (rounded as the bench rounds them) and every figure that follows from them made again."""
    r = copy.deepcopy(report)
    for e in r["engines"]:
        if e["status"] != "ok":
            continue
        for part, keys in (("latency", ("per_call_ms", "per_tile_ms", "per_megapixel_ms")), ("image", ("per_image_ms",)),
                           ("folder", ("per_folder_ms",))):
            timed = e.get(part) or {}
            for key in keys:            # percentiles raw timings do not give (an older report's p90 of 5 runs)
                if timed.get(key):
                    timed[key] = {k: round(v * factor, 4) for k, v in timed[key].items()}
            for key, digits in (("raw_call_ms", 4), ("raw_ms", 3)):
                if timed.get(key):
                    timed[key] = [round(t * factor, digits) for t in timed[key]]
    return made_again(r)
