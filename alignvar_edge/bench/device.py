"""Benchmarks where PyTorch is not: an engine directory timed and checked against the golden
outputs it carries (`bench ENGINE --no-reference`), and trtexec's timing summary imported
(`bench trtexec LOG`). Both are bench reports of the usual schema, so `bench merge` joins them
with full reports from other machines.

What such a report lacks, by construction: the PyTorch eager baseline (so no speed-up), the GEMM
peak (no roofline), FLOPs and the per-stage profile, fidelity against HR photographs. Fidelity is
against the golden outputs (`vs_reference`, with `reference` naming what made them).

trtexec summaries read (TensorRT 8.x and 10.x print the same lines; 8.4 and older omit the 90%
and 95% percentiles, and a log may carry `[date] [I] ` prefixes or not):
    Throughput: 130.298 qps
    Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, percentile(90%) = ...
    GPU Compute Time: min = ..., max = ..., mean = ..., median = ..., percentile(99%) = ...
plus `Enqueue Time`, `H2D Latency`, `D2H Latency`, `Total Host Walltime`, `Total GPU Compute
Time`, `Selected Device`, `Compute Capability` and the `&&&& RUNNING TensorRT.trtexec [TensorRT
v100300] # trtexec ...` line (version and flags). `Latency` (host: H2D + compute + D2H) is the
reported per-call latency, as Engine.infer's wall time is for the other engines.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.bench.host import OwnLoad, run_threads, shared_load
from alignvar_edge.bench.schema import (DEVICE_REFERENCE, meets_fidelity, model_block, new_report,
                                        status_reasons)
from alignvar_edge.bench.stats import latency_summary, summary_from_percentiles
from alignvar_edge.caller import option
from alignvar_edge.manifest import Manifest, ModelInfo, load_verified
from alignvar_edge.errors import ArtifactError, InputError
from alignvar_edge.recipes import DEFAULT_MIN_TOKENS
from alignvar_edge.runtimes.tensorrt.trtexec_log import parse_trtexec_log, read_trtexec_log

__all__ = ["bench_engine_dir", "trtexec_report"]

_NOTE = ("Device report: no PyTorch baseline, GEMM peak or FLOP profile here; fidelity is against the "
         "golden outputs shipped in the engine directory.")


# ------------------------------------------------------------------------------------------------
# the report around device measurements
# ------------------------------------------------------------------------------------------------
def _model_block(manifest: Manifest | None) -> dict[str, Any]:
    model = manifest.model if manifest else ModelInfo()
    cfg = model.config or {}
    return model_block(model.display_name, model.source.describe() if manifest else None, model.weights_sha256,
                       int(cfg.get("hr_size", 0)), int(cfg.get("scale", 4)), cfg.get("patch_nums") or [],
                       model.parameters)


def _report(model: dict[str, Any], engines: list[dict[str, Any]], settings: dict[str, Any],
            label: str | None, host: dict[str, Any], min_tokens: float, notes: list[str]) -> dict[str, Any]:
    """A device report around its rows; `model`: `_model_block` of the engine's manifest."""
    meeting = [e["label"] for e in engines if e.get("meets_fidelity")]
    return new_report(
        label=label, host=host, model=model,
        settings={**settings, "min_token_agreement": min_tokens, "reference": DEVICE_REFERENCE},
        peak={"gflops": None, "method": "not measured (device report)"},
        engines=engines,
        summary={"eager_p50_ms_per_tile": None, "min_token_agreement": min_tokens,
                 "engines_meeting_fidelity": meeting,
                 **status_reasons(engines),
                 "best_cpu": None, "target_speedup": None, "target_met": None,
                 "fp32_bound_ms_per_tile": None, "shared_load": shared_load(host)},
        profile=None, notes=notes)


def _host() -> dict[str, Any]:
    from alignvar_edge.bench.host import fingerprint
    return fingerprint(with_backends=False)      # backend probing would import every runtime


