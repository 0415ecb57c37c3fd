"""Reports as people read them: a terminal table, Markdown, and a PNG plot (matplotlib, Agg)."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from alignvar_edge.bench.host import load_words, machine_words, short_label
from alignvar_edge.bench.schema import DEVICE_REFERENCE, ROUNDS, SPEEDUP_OF, SPEEDUPS
from alignvar_edge.bench.stats import spread_bounds
from alignvar_edge.errors import InputError
from alignvar_edge.fsmodes import write_atomically
from alignvar_edge.runtimes.base import precision_label
from alignvar_edge.manifest import UNHASHED, prune_text
from alignvar_edge.muted import loggers_at
from alignvar_edge.name_text import name_bytes

__all__ = ["all_cores_line", "cache_note", "engine_rows", "figure_cell", "graph_words", "is_bench_plot", "markdown_image",
           "markdown_table",
           "plain_log_ticks", "pruning_note", "plot_report", "pyplot", "report_markdown", "roofline_line", "rounds_line",
           "run_words", "save_figure", "shared_line", "spread_words", "terminal_table", "units_words",
           "unverified_note"]

# one engine entry flattened to the figures tables and plots show
Row = dict[str, Any]


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _num(v: Any, fmt: str = "{:.2f}") -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return fmt.format(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _mb(v: Any) -> str:
    return "–" if not v else f"{v / 1e6:.2f}"


def _footprint(mem: dict[str, Any] | None) -> float | None:
    """RSS growth at load + peak RSS growth during a call: what the engine costs the process.

    GPU reports (scripts/gpu_bench.py) record the device allocator's peak instead."""
    if not mem:
        return None
    if mem.get("cuda_max_allocated_mb") is not None:
        return float(mem["cuda_max_allocated_mb"])
    return (mem.get("load_rss_mb") or 0.0) + (mem.get("peak_delta_mb") or 0.0)


def engine_rows(report: dict[str, Any]) -> list[Row]:
    """One flat dict per engine entry: the figures every table shows."""
    rows = []
    for e in report["engines"]:
        lat = e.get("latency") or {}
        fid = e.get("fidelity") or {}
        precision = precision_label(e.get("precision"), e.get("compute_precision"), e.get("expected_precision"))
        rows.append({
            "label": e["label"], "backend": e["backend"], "precision": precision,
            "status": e["status"], "reason": e.get("reason"), "kind": e["kind"],
            # what ran, beside the label: `bench merge` lines engines up by these
            "batch": e.get("batch"), "built_precision": e.get("precision"), "engine_device": e.get("device"),
            # which graph ran (reports before these were recorded: None)
            "attention": e.get("attention"), "opset": e.get("opset"), "prune": e.get("prune"),
            "graph": graph_words(e),
            # which build ran, what it was built from and what it computed in (reports before these
            # were recorded: None)
            "files_sha256": e.get("files_sha256"), "source_sha256": _source_sha256(e),
            "compute_precision": e.get("compute_precision"),
            "p50": _get(lat, "per_tile_ms", "p50"), "p90": _get(lat, "per_tile_ms", "p90"),
            "p99": _get(lat, "per_tile_ms", "p99"), "ms_per_mp": _get(lat, "per_megapixel_ms", "p50"),
            "tiles_per_s": _get(lat, "throughput", "tiles_per_s"),
            "gflops": lat.get("gflops_achieved"), "roofline": lat.get("roofline_fraction"),
            "speedup": e.get(SPEEDUP_OF["tile"]),
            "img_mps": _get(e.get("image"), "megapixels_per_s"), "img_speedup": e.get(SPEEDUP_OF["image"]),
            "folder_mps": _get(e.get("folder"), "megapixels_per_s"),
            "folder_speedup": e.get(SPEEDUP_OF["folder"]),
            "tokens": _get(fid, "vs_reference", "token_agreement"),
            "psnr_ref": _get(fid, "vs_reference", "psnr_y_db"), "ssim_ref": _get(fid, "vs_reference", "ssim_y"),
            "psnr_hr": _get(fid, "vs_hr", "psnr_y_db"), "ssim_hr": _get(fid, "vs_hr", "ssim_y"),
            "mem": _footprint(e.get("memory")),
            "size": e.get("artifact_bytes"), "meets": e.get("meets_fidelity"),
        })
    return rows


