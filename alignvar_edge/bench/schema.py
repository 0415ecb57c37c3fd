"""The benchmark report format: schema version, required keys, atomic writing, checked reading.

A report (kind "bench") is one run on one device:
    schema             "alignvar-edge.bench"
    schema_version     int (SCHEMA_VERSION); merging refuses reports of another version
    kind               "bench" | "merged"
    created            ISO-8601 UTC
    content_sha256     SHA-256 of the rest of the report as a reader parses it (manifest.content_hash), written
                       last by `write_json`; reading verifies it where present (older reports have none), so a
                       careless edit is refused in one line. A merged report's covers its parts (theirs are
                       left out: merging relabels them)
    label              device label for tables (default from the host fingerprint)
    host               fingerprint (bench/host.py): CPU model, cores, ISA, OS, GPU/Jetson, backends;
                       load_average / load_average_end (1-min, 5, 15 at the start and the end) and
                       own_load (the run's CPU seconds per second): other work = end - own_load
    model              name, source, weights_sha256 (the state-dict hash engine manifests record; merge
                       compares it), tile geometry, parameters per component, FLOPs per tile
    settings           runs (--runs), duration_s (--duration: the rounds actually timed are each
                       row's latency.runs), warmup, threads, eager_batch, interleaved (subjects timed round
                       by round; false: one after another), fidelity_tiles, seed, images (as typed),
                       fidelity_tiles_sha256 (SHA-256 of the HR fidelity crops: what merge compares),
                       image_lr/image_runs/image_overlap, folder_images/folder_lr (null: not timed),
                       min_token_agreement, target_speedup, ort_spin; a device report: reference
                       "golden outputs", and `bench trtexec`'s trtexec {command, tensorrt_version, ...}
    peak               measured fp32 GEMM peak (bench/peak.py): gflops, the best of all; in_run {samples,
                       median_gflops, best_gflops, worst_gflops} of the GEMMs timed between the rounds
    engines            list of engine entries (below), baselines included
    summary            best engine vs PyTorch eager, fidelity gate, target verdict; rules (the version of
                       the rules it chose its best engines by, runner.SUMMARY_RULES; none in a device
                       report or one written before it); shared_load
                       (other work on the machine, when it was over half the cores) or null;
                       best_cpu (and image/folder best_cpu) with speedup_vs_eager_rounds and
                       within_noise_of (the engines one run does not tell it from);
                       target_within_spread; fp32_bound_ms_per_tile / fp32_bound_speedup at the best
                       GEMM rate, and each _median at the in-run median GEMM rate
    profile            where the time goes: FLOPs and measured time per stage
    notes              free-text caveats
    deploy             (deploy's report.json) its steps, options and timings; all_cores: the
                       second, all-core row {threads, load_average, best_cpu, image}
An engine entry always has label, backend, kind ("engine" | "baseline"), status
("ok" | "unavailable" | "failed") and reason (None when ok), and path, precision (as built),
compute_precision / expected_precision (what the runtime computed in, what it was built and checked
for; null where the runtime does not say), device, artifact_bytes. An engine opened from an artifact
(not a checkpoint) also names it by its manifest: content_sha256 (the content hash its manifest.json
records; null where it records none: the manifest's own fields, build_parity included, are then
unverified, and a note says so), files_sha256 (manifest.graph_files_sha256: one SHA-256 over the
SHA-256s the manifest lists for its graph files and their external data, not README.md, the golden
outputs or build records; a rebuild that wrote the same graphs has the same; null for a TensorRT
engine, whose plan its GPU compiles anew) and built_from (the export it was built from: path,
backend, precision, manifest_sha256 (the SHA-256 of that export's manifest.json file), and files_sha256, that
export's; null for an export). An OpenVINO engine loaded with a compiled-model cache (--cache-dir,
ALIGNVAR_EDGE_CACHE_DIR) also has cache_dir (the folder's name alone: reports are shared) and
loaded_from_cache (true: its load_s timed reading the compiled model, not compiling it, and a note
says so; null where OpenVINO does not say). `bench
merge` warns where one engine x device row joins engines built from other graphs, or other files on
devices of one hardware class, and notes where their compute_precision differs. Only "ok" entries
carry numbers (their types checked on reading: a hand-edited figure is one line; `bench merge` also
makes again every figure that follows from the raw timings, bench/integrity.py, and refuses a report
that contradicts itself):
    batch              tiles per engine call
    latency            (bench/stats.py) runs, tiles_per_call; per_call_ms, per_tile_ms and
                       per_megapixel_ms, each {p50, p90, p99, min, mean, max} (p90 from 10 runs, p99
                       from 100; below that p90_omitted / p99_omitted say why); raw_call_ms (every call,
                       in run order); throughput {tiles_per_s, megapixels_per_s}; gflops_achieved,
                       gflops_best, roofline_fraction (p50 vs the peak), roofline_fraction_best (min vs
                       it), roofline_fraction_median (p50 vs the in-run median GEMM), below_peak_x.
                       trtexec's: source, gpu_compute_per_call_ms, trtexec_throughput_qps, and
                       throughput from its qps
    image, folder      (when timed; bench/image.py) sr_megapixels, runs, per_image_ms / per_folder_ms
                       {p50, ...}, megapixels_per_s, raw_ms, batch, tiles, calls, the image sizes
    memory             load_rss_mb, peak_delta_mb, python_heap_peak_mb, measured_on (GPU scripts:
                       cuda_max_allocated_mb)
    fidelity           vs_reference {token_agreement, psnr_y_db, ssim_y, reference}, vs_hr {psnr_y_db,
                       ssim_y} (null in device reports)
    build_parity       the engine's check at build/adopt time (tokens, psnr_db, reference, passed)
    speedup_vs_eager, image_speedup_vs_eager, folder_speedup_vs_eager (eager's p50 / the entry's), each
                       with its _rounds (interleaved subjects): {rounds, p25, p50, p75, min, max} of
                       eager's time / the entry's in each round (bench/stats.py ratio_spread)
    meets_fidelity
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from alignvar_edge.errors import InputError
from alignvar_edge.fsmodes import write_text
from alignvar_edge.jsonsafe import dumps, loads
from alignvar_edge.manifest import CONTENT_KEY, content_hash
from alignvar_edge.name_text import PathArg, path_text, readable_texts

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ReportSchemaError", "check_report", "device_kind", "is_number", "meets_fidelity",
           "model_block", "new_report", "read_report", "reference_model_block", "report_header", "status_reasons",
           "write_json"]

SCHEMA = "alignvar-edge.bench"
SCHEMA_VERSION = 1
# settings.reference of a report made without PyTorch (`bench --no-reference`, `bench trtexec`)
DEVICE_REFERENCE = "golden outputs"
TOP_KEYS = ("schema", "schema_version", "kind", "created", "label", "host", "model", "settings",
            "peak", "engines", "summary")
ENGINE_KEYS = ("label", "backend", "kind", "status", "reason")
STATUSES = ("ok", "unavailable", "failed")
# the JSON type of each top-level part `bench merge` reads (peak and summary may be null)
_SHAPES: dict[str, type | tuple[type, ...]] = {"host": dict, "model": dict, "settings": dict,
                                               "peak": (dict, type(None)), "engines": list,
                                               "summary": (dict, type(None))}


class ReportSchemaError(InputError):
    """A file that is not a benchmark report of the version this alignvar-edge reads."""


def report_header(kind: str) -> dict[str, Any]:
    """The keys every report, a bench run's or a merge's (`kind`), opens with."""
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def model_block(name: str, source: str | None, weights_sha256: str | None, hr: int, scale: int,
                patch_nums: Sequence[int], parameters: Any, flops_per_tile: Any = None,
                flops_per_stage: Any = None) -> dict[str, Any]:
    """A report's `model`: what was benchmarked and its tile (`hr` 0: not known, as in a trtexec
    report without --engine); FLOPs only where they were counted (not in device reports)."""
    return {"name": name, "source": source, "weights_sha256": weights_sha256,
            "tile": {"lr": hr // scale if hr else None, "hr": hr, "scale": scale},
            "patch_nums": list(patch_nums), "sr_megapixels_per_tile": hr * hr / 1e6,
            "parameters": parameters, "flops_per_tile": flops_per_tile, "flops_per_stage": flops_per_stage}


def reference_model_block(model: Any, name: str, source: str | None,
                          flops_per_stage: dict[str, int] | None = None) -> dict[str, Any]:
    """`model_block` of a PyTorch model measured here (bench's reference, the checkpoint `eval`
    scores): its state-dict hash, where it was loaded from, its tile, scales and parameters, and its
    FLOPs where they were counted (bench)."""
    from alignvar_edge.model.checkpoint import weights_sha256
    c = model.config
    groups = None
    if flops_per_stage:
        from alignvar_edge.model.info import flop_groups
        groups = flop_groups(flops_per_stage)
    return model_block(name, source, weights_sha256(model), c.hr_size, c.scale, c.patch_nums,
                       model.parameter_report(), groups, flops_per_stage)


def new_report(*, label: str | None, host: dict[str, Any], model: dict[str, Any], settings: dict[str, Any],
               peak: dict[str, Any] | None, engines: list[dict[str, Any]], summary: dict[str, Any],
               profile: Any, notes: list[str]) -> dict[str, Any]:
    """A bench report (kind "bench"), host or device: every part TOP_KEYS names, so `bench merge`
    reads both alike; `label` None: the host's short label."""
    from alignvar_edge.bench.host import short_label
    return {**report_header("bench"), "label": label or short_label(host), "host": host, "model": model,
            "settings": settings, "peak": peak, "engines": engines, "summary": summary, "profile": profile,
            "notes": notes}