def _golden(root: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], dict[str, str]]:
    from alignvar_edge.runtimes.golden import engine_golden, read_golden
    return read_golden(engine_golden(root, ", or run `alignvar-edge bench` with a --reference where PyTorch "
                                           "is installed"))


# ------------------------------------------------------------------------------------------------
# an engine directory, timed here
# ------------------------------------------------------------------------------------------------
def bench_engine_dir(engines: list[str], runs: int = 20, warmup: int = 3, threads: int | None = None,
                     label: str | None = None, min_token_agreement: float = DEFAULT_MIN_TOKENS,
                     log: Any = None, duration: float | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Time engine directories and check them against their golden outputs; no PyTorch needed.
    `cache_dir`: where OpenVINO engines keep their compiled model (the load option)."""
    from alignvar_edge.bench.fidelity import fidelity
    from alignvar_edge.bench.memory import PeakRSS
    from alignvar_edge.bench.render import cache_note, unverified_note
    from alignvar_edge.bench.runner import graph_fields, identity_fields, precision_fields, rounds
    from alignvar_edge.bench.subjects import (BICUBIC, call_for, check_cache_dir, check_exists, open_subject, parse_spec,
                                              unique_label)
    say = log or (lambda _m: None)
    if runs < 1 or warmup < 0:
        raise InputError(f"need --runs >= 1 and --warmup >= 0; got {runs}, {warmup}")
    specs = [parse_spec(text) for text in engines]
    if any(spec.backend == BICUBIC for spec in specs):
        # the golden outputs are the model's tiles, not HR photographs: bicubic has nothing to be
        # checked against here (the bench with PyTorch includes it as a baseline)
        say("bicubic is not timed here: the device bench times engines against their golden outputs")
        specs = [spec for spec in specs if spec.backend != BICUBIC]
        if not specs:
            raise InputError("the device bench times engine directories against their golden outputs; "
                             "name at least one (bicubic is a baseline of the bench with PyTorch)")
    for spec in specs:
        check_exists(spec)          # every one before any is timed
    check_cache_dir(specs, cache_dir)
    _check_one_model(specs)
    host = _host()
    own = OwnLoad()
    threads = run_threads(threads, host)
    entries, first = [], None
    taken: set[str] = set()
    for spec in specs:
        say(f"opening {spec.text}")
        # one label per row, as in the bench with PyTorch: the summary and `bench merge` key on it
        sub = unique_label(open_subject(spec, threads=threads, spin=False, cache_dir=cache_dir), taken)
        e: dict[str, Any] = {"label": sub.label, "backend": sub.backend, "kind": "engine", "status": sub.status,
                             "reason": sub.reason, "path": sub.path, "precision": sub.precision,
                             "device": sub.device, "artifact_bytes": sub.info.get("artifact_bytes"),
                             **precision_fields(sub), **graph_fields(sub.manifest),
                             **identity_fields(sub.path, sub.manifest)}
        entries.append(e)
        if sub.engine is None:
            continue
        first = first or sub.manifest
        try:
            eng = sub.engine
            try:
                lr, gsr, gtok, meta = _golden(Path(str(sub.path)))
            except ArtifactError as err:        # that row fails; the engines beside it are still timed
                e.update(status="failed", reason=str(err))
                continue
            p = PeakRSS()
            with p:
                sr, tok = eng.run(lr)
            fid = fidelity(sr, tok, gsr, gtok, None, eng.scale)
            fid["vs_reference"]["reference"] = meta.get("reference", "PyTorch")
            call = call_for(sub, lr, eng.scale)           # the runner's timed unit: one engine call
            for _ in range(warmup):
                call()
            times = []
            for _ in rounds(runs, duration):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1e3)
            mp = eng.config.hr_size ** 2 / 1e6
            e.update(batch=eng.batch, load_s=sub.info.get("load_s"), **(sub.info.get("cache") or {}),
                     latency=latency_summary(times, eng.batch, mp),
                     memory={**p.result(), "load_rss_mb": sub.info.get("load_rss_mb"),
                             "measured_on": f"golden pass ({len(lr)} tiles)"},
                     fidelity=fid, build_parity=sub.manifest.parity if sub.manifest else None,
                     meets_fidelity=meets_fidelity(fid["vs_reference"]["token_agreement"], min_token_agreement))
        finally:
            sub.engine.close()
    own.record(host)
    settings = {"runs": runs, "duration_s": duration, "warmup": warmup, "threads": threads, "fidelity_tiles": None,
                "images": None, "interleaved": False}
    notes = [n for n in (_NOTE, unverified_note(entries), cache_note(entries)) if n]
    return _report(_model_block(first), entries, settings, label, host, min_token_agreement, notes)


def _check_one_model(specs: list[Any]) -> None:
    """A report holds one model block, whose tile `bench merge` reads every engine's per-megapixel
    figures by: engines of different models (name, weights, tile or scales, as their manifests record
    them) are refused before any is timed, where the report would carry only the first one's."""
    from alignvar_edge.bench.subjects import spec_manifest
    first: tuple[str, dict[str, Any]] | None = None
    for spec in specs:
        manifest = spec_manifest(spec.path) if spec.path else None
        if manifest is None:
            continue
        block = _model_block(manifest)
        model = {k: block[k] for k in ("name", "weights_sha256", "tile", "patch_nums")}
        if first is None:
            first = spec.text, model
        elif model != first[1]:
            raise InputError(f"{first[0]} ({_model_words(first[1], model)}) and {spec.text} "
                             f"({_model_words(model, first[1])}) are engines of different models; one model per "
                             "report: bench each model on its own")


def _model_words(model: dict[str, Any], other: dict[str, Any]) -> str:
    """A model as `_check_one_model` names it: its name and SR tile, and its weights where those agree."""
    hr = model["tile"]["hr"]
    words = f"{model['name']}, {hr}x{hr} SR tile"
    same = (model["name"], model["tile"]) == (other["name"], other["tile"])
    return words + (f", weights {str(model['weights_sha256'])[:12]}" if same else "")


# ------------------------------------------------------------------------------------------------
# trtexec
# ------------------------------------------------------------------------------------------------
def _per_call(stats: dict[str, float]) -> dict[str, float]:
    out = {"p50": stats["median"]}
    out.update({k: stats[k] for k in ("p90", "p99", "min", "mean", "max") if k in stats})
    return out


def _trtexec_host(device: str | None, compute_capability: str | None, label: str | None,
                  log: Path) -> dict[str, Any]:
    """The machine a trtexec log was timed on: this one where its GPU or Jetson is the log's device;
    else only what the log says, with this machine's fingerprint kept as the one that imported it
    (a log copied back to a workstation must not be reported as timed on the workstation's CPU).
    A log that names no device (its summary copied without trtexec's device lines) is of the
    device `label` names: never this machine, which may only have imported it."""
    here = _host()
    if not device:
        if not label:
            raise InputError(f"{log} names no device (no 'Selected Device' line), and this machine only imports it: "
                             f"pass {option('label')} with the device trtexec ran on, or the log of trtexec's whole "
                             "output (2>&1 | tee FILE), which names it")
        return _log_device({"name": label, "compute_capability": compute_capability,
                            "named_by": "the report's label (the log names no device)"}, here)
    gpu = {"name": device, "compute_capability": compute_capability}
    names = [str(g.get("name") or "") for g in here.get("gpus") or []]
    names.append(str((here.get("jetson") or {}).get("model") or ""))
    if any(n and (device.lower() in n.lower() or n.lower() in device.lower()) for n in names):
        return {**here, "gpus": here.get("gpus") or [gpu]}
    return _log_device(gpu, here)


def _log_device(gpu: dict[str, Any], here: dict[str, Any]) -> dict[str, Any]:
    """The host block of a log's device other than this machine: its GPU as the log (or --label)
    names it, and `here` as the machine that imported the log."""
    return {"cpu": {}, "os": {"platform": "not recorded (timed by trtexec on the log's device)"}, "python": None,
            "gpus": [gpu], "jetson": None, "imported_by": here}


def _core(dla_core: int | None) -> str:
    return "none" if dla_core is None else str(dla_core)


def _check_log_is_of(t: dict[str, Any], manifest: Manifest, root: Path, log: Path) -> None:
    """The log must be trtexec's run of the engine `root` holds (or of the kit's ONNX): the report
    names that engine (its SHA-256, precision, DLA core, GPU), so a log of another engine, precision,
    DLA core, TensorRT or GPU is refused where the log says which (`log_contradictions`, as adopt)."""
    from alignvar_edge.runtimes.tensorrt.plan import ENGINE, ONNX
    from alignvar_edge.runtimes.tensorrt.trtexec_log import log_contradictions, other_file_named
    fix = (f"pass the log of the trtexec run that timed the engine in {root}, or --engine the directory of "
           "the engine it timed")
    if manifest.backend != "tensorrt" and not manifest.tensorrt_kit:
        raise InputError(f"--engine {root} holds no TensorRT engine or build kit (its manifest: {manifest.kind} "
                         f"for {manifest.backend}); {fix}")
    engine = manifest.kind == "engine" and not manifest.tensorrt_kit
    if engine and not t.get("command"):
        raise InputError(f"{log} has no '&&&& RUNNING TensorRT.trtexec' line (trtexec's command), so nothing ties it "
                         f"to the engine in {root}: save trtexec's whole output (2>&1 | tee FILE), or leave --engine "
                         "out and give --batch")
    files = {"--onnx": root / ONNX}
    if engine:
        files.update({"--saveEngine": root / ENGINE, "--loadEngine": root / ENGINE})
    other = other_file_named(t, {flag: f for flag, f in files.items() if f.is_file()})
    if other:
        flag, named, given = other
        raise InputError(f"{log} is trtexec's log of '{named}' ({flag}), another file than '{given}'; {fix}")
    if not engine:
        return                  # a kit: the log's precision and device are the build's own
    ex, built_from = manifest.extra, manifest.built_from
    differ = log_contradictions(t, precision=manifest.precision, graph_precision=built_from.precision if built_from
                                else None, tensorrt_version=ex.get("tensorrt_version"),
                                compute_capability=ex.get("compute_capability"), dla_core=ex.get("dla_core"))
    if differ:
        c = differ[0]
        in_log, in_dir = (_core(c.logged), _core(c.expected)) if c.what == "DLA core" else (c.logged, c.expected)
        raise InputError(f"{log} timed an engine of {c.what} {in_log} ({c.said_by}), and the engine in {root} has "
                         f"{c.what} {in_dir}; {fix}")


def trtexec_report(log: str | os.PathLike[str], engine_dir: str | os.PathLike[str] | None = None,
                   label: str | None = None, batch: int | None = None) -> dict[str, Any]:
    """A bench report from a trtexec log; `engine_dir` (an engine dir or kit) gives the model,
    batch and build parity (tokens vs golden, from `adopt` or `build`), and is checked to be what
    the log timed. Without it, `batch` (tiles per inference) is needed for the per-tile figures."""
    path = Path(log)
    text = read_trtexec_log(path)
    try:
        t = parse_trtexec_log(text)
    except InputError as e:                # "no performance summary in the log": which log
        raise InputError(f"{path}: {e}") from e
    manifest = None
    if engine_dir is not None:
        manifest = load_verified(engine_dir)
        _check_log_is_of(t, manifest, Path(engine_dir), path)
    contract = (manifest.input_contract if manifest else None) or {}
    engine_batch = contract.get("batch")
    if batch and engine_batch and batch != engine_batch:
        raise InputError(f"--batch {batch}: the engine in {engine_dir} takes {engine_batch} tile(s) per inference; "
                         "leave --batch out")
    b = batch or engine_batch
    if not b:
        raise InputError("bench trtexec needs the tiles per inference for its per-tile figures: pass --engine DIR "
                         "(the engine directory the log timed) or --batch N")
    b = int(b)
    from alignvar_edge.bench.render import unverified_note
    from alignvar_edge.bench.runner import graph_fields, identity_fields
    model = _model_block(manifest)
    mp = model["sr_megapixels_per_tile"] or None       # unknown without --engine: no per-MP figures
    # an engine's manifest is the authority (adopt read the log, or the kit for a strongly typed build)
    precision = (manifest.precision if manifest and manifest.kind == "engine" else None) or t["precision"] or (
        manifest.precision if manifest else None)
    # what the log leaves unsaid (a run that names no DLA core, a log without trtexec's device
    # lines) is the engine's, which _check_log_is_of found the log agrees with
    ex = manifest.extra if manifest and manifest.kind == "engine" else {}
    dla_core = t["dla_core"] if t["dla_core"] is not None else ex.get("dla_core")
    device, cc = t.get("device") or ex.get("gpu_name"), t.get("compute_capability") or ex.get("compute_capability")
    dla = f", DLA core {dla_core}" if dla_core is not None else ""
    lat = summary_from_percentiles(_per_call(t["latency_ms"]), None, b, mp)
    lat["source"] = "trtexec Latency (H2D + GPU compute + D2H per inference)"
    if "gpu_compute_time_ms" in t:
        lat["gpu_compute_per_call_ms"] = _per_call(t["gpu_compute_time_ms"])
    lat["trtexec_throughput_qps"] = t["throughput_qps"]
    # what trtexec measured (inferences per second, with its streams), not 1 / median latency
    qps = t["throughput_qps"]
    lat["throughput"] = {"tiles_per_s": round(qps * b, 3), "megapixels_per_s": round(qps * b * mp, 4) if mp else None,
                         "source": "trtexec Throughput (qps x tiles per inference)"}
    # an engine's own parity (adopt/build against golden); a kit's is its export's, not the engine's
    parity = manifest.parity if manifest and manifest.kind == "engine" else None
    tokens = ((parity or {}).get("tokens") or {}).get("overall") if isinstance(parity, dict) else None
    # a log that names no precision (a --loadEngine run, an older log) is not given one
    entry = {"label": "tensorrt" + (f"-{precision}" if precision else "") + (f"-dla{dla_core}" if dla else ""),
             "backend": "tensorrt", "kind": "engine", "status": "ok", "reason": None,
             "path": str(engine_dir) if engine_dir else None, "precision": precision,
             # the engine file --engine holds (its manifest's hash): the one the log timed, where adopt took the log
             "engine_sha256": manifest.engine_sha256
             if manifest and manifest.kind == "engine" else None,
             "device": (device or "cuda") + dla, "artifact_bytes": None, "batch": b, **graph_fields(manifest),
             **identity_fields(str(engine_dir) if engine_dir else None, manifest),
             "latency": lat, "memory": None, "fidelity": None, "build_parity": parity,
             # `bench trtexec` takes no --min-token-agreement: the default gate, which the report records
             "meets_fidelity": meets_fidelity(tokens, DEFAULT_MIN_TOKENS)}
    host = _trtexec_host(device, cc, label, path)
    if "imported_by" in host and not label:
        label = f"{device} (trtexec log)"
    settings = {"runs": None, "warmup": None, "threads": None, "fidelity_tiles": None, "images": None,
                "interleaved": False, "trtexec": {k: t.get(k) for k in ("command", "tensorrt_version",
                                                                      "total_host_walltime_s", "status")}}
    notes = [f"Imported from trtexec's performance summary ({path.name}, TensorRT {t.get('tensorrt_version')}); "
             "latency percentiles are trtexec's (p50 = median); p90 is absent in logs of TensorRT 8.4 and older.",
             "No fidelity measured here: trtexec runs random inputs. build_parity is the engine's check against "
             "the golden outputs when it was built or adopted (null for a kit); `alignvar-edge selftest --engine` "
             "measures it."]
    unverified = unverified_note([entry])
    if unverified:
        notes.append(unverified)
    return _report(model, [entry], settings, label, host, DEFAULT_MIN_TOKENS, notes)