def _source_sha256(e: dict[str, Any]) -> str | None:
    """The graphs an engine entry was built from, by their `files_sha256`: the export's, as its
    `built_from` records it (None in engines built before it was, or from a checkpoint), or its own
    where it is the artifact itself (an export, a quantized graph, a TensorRT kit: `built_from` null);
    None where the report records neither."""
    if "built_from" not in e:
        return None
    built = e["built_from"]
    return built.get("files_sha256") if isinstance(built, dict) else e.get("files_sha256")


def graph_words(e: dict[str, Any]) -> str | None:
    """The graph an engine entry ran, as tables show it ('fused attention, opset 23, pruned 0.5,0.75');
    None where its report records none of it (a baseline, an older report)."""
    parts = ([f"{e['attention']} attention"] if e.get("attention") else []) + (
        [f"opset {e['opset']}"] if e.get("opset") else []) + (
        [f"pruned {prune_text(e['prune'])}"] if e.get("prune") else [])
    return ", ".join(parts) or None


COLUMNS: list[tuple[str, str]] = [
    ("engine", "label"), ("precision", "precision"), ("batch", "batch"), ("graph", "graph"), ("p50 ms/tile", "p50"),
    ("p90 ms", "p90"), ("p99 ms", "p99"),
    ("ms/MP", "ms_per_mp"), ("tiles/s", "tiles_per_s"), ("GFLOP/s", "gflops"), ("% peak", "roofline"),
    ("vs eager", "speedup"), ("image MP/s", "img_mps"), ("image vs eager", "img_speedup"),
    ("folder MP/s", "folder_mps"), ("folder vs eager", "folder_speedup"), ("tokens", "tokens"),
    ("PSNR-Y/ref dB", "psnr_ref"), ("SSIM-Y/ref", "ssim_ref"),
    ("PSNR-Y/HR dB", "psnr_hr"), ("SSIM-Y/HR", "ssim_hr"), ("mem MB", "mem"), ("size MB", "size"),
]


_FOLDER_KEYS = ("folder_mps", "folder_speedup")