def status_reasons(engines: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """A summary's `unavailable` and `failed`: each such row's label and reason."""
    return {status: {e["label"]: e["reason"] for e in engines if e["status"] == status}
            for status in ("unavailable", "failed")}


def meets_fidelity(token_agreement: float | None, min_token_agreement: float) -> bool | None:
    """An engine row's fidelity gate; None where no token agreement was measured (baselines, a kit)."""
    return None if token_agreement is None else bool(token_agreement >= min_token_agreement)


def device_kind(backend: str, device: Any) -> str | None:
    """The kind of device an engine row ran on ('cpu', 'gpu', 'dla', 'npu', ...), from what its
    runtime names it ('CPU', 'cuda:0', 'GPU.1', a trtexec log's GPU name; OpenVINO's AUTO is 'cpu',
    Core ML's compute units their own name, 'cpu_and_ne'); None where not recorded."""
    if not device:
        return None
    d = str(device).lower()
    if "dla" in d:
        return "dla"
    head = re.split(r"[:.,( ]", d, maxsplit=1)[0]
    if head in ("cpu", "auto"):
        return "cpu"
    return "gpu" if head in ("cuda", "gpu") or backend == "tensorrt" else head


def write_json(path: str | os.PathLike[str], data: Any, recheck: Callable[[], None] | None = None) -> Path:
    """Write JSON atomically: a temporary sibling renamed over `path` (readers never see half a file).
    A report (bench or merged) is written with its content hash (CONTENT_KEY) over what a reader
    parses, which `read_report` verifies. `recheck`: as `fsmodes.write_atomically`'s. Its names and
    labels are written as text (`readable_texts`): what jq, a browser and `bench merge` read alike."""
    data = readable_texts(data)
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        data = loads(dumps(data))
        data[CONTENT_KEY] = content_hash(data)
    return write_text(path, dumps(data), recheck)


def existing_report(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The bench (or merged) report of any version that `path` holds, parsed once, unchecked; None if
    it is missing, unreadable or not one: what only `bench` replaces."""
    try:
        data = loads(Path(path).read_bytes())
    except (OSError, ValueError):       # also too deep or an integer too long (jsonsafe.loads)
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def is_report(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds a bench (or merged) report of any version (`existing_report`)."""
    return existing_report(path) is not None


def check_report(report: Any, where: str = "report") -> dict[str, Any]:
    """Raise ReportSchemaError unless `report` is a bench/merged report of SCHEMA_VERSION."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise ReportSchemaError(f"{where} is not an alignvar-edge benchmark report (no \"schema\": "
                                f"\"{SCHEMA}\"); pass report.json files written by `alignvar-edge bench`")
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportSchemaError(f"{where} has schema version {version}, this alignvar-edge reads version "
                                f"{SCHEMA_VERSION}; re-run `alignvar-edge bench` with this version on "
                                "that device (or merge with the alignvar-edge version that wrote it)")
    if report.get("kind") == "merged":
        for i, r in enumerate(report.get("reports") or []):
            check_report(r, f"{where} (merged report {i})")
        return report
    missing = [k for k in TOP_KEYS if k not in report]
    if missing:
        raise ReportSchemaError(f"{where} lacks {', '.join(missing)}; it is truncated or hand-edited")
    # the parts every table and warning reads: checked here, so a hand-edited report is one line, not a crash
    wrong = [k for k, kind in _SHAPES.items() if not isinstance(report[k], kind)]
    model, host = report["model"], report["host"]
    if not wrong and (not isinstance(model.get("name"), str) or not isinstance(model.get("tile"), dict)
                      or "hr" not in model["tile"]):
        wrong.append("model (its name and tile)")
    if not wrong and not isinstance(host.get("os"), dict):
        wrong.append("host (its os)")
    if wrong:
        raise ReportSchemaError(f"{where} has no valid {', '.join(wrong)}; it is truncated or hand-edited "
                                "(pass report.json files written by `alignvar-edge bench`)")
    for i, e in enumerate(report["engines"]):
        if not isinstance(e, dict):
            raise ReportSchemaError(f"{where}: engine entry {i} is not an object; it is truncated or hand-edited")
        gaps = [k for k in ENGINE_KEYS if k not in e]
        if gaps or e.get("status") not in STATUSES:
            raise ReportSchemaError(f"{where}: engine entry {i} lacks {', '.join(gaps) or 'a valid status'}")
        if e["status"] == "ok":
            bad = _bad_figure(e)
            if bad:
                raise ReportSchemaError(f"{where}: engine entry {i} ({e['label']}) has {bad}; it is hand-edited or "
                                        "truncated (pass report.json files written by `alignvar-edge bench`)")
    return report


def is_number(v: Any) -> TypeGuard[int | float]:
    """Whether a report's value is a number (JSON's true and false are not)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# an entry's ratios to eager (eager's p50 / the entry's), each with its per-round spread under
# key + ROUNDS, and the words tables give them
SPEEDUPS = {"speedup_vs_eager": "per tile", "image_speedup_vs_eager": "whole image",
            "folder_speedup_vs_eager": "folder"}
ROUNDS = "_rounds"
SPEEDUP_OF = dict(zip(("tile", "image", "folder"), SPEEDUPS))      # the timed part -> its ratio's key
# the figures of an "ok" entry that tables sort on or format as numbers (None: not measured)
_NUMBERS = (*SPEEDUPS, "artifact_bytes", "batch")


def _bad_figure(e: dict[str, Any]) -> str | None:
    """What is wrong with an "ok" entry's figures (None where nothing is): its latency (the timing
    every ok entry has), its percentiles per tile and per megapixel, and the ratios merge shows."""
    lat = e.get("latency")
    if not isinstance(lat, dict) or not isinstance(lat.get("per_tile_ms"), dict):
        return "status ok but no latency.per_tile_ms"
    for part in ("per_tile_ms", "per_megapixel_ms", "per_call_ms"):
        figures = lat.get(part)
        if figures is None and part != "per_tile_ms":
            continue
        if not isinstance(figures, dict) or not is_number(figures.get("p50")):
            return f"no number at latency.{part}.p50"
        wrong = [k for k, v in figures.items() if not is_number(v)]
        if wrong:
            return f"latency.{part}.{wrong[0]} = {figures[wrong[0]]!r}, not a number"
    wrong = [k for k in _NUMBERS if e.get(k) is not None and not is_number(e[k])]
    return f"{wrong[0]} = {e[wrong[0]]!r}, not a number" if wrong else None


def read_report(path: PathArg) -> dict[str, Any]:
    """The report at `path`, checked (`check_report`) and, where it records its content hash,
    verified against it; ReportSchemaError naming the file otherwise."""
    p = Path(path_text(path))
    if not p.is_file():
        raise InputError(f"no report at '{p}'; pass report.json files written by `alignvar-edge bench`")
    try:
        data = loads(p.read_bytes())
    except ValueError as e:             # not JSON, not UTF-8, too deep, an integer too long (jsonsafe.loads)
        raise ReportSchemaError(f"{p} is not valid JSON ({e}); it is truncated or not a report") from e
    report = check_report(data, str(p))
    recorded = report.get(CONTENT_KEY)
    if recorded is not None and recorded != content_hash(report):
        raise ReportSchemaError(f"{p} was edited after it was written (its content does not match its {CONTENT_KEY}); "
                                "merge reports as `alignvar-edge bench` wrote them, or run the bench again")
    return report