def _shown(report: dict[str, Any], columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns without the folder's when no folder was timed (it is an optional timing)."""
    if any(e.get("folder") for e in report["engines"]):
        return columns
    return [c for c in columns if c[1] not in _FOLDER_KEYS]


def figure_cell(key: str, v: Any) -> str:
    """One figure of an engine row (`engine_rows`) as every report and merged table shows it."""
    if key in ("label", "precision", "batch", "graph"):
        return str(v or "–")
    if key in ("p50", "p90", "p99"):
        return _num(v, "{:.2f}")
    if key == "ms_per_mp":
        return _num(v, "{:.0f}")
    if key == "tiles_per_s":
        return _num(v, "{:.2f}")
    if key == "gflops":
        return _num(v, "{:.1f}")
    if key == "roofline":
        return "–" if v is None else f"{100 * v:.1f}%"
    if key in ("speedup", "img_speedup", "folder_speedup"):
        return "–" if v is None else f"{v:.2f}x"
    if key in ("img_mps", "folder_mps"):
        return _num(v, "{:.3f}")
    if key == "tokens":
        return _pct(v)
    if key in ("psnr_ref", "psnr_hr"):
        return _num(v, "{:.2f}")
    if key in ("ssim_ref", "ssim_hr"):
        return _num(v, "{:.4f}")
    if key == "mem":
        return _num(v, "{:.0f}")
    if key == "size":
        return _mb(v)
    return str(v)


def _table(rows: list[Row], columns: list[tuple[str, str]]) -> list[list[str]]:
    out = [[h for h, _ in columns]]
    for r in rows:
        if r["status"] != "ok":
            cells = [figure_cell("label", r["label"]), figure_cell("precision", r["precision"]),
                     f"{r['status']}: {r['reason']}"] + [""] * (len(columns) - 3)
        else:
            cells = [figure_cell(k, r[k]) for _, k in columns]
        out.append(cells)
    return out


def threads_words(report: dict[str, Any]) -> str:
    """The thread count every engine of a report ran at, in words (a trtexec log records none)."""
    threads = (report.get("settings") or {}).get("threads")
    return f"{threads} thread(s)" if threads else "threads not recorded"


def host_words(report: dict[str, Any]) -> str:
    """Where a report was timed: CPU, ISA and OS, and its GPUs or Jetson where it has them."""
    h = report["host"]
    gpus = h.get("gpus") and "imported_by" not in h          # a trtexec log's GPU is named by machine_words
    return (machine_words(h) + (f"; GPU {', '.join(g['name'] for g in h['gpus'])}" if gpus else "")
            + (f"; Jetson {h['jetson'].get('model')} ({h['jetson'].get('power_mode')})" if h.get("jetson") else ""))


def _pruned(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The engines of a report that ran a pruned graph and were set against the unpruned PyTorch
    model (a device report checks each engine against its own golden outputs, pruned as it is)."""
    if (report.get("settings") or {}).get("reference") == DEVICE_REFERENCE:
        return []
    return [e for e in report.get("engines", []) if e.get("prune")]


def pruning_note(engines: list[dict[str, Any]]) -> str | None:
    """The line that says which of these engine entries, set against the unpruned PyTorch model, are
    pruned and that their token gap is by design; None where none is."""
    pruned = [f"{e['label']} ({prune_text(e['prune'])})" for e in engines if e.get("prune")]
    if not pruned:
        return None
    return (f"Token pruning: {', '.join(pruned)} leave out tokens at the last scales, so their tokens differ from "
            "the unpruned reference by design; their fidelity is the PSNR columns.")


def unverified_note(engines: list[dict[str, Any]]) -> str | None:
    """The line that names the engine entries whose manifest carries no content hash (their
    `content_sha256` is null), so that what the report copies from it is unproven; None where none."""
    named = [e["label"] for e in engines if "content_sha256" in e and e["content_sha256"] is None]
    if not named:
        return None
    return (f"Unverified manifest: {', '.join(named)}: {UNHASHED}; the build_parity shown is as that manifest "
            "states it. Re-create the engine to be sure.")


def cache_note(engines: list[dict[str, Any]]) -> str | None:
    """The line that names the engine entries read from OpenVINO's compiled-model cache (their
    `loaded_from_cache`): their load_s times that read, not a compile, and must not be set against
    one; None where none was."""
    read = [e for e in engines if e.get("loaded_from_cache")]
    if not read:
        return None
    folders = sorted({str(e.get("cache_dir")) for e in read})
    return (f"Compiled-model cache: {', '.join(e['label'] for e in read)} loaded from OpenVINO's cache "
            f"({', '.join(folders)}): their load_s times reading the compiled model, not compiling it.")


def terminal_table(report: dict[str, Any], columns: list[tuple[str, str]] | None = None) -> str:
    """A fixed-width table for the terminal (unavailable rows wrap their reason to one line), under
    a line naming the model, the host and its ISA, and the thread count, and over the pruning note
    where an engine is pruned and the unverified-manifest note where a manifest has no content hash:
    printed figures are read without the JSON beside them."""
    # the graph is the Markdown's column; the console says only which engines are pruned, under the table
    cols = columns or _shown(report, [c for c in COLUMNS
                                      if c[1] not in ("p90", "ssim_ref", "ssim_hr", "gflops", "graph")])
    table = _table(engine_rows(report), cols)
    ok_rows = [r for r, src in zip(table[1:], engine_rows(report)) if src["status"] == "ok"]
    widths = [max(len(r[i]) for r in [table[0], *ok_rows]) for i in range(len(cols))]
    # the default label is the host in short ('AMD EPYC, 2 cores'): said once, by host_words
    label = report["label"]
    named = "" if label == short_label(report["host"]) else f"{label}: "
    lines = [f"{report['model']['name']} on {named}{host_words(report)}; {threads_words(report)}"]
    for i, r in enumerate(table):
        if i and r[3:] == [""] * (len(cols) - 3):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:2], widths[:2])) + "  " + r[2])
        else:
            lines.append("  ".join(c.rjust(w) if j >= 2 else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [n for n in (pruning_note(_pruned(report)), unverified_note(report.get("engines", []))) if n]
    return "\n".join(lines + notes)


def markdown_table(table: list[list[str]]) -> str:
    """Rows of cells (the first the header) as a Markdown table."""
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table[1:]]
    return "\n".join(lines)


def summary_lines(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    out = []
    best = s.get("best_cpu")
    threads = (report.get("settings") or {}).get("threads")
    if best:
        out.append(f"Best CPU engine at >= {s['min_token_agreement']:.0%} token agreement: **{best['label']}**"
                   f"{units_words(best)}, {best['p50_ms_per_tile']:.2f} ms/tile, {best['speedup_vs_eager']:.2f}x "
                   f"PyTorch eager ({best['token_agreement']:.2%} tokens){_threads_tail(best, threads)}"
                   + _spread_sentence(best))
    img = s.get("image") or {}
    if img.get("best_cpu"):
        h, w = img["sr"]
        out.append(_whole_line(f"Whole {w}x{h} SR image (tiles with overlap, batch padding and blending counted)",
                               img, threads))
    folder = s.get("folder") or {}
    if folder.get("best_cpu"):
        h, w = folder["image_sr"]
        out.append(_whole_line(f"A folder of {folder['images']} {w}x{h} SR images (small images sharing calls, "
                               "as `upscale DIR` runs them)", folder, threads))
    gpu = s.get("best_gpu")
    if gpu:
        line = (f"Best GPU configuration at >= {s['min_token_agreement']:.0%} token agreement: "
                f"**{gpu['label']}**, {gpu['p50_ms_per_tile']:.2f} ms/tile")
        batch = (report.get("settings") or {}).get("eager_batch") or 1
        if batch > 1:
            line += f" at batch {batch} (throughput per tile, not one image's latency)"
        if report["model"]["tile"]["hr"] == 512 and s.get("paper_s_per_512_image"):
            # the paper's figure is per 512x512 image: only a 512 px tile compares with it
            x = gpu["x_faster_than_paper"]
            versus = f"{x:.2f}x faster than" if x >= 1 else f"{1 / x:.2f}x slower than"
            line += f", {versus} the paper's {s['paper_s_per_512_image']:g} s per 512x512 image"
        out.append(line + ".")
    met = s.get("engines_meeting_fidelity") or []
    if not best and not gpu and met:          # on a GPU, say: none of them competes with the CPU engines
        out.append(f"At >= {s['min_token_agreement']:.0%} token agreement: {', '.join(met)}, none on this machine's "
                   "CPU (no best CPU engine; each row has its speed-up).")
    elif not best and not gpu:
        ran = [e for e in report.get("engines", []) if e.get("kind") == "engine" and e.get("status") == "ok"]
        asked = any(e.get("kind") == "engine" for e in report.get("engines", []))
        out.append(f"No engine reached {s['min_token_agreement']:.0%} token agreement with PyTorch eager"
                   + _pruned_words(report) + "." if ran
                   else "No engine ran here (see each row's reason), so none was timed or checked."
                   if asked else "No engine was asked for: the baselines alone were timed.")
    spreads = rounds_line(report)
    if spreads:
        out.append(spreads)
    if report.get("all_cores"):                  # deploy's second row
        out.append(all_cores_line(report["all_cores"]))
    if s.get("fp32_bound_speedup"):
        out.append(roofline_line(report))
    if s.get("target_verdict"):
        out.append(f"Speed-up target {s['target_speedup']:g}x: {s['target_verdict']}.")
    out += tail_lines(report)
    if s.get("shared_load"):
        out.append(shared_line(report))
    return out


# the best GEMM of a run over the median of those between its rounds: 1.0-1.4 on idle 2-core hosts
# (docs/results); beyond this, other work slowed most rounds and the bound at the best is loose
_LOOSE_GEMM = 1.5


def roofline_line(report: dict[str, Any]) -> str:
    """The fp32 roofline bound as measured in this run: at the median GEMM rate between the rounds
    (eager's p50 is a median under the same load) and at the best (the ceiling); a report written
    before the median was recorded has only the latter."""
    s = report["summary"]
    threads = (report.get("settings") or {}).get("threads")
    median = s.get("fp32_bound_speedup_median")
    if not median:
        return (f"fp32 roofline bound, as measured in this run: FLOPs / best GEMM rate = "
                f"{s['fp32_bound_ms_per_tile']:.2f} ms/tile, i.e. at most {s['fp32_bound_speedup']:.2f}x eager "
                f"for an fp32 engine, {threads} thread(s).")
    line = (f"fp32 roofline bound, as measured in this run: FLOPs / GEMM rate = "
            f"{s['fp32_bound_ms_per_tile_median']:.2f} ms/tile at the median GEMM between the rounds, "
            f"{s['fp32_bound_ms_per_tile']:.2f} at the best: an fp32 engine at that rate would be {median:.2f}x "
            f"eager at the median, at most {s['fp32_bound_speedup']:.2f}x at the best, {threads} thread(s).")
    loose = s["fp32_bound_speedup"] / median          # = the best GEMM rate / the median
    if loose >= _LOOSE_GEMM:
        line += f" The best GEMM was {loose:.2f}x the median: the load varied, so the bound at the best is loose."
    return line


def spread_words(spread: dict[str, Any]) -> str:
    """A ratio's per-round spread (stats.ratio_spread) as reports state it: '3.79–4.67x, IQR of 102 rounds'."""
    return f"{_interval(spread)}, {spread_bounds(spread)[2]} of {spread['rounds']} rounds"


def _interval(spread: dict[str, Any]) -> str:
    low, high, _ = spread_bounds(spread)
    return f"{low:.2f}–{high:.2f}x"


def _spread_sentence(best: dict[str, Any]) -> str:
    """What a summary line adds after its best engine's ratio: that ratio's per-round spread and the
    engines this run does not tell it from; nothing where the report records no spread."""
    spread = best.get("speedup_vs_eager_rounds")
    if not spread:
        return ""
    peers = best.get("within_noise_of")
    return f" Per round {spread_words(spread)}" + (f"; within the noise of {', '.join(peers)}" if peers else "") + "."


def rounds_line(report: dict[str, Any]) -> str | None:
    """One line with every engine row's per-round spread of its ratios to eager (the table shows
    the ratios of medians); None where fewer than two engine rows have one (the best engine's line
    says its own)."""
    engines = [e for e in report.get("engines", []) if e.get("kind") == "engine" and e.get("status") == "ok"]
    parts = []
    for key, what in SPEEDUPS.items():
        rows = [(e["label"], e[key + ROUNDS]) for e in engines if e.get(key + ROUNDS)]
        if len(rows) >= 2:
            _, _, kind = spread_bounds(rows[0][1])
            parts.append(f"{what} ({kind} of {rows[0][1]['rounds']} rounds) "
                         + ", ".join(f"{label} {_interval(sp)}" for label, sp in rows))
    return ("Per round, eager's time / each engine's: " + "; ".join(parts) + ".") if parts else None


def _pruned_words(report: dict[str, Any]) -> str:
    """What the 'no engine reached' line adds where pruned engines are among those that ran."""
    pruned = [e["label"] for e in _pruned(report) if e.get("status") == "ok"]
    if not pruned:
        return ""
    one = len(pruned) == 1
    return (f" ({', '.join(pruned)} {'is' if one else 'are'} pruned: {'its' if one else 'their'} tokens differ from "
            f"the unpruned model's by design; judge {'it' if one else 'them'} on PSNR-Y/ref)")


def tail_lines(report: dict[str, Any]) -> list[str]:
    """A '–' under p90 / p99, said once each (a line each) with what gives one; none where every
    engine has both."""
    said = []
    for p in ("p90", "p99"):
        omitted = next((e["latency"][f"{p}_omitted"] for e in report.get("engines", [])
                        if (e.get("latency") or {}).get(f"{p}_omitted")), None)
        if omitted:
            said.append(f"{p} –: {omitted}.")
    return said


def flattered(report: dict[str, Any]) -> bool:
    """Whether a shared machine flattered the report's ratios against eager PyTorch: eager's OpenMP
    barriers stall when threads outnumber free cores, so every engine looks faster. A report with no
    eager timing (a device report, or no engine timed) has no such ratio."""
    threads = (report.get("settings") or {}).get("threads")
    return (isinstance(threads, int) and threads > 1
            and any(e.get("kind") == "engine" and e.get(SPEEDUP_OF["tile"]) for e in report.get("engines", [])))


def shared_line(report: dict[str, Any]) -> str:
    """A caution under a run whose machine was busy (summary.shared_load): its ratios are only as
    fair as its thread count."""
    threads = (report.get("settings") or {}).get("threads")
    line = f"Caution: the machine was shared ({load_words(report['summary']['shared_load'])})"
    if flattered(report):
        return line + (f" and ran {threads} threads: the ratios against eager PyTorch are flattered. "
                       "Re-run with --threads 1 for ratios that hold.")
    if len(report.get("engines", [])) < 2:
        return line + ": absolute times are inflated."
    if (report.get("settings") or {}).get("interleaved"):
        spread = ((report.get("summary") or {}).get("best_cpu") or {}).get("speedup_vs_eager_rounds")
        return line + (": absolute times are inflated, and interleaving protects the ratios only partly"
                       + (f"; per round, {report['summary']['best_cpu']['label']}'s ratio to eager was "
                          f"{spread_words(spread)}." if spread else "."))
    # timed one after the other (a device report, --sequential): the load may have changed between them
    return line + (": absolute times are inflated, and the engines were timed one after another, so the ratios "
                   "between them are not protected from the load either; re-run on an idle machine.")


def run_words(report: dict[str, Any]) -> str:
    """How many latency rounds a report timed, as its Markdown header says it: with --duration, the
    rounds actually timed (the most any row was timed: its latency.runs) beside the budget and --runs,
    the minimum."""
    st = report["settings"]
    mode = "interleaved" if st.get("interleaved", True) else "sequential"
    if not st.get("duration_s"):
        return f"{st['runs']} {mode} rounds"
    timed = max((e["latency"]["runs"] for e in report["engines"]
                 if isinstance((e.get("latency") or {}).get("runs"), int)), default=None)
    budget = f"{st['duration_s']:g} s budget{'' if mode == 'interleaved' else ' each'}, at least {st['runs']}"
    if not timed:
        return f"{st['runs']} {mode} rounds (at least; {st['duration_s']:g} s budget)"
    return (f"{timed} interleaved rounds timed ({budget})" if mode == "interleaved"
            else f"up to {timed} sequential rounds per subject ({budget})")


def units_words(best: dict[str, Any]) -> str:
    """Where a summary's best engine ran, said after its label where that is more than the CPU: a Core
    ML engine's compute units (' on CPU_AND_NE'), so that no reader takes a Neural Engine or GPU run
    for a CPU one."""
    units = best.get("compute_units")
    return f" on {units}" if units and units != "CPU_ONLY" else ""


def _threads_tail(best: dict[str, Any], threads: Any) -> str:
    """How a summary line about `best` ends: the run's thread count, which a Core ML engine (one with
    `compute_units`) never takes, so there it is eager's alone."""
    if "compute_units" in best:
        return f"; PyTorch eager ran {threads} thread(s), Core ML takes no thread count."
    return f", {threads} thread(s)."


def _whole_line(title: str, timing: dict[str, Any], threads: Any) -> str:
    """The summary line of a whole-image (or folder) timing: its best CPU engine against eager."""
    b = timing["best_cpu"]
    return (f"{title}: **{b['label']}**{units_words(b)} {b['mp_per_s']:.3f} MP/s at batch {b['batch']}, "
            f"{b['speedup_vs_eager']:.2f}x PyTorch eager's {timing['eager_mp_per_s']:.3f} MP/s "
            f"(batch {timing['eager_batch']}){_threads_tail(b, threads)}{_spread_sentence(b)}")


def all_cores_line(row: dict[str, Any]) -> str:
    """deploy's all-core figure, labelled as the second row so it is never read as the headline."""
    best, img = row.get("best_cpu"), (row.get("image") or {}).get("best_cpu")
    if not best:
        return f"All {row['threads']} cores (second row): no engine met the fidelity gate."
    line = (f"All {row['threads']} cores (second row, not the headline; load average {row.get('load_average')}): "
            f"{best['label']}{units_words(best)} {best['speedup_vs_eager']:.2f}x PyTorch eager per tile")
    if img:
        line += (f", {img['label']}{units_words(img)} {img['speedup_vs_eager']:.2f}x on the whole image "
                 f"({img['mp_per_s']:.3f} MP/s)")
    return line + "."


def markdown_image(alt: str, path: str) -> str:
    """A Markdown image of the file at `path` (relative to the page), its destination percent-encoded
    from the name's bytes (`name_bytes`): CommonMark draws no image whose destination holds a space
    (`Grafik ü.png`), and a readable escape (`m\\xe9.png`) names a file that does not exist."""
    return f"![{alt}]({quote(name_bytes(path.replace(os.sep, '/')), safe='/')})"


def report_markdown(report: dict[str, Any], plot: str | None = None) -> str:
    """A self-contained Markdown page: context, the main table, summary, profile, host, notes."""
    m, st, pk, h = report["model"], report["settings"], report["peak"], report["host"]
    params = m["parameters"]
    lines = [f"# alignvar-edge benchmark: {m['name']} on {report['label']}", "",
             f"- model: {m['name']} ({m['source']}); tile LR {m['tile']['lr']} px -> SR {m['tile']['hr']} px "
             f"(x{m['tile']['scale']}); scales {m['patch_nums']}",
             f"- parameters (inference): {params['inference']:,} (transformer {params['transformer_total']:,}, "
             f"VQ decoder {params['vq_decoder']:,}, quantizer {params['quantizer']:,})",
             f"- FLOPs per tile (matmul+conv): {m['flops_per_tile']['total'] / 1e9:.3f} G (conditioning "
             f"{m['flops_per_tile']['conditioning'] / 1e9:.3f}, scales {m['flops_per_tile']['scales'] / 1e9:.3f}, "
             f"decoder {m['flops_per_tile']['decoder'] / 1e9:.3f})",
             f"- host: {host_words(report)}",
             f"- run: {run_words(report)} "
             + (f"and {st['image_runs']} whole-image rounds ({st['image_lr']} px LR) " if st.get("image_lr") else "")
             + (f"and {st['image_runs']} folder rounds ({st['folder_images']} images, {st['folder_lr']} px LR) "
                if st.get("folder_images") else "")
             + f"after {st['warmup']} warm-up, {st['threads']} thread(s), fidelity on {st['fidelity_tiles']} "
             f"held-out tile pairs; load average "
             f"{h.get('load_average')} -> {h.get('load_average_end')}",
             f"- peak: {pk['gflops']:.1f} GFLOP/s fp32 GEMM ("
             + (f"{pk.get('library')}, {pk.get('threads')} thread(s); " if pk.get("library") else "")
             + f"{pk['method']})"
             + "".join(f"; {lib} left out: {why}" for lib, why in (pk.get("left_out") or {}).items())
             + (f"; per dtype {pk['per_dtype_gflops']}" if pk.get("per_dtype_gflops") else ""),
             "", markdown_table(_table(engine_rows(report), _shown(report, COLUMNS))), ""]
    lines += summary_lines(report)
    if plot:
        lines += ["", markdown_image("latency and fidelity", plot)]
    prof = report.get("profile")
    if prof:
        srcs = prof["sources"]
        head = ["stage", "GFLOP", "FLOP share"] + [h2 for s in srcs for h2 in (f"{s} ms", f"{s} share", f"{s} GFLOP/s")]
        rows = [head]
        grouped = {g["stage"] for g in prof["groups"]}
        # the per-stage rows after the groups: only those no group row already shows (the scales)
        for r in prof["groups"] + [st for st in prof["stages"] if st["stage"] not in grouped]:
            cells = [r["stage"], f"{r['gflops']:.3f}", f"{100 * r['flops_share']:.1f}%"]
            for s in srcs:
                ms = r.get(f"{s}_ms")
                gf = r.get(f"{s}_gflops_per_s")
                if gf is None and ms:
                    gf = r["gflops"] / (ms / 1e3)
                cells += [_num(ms, "{:.2f}"), "–" if r.get(f"{s}_share") is None else f"{100 * r[f'{s}_share']:.1f}%",
                          _num(gf, "{:.1f}")]
            rows.append(cells)
        lines += ["", "## Where the time goes (per tile, batch 1)", "", markdown_table(rows)]
        lines += [f"\n{src} ran a rollout pruned {prune_text(ratios)}: its ms and GFLOP/s are the pruned graphs', "
                  "its GFLOP/s count the FLOPs they compute; the GFLOP column is the unpruned model's."
                  for src, ratios in (prof.get("pruned") or {}).items()]
    backends = h.get("backends") or {}
    if backends:
        lines += ["", "## Backends on this host", ""]
        for name, b in backends.items():
            lines.append(f"- {name} {b.get('version') or ''}: " + ("available" if b.get("available")
                                                                   else f"unavailable: {b.get('reason')}"))
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def pyplot() -> Any:
    """matplotlib.pyplot drawing off-screen (Agg), or one line saying how to get it: a device
    install (alignvar-edge[device]) has no matplotlib, and `bench merge --plot` may run there."""
    # where HOME cannot hold its config and font cache, matplotlib makes a temporary folder (and
    # removes it at exit) and logs two lines of advice about it: noise in a verb's output
    try:
        with loggers_at(("matplotlib",), logging.ERROR):
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
    except ModuleNotFoundError as e:
        raise InputError("--plot needs matplotlib, which is not installed here: pip install matplotlib "
                         "(the host extra has it), or leave out --plot") from e
    return plt


def plot_report(report: dict[str, Any], path: str | os.PathLike[str], recheck: Callable[[], None] | None = None
                ) -> Path:
    """Left: p50 ms per tile (p90 whisker, log scale); right: speed-up vs token agreement."""
    plt = pyplot()

    rows = [r for r in engine_rows(report) if r["status"] == "ok" and r["p50"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * max(4, len(rows)) + 1.5))
    ys = range(len(rows))
    colors = ["tab:gray" if r["kind"] == "baseline" else ("tab:green" if r["meets"] else "tab:red") for r in rows]
    whisker = [max(0, (r["p90"] or r["p50"]) - r["p50"]) for r in rows]
    ax1.barh(list(ys), [r["p50"] for r in rows], xerr=[[0] * len(rows), whisker], color=colors)
    ax1.set_yticks(list(ys), [f"{r['label']}" for r in rows])
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("ms per tile (p50, whisker to p90; log)")
    ax1.set_title(f"{report['model']['name']} on {report['label']}", fontsize=9)
    plain_log_ticks(ax1)
    # right: speed-up bars, each labelled with its token agreement (points would overlap at 100%)
    ax2.barh(list(ys), [r["speedup"] or 0 for r in rows], color=colors)
    ax2.set_yticks(list(ys), ["" for _ in rows])
    ax2.invert_yaxis()
    for y, r in zip(ys, rows):
        tok = "tokens –" if r["tokens"] is None else f"tokens {100 * r['tokens']:.2f}%"
        ax2.annotate(f"{r['speedup'] or 0:.2f}x, {tok}", (r["speedup"] or 0, y), fontsize=7,
                     xytext=(3, -3), textcoords="offset points")
    target = report["summary"].get("target_speedup")
    if target:
        ax2.axvline(target, color="tab:orange", lw=0.8, ls="--", label=f"{target:g}x target")
        ax2.legend(fontsize=7, loc="lower right")
    gate = report["summary"]["min_token_agreement"]
    ax2.set_xlabel(f"speed-up vs PyTorch eager (p50)\ngreen: >= {gate:.0%} tokens, red: below, grey: baseline")
    ax2.set_xlim(0, 1.35 * max([r["speedup"] or 0 for r in rows] + [target or 0, 1]))
    fig.tight_layout()
    return save_figure(fig, path, recheck)


def plain_log_ticks(ax: Any) -> None:
    """A log x axis labelled 1, 2, 5, 10, ... in plain numbers, as every bench plot has it."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# a PNG text chunk in every plot bench draws: --plot replaces a PNG that carries it, never another
# picture (a photograph, someone's chart)
_PLOT_MARK = ("alignvar-edge", "bench plot")


def is_bench_plot(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a PNG an earlier bench (or bench merge) drew."""
    from PIL import Image

    from alignvar_edge.errors import IMAGE_DECODE_ERRORS
    try:
        with Image.open(path) as im:        # reads the chunks before the pixels, not the pixels
            return im.format == "PNG" and im.info.get(_PLOT_MARK[0]) == _PLOT_MARK[1]
    except (*IMAGE_DECODE_ERRORS, Image.DecompressionBombError):
        return False


def save_figure(fig: Any, path: str | os.PathLike[str], recheck: Callable[[], None] | None = None) -> Path:
    """Save atomically (`recheck`: as `write_atomically`'s), then close the figure. The format is the
    path's extension (the temporary file's is not), or matplotlib's default where it has none; a PNG
    carries the bench's mark."""
    import matplotlib.pyplot as plt
    fmt = Path(path).suffix[1:] or plt.rcParams["savefig.format"]
    meta = dict([_PLOT_MARK]) if fmt.lower() == "png" else None
    try:
        return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt, metadata=meta), recheck)
    finally:
        plt.close(fig)
