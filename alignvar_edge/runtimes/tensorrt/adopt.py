"""`adopt`: an engine directory (manifest, golden outputs, build files) for a TensorRT engine built
outside alignvar-edge (trtexec on the device), from the kit it was built from.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from alignvar_edge.caller import warn_caller
from alignvar_edge.cpuinfo import is_jetson
from alignvar_edge.errors import InputError, ParityError
from alignvar_edge.manifest import Manifest, redacting, shown_name, write_manifest
from alignvar_edge.name_text import shell_word
from alignvar_edge.outputs import artifact_dir
from alignvar_edge.export.parity import psnr, token_agreement
from alignvar_edge.runtimes.artifacts import engine_manifest, link_onnx
from alignvar_edge.recipes import recipe
from alignvar_edge.runtimes.golden import GOLDEN_FILE, read_golden
from alignvar_edge.runtimes.onnxruntime import ship_golden
from alignvar_edge.runtimes.tensorrt import backend as T
from alignvar_edge.runtimes.tensorrt.kit import LOG_FILE, copy_log, write_build_files
from alignvar_edge.runtimes.tensorrt.plan import (ENGINE, FP16_F32, ONNX, check_dla_core, network_plan, plan_record,
                                                  recorded_f32, trt_major)
from alignvar_edge.runtimes.tensorrt.trtexec_log import (log_built, log_contradictions, logged_precision,
                                                         other_file_named, parse_trtexec_log, read_trtexec_log)

__all__ = ["adopt"]


def adopt(engine_file: str | Path, like: str | Path, out: str | Path, log: str | Path | None = None,
          precision: str | None = None, dla_core: int | None = None, force: bool = False) -> Path:
    """An engine directory for an engine built outside alignvar-edge (trtexec on the device), from
    the kit (or export, or engine dir) it was built from: engine + ONNX + golden + manifest.

    TensorRT version and GPU: from `import tensorrt` and the CUDA device when TensorRT runs here,
    else from the trtexec log. Precision and DLA core: from the log's command line (a given value
    that contradicts it is refused), else as given, else the kit's. When TensorRT runs here the
    engine is checked against the golden outputs and the figures go into the manifest's parity
    (a FAIL writes nothing)."""
    engine_file, like, out = Path(engine_file), Path(like).resolve(), Path(out)
    if not engine_file.is_file():
        raise InputError(f"no engine file at '{engine_file}'; pass the file trtexec wrote (--saveEngine)")
    src, onnx_path = T._source(like)
    kit_precision = src.precision or "fp32"
    parsed = parse_trtexec_log(read_trtexec_log(log), timing=False) if log else {}
    if log:
        # the manifest takes precision, DLA core and layer precisions from the log: it must be this engine's
        _check_log_describes(parsed, log, engine_file, onnx_path, precision, dla_core, kit_precision)
    _warn_unset_layers(parsed)
    usable, why = T.BACKEND.is_available()
    gpu = T.gpu_info(0) if usable else None
    trt_version = T.BACKEND.version() if usable else parsed.get("tensorrt_version")
    cc = (gpu or {}).get("compute_capability") or parsed.get("compute_capability")
    gpu_name = (gpu or {}).get("name") or parsed.get("device")
    if not trt_version or not cc:
        missing = [line for line, v in (("'&&&& RUNNING TensorRT.trtexec' line", trt_version),
                                        ("'Compute Capability' line", cc)) if not v]
        raise InputError("adopt needs the TensorRT version and GPU the engine was built for: run it where "
                         "`import tensorrt` works on that GPU, or pass --log with trtexec's full output"
                         + (f" ('{log}' has no {' and no '.join(missing)}: save it with `2>&1 | tee FILE`)"
                            if log else ""))
    logged = logged_precision(parsed, kit_precision)
    origin = (f"--precision {precision} was given" if precision else
              f"--log {log} is trtexec's log of a {logged} build" if logged else None)
    precision = precision or logged or (src.extra.get("tensorrt_kit") or {}).get("precision") or kit_precision
    if dla_core is None:
        dla_core = parsed.get("dla_core")
    check_dla_core(dla_core, precision)
    # what a rebuild should ask for
    f32 = recorded_f32(src) or {"source": "the kit's plan", "layers": [], "half_layers": None}
    f32_layers, half_layers = f32["layers"], f32["half_layers"]
    flags = parsed.get("flags") or []
    if flags and not any(f.startswith("--layerPrecisions") for f in flags):
        f32_layers, half_layers = [], None        # built by hand without the kit's fp32 layers
    plan = _plan(trt_major(trt_version), precision, kit_precision, f32_layers, half_layers, like, origin)
    if flags and "--noTF32" not in flags:
        plan["tf32"] = True                       # TensorRT's default: the log is what was built
    # an engine of a redacted kit is redacted (engine_manifest); within `redacting()` the kit's folder is
    # also left out of what is recorded after the manifest is made (the golden file's origin)
    with redacting() if src.redacted else contextlib.nullcontext(), artifact_dir(out, force=force) as tmp:
        shutil.copy2(engine_file, tmp / ENGINE)
        data = link_onnx(onnx_path, tmp, ONNX, src)
        # what an fp16 build of this model should keep in f32 (the rebuild files use it), the one
        # place the lists are kept; "plan" says what this engine was built with, whether it kept
        # them (OBEYS) included. The command that built it is trtexec.log's, kept beside it.
        extra = {"tensorrt_version": trt_version, "compute_capability": cc, "gpu_name": gpu_name,
                 "plan": plan_record(plan, f32), "device": "cuda:0", "dla_core": dla_core, FP16_F32: f32,
                 # the engine is files["model.engine"] (a copy; where it was built may not outlive this
                 # run: build_on_device.sh removes its work folder), the log this directory's copy
                 "adopted": {"log": LOG_FILE if log else None,
                             "versions_from": "this machine" if usable else "trtexec log"}}
        m = engine_manifest(src, like, "tensorrt", precision, {"engine": ENGINE}, batch=src.static_batch,
                            extra=extra)
        if log:
            copy_log(log, tmp, m.redacted)
        m.extra["golden"] = ship_golden(src, like, tmp)
        write_build_files(tmp, m, precision, kit_precision, None, 3, data, dla_core)
        if usable and m.extra["golden"]:
            m.parity = _check_against_golden(tmp, m)
        else:
            m.extra["adopted"]["unchecked"] = _why_unchecked(usable, why, shown_name(str(out)) if m.redacted else out)
        write_manifest(tmp, m)
    return out


def _why_unchecked(usable: bool, why: str, out: str | Path) -> str:
    """What `adopt` records (and says) of an engine it did not check against the golden outputs
    (`usable`, `why`: TensorRT's availability as adopt found it): where TensorRT is on this machine
    (or it is a Jetson) the reason it does not run, the one `doctor` and `selftest` give, so the
    device's user fixes it here; elsewhere (a host) only that the device checks it."""
    check = f"`alignvar-edge selftest --engine {shell_word(out)}`"
    if usable:
        return f"not checked: the kit it came from has no golden outputs ({GOLDEN_FILE})"
    if T.BACKEND.version() is None and not is_jetson():
        return f"not checked here (TensorRT does not run here): run {check} on the device"
    return f"not checked: {why}; then run {check}"


def _check_log_describes(parsed: dict[str, Any], log: str | Path, engine: Path, onnx: Path, precision: str | None,
                         dla_core: int | None, graph_precision: str) -> None:
    """Refuse (InputError, one line naming `log`) a trtexec log that is not of this engine: its
    --saveEngine/--loadEngine or --onnx naming another file here than `engine` or `onnx`, or a
    precision or DLA core it says (`log_contradictions`) other than the --precision or --dla-core given."""
    other = other_file_named(parsed, {"--saveEngine": engine, "--loadEngine": engine, "--onnx": onnx})
    if other:
        flag, named, given = other
        kind, run = ("ONNX", "a build from") if flag == "--onnx" else \
            ("engine", "a build into" if flag == "--saveEngine" else "a run of")
        raise InputError(f"--log {log} is trtexec's log of {run} '{named}' ({flag}), another {kind} than '{given}': "
                         f"pass the log of the trtexec run that built {engine}")
    for c in log_contradictions(parsed, precision=precision, graph_precision=graph_precision, dla_core=dla_core,
                                check_dla=dla_core is not None):
        if c.what == "precision":
            said, flag = f"a {c.logged} build", f"--precision {c.expected}"
        else:
            on = "the GPU" if c.logged is None else f"DLA core {c.logged}"
            said, flag = f"a {'build' if log_built(parsed) else 'run'} on {on}", f"--dla-core {c.expected}"
        raise InputError(f"--log {log} is trtexec's log of {said} ({c.said_by}), but {flag} was given: leave "
                         f"{flag.split()[0]} out to take the log's, or pass the log of this engine's build")


def _plan(major: int, precision: str, kit_precision: str, f32_layers: list[str], half_layers: list[str] | None,
          like: Path, origin: str | None) -> dict[str, Any]:
    """network_plan, whose refusal names where the precision came from (`origin`: the flag or the log)
    where it was not the kit's own: the engine was then built from another graph than `like`'s."""
    try:
        return network_plan(major, precision, kit_precision, f32_layers, half_layers)
    except InputError as e:
        if origin is None:
            raise
        graph_says = kit_precision != "fp32" or recipe("tensorrt", precision).needs_quantize
        raise InputError(f"{origin}, but TensorRT {major} builds no {precision} engine from the {kit_precision} "
                         f"graph of '{like}'" + (": pass --like the kit the engine was built from" if graph_says
                                                 else f": {e}")) from e


def _warn_unset_layers(parsed: dict[str, Any]) -> None:
    """trtexec logs 'Set layer NAME to precision P' for each --layerPrecisions name it found among the
    network's layers and ignores the others without a word (another TensorRT's ONNX parser may name
    layers otherwise): a build that set fewer than it was given did not compute as the kit planned."""
    flags = parsed.get("flags") or []
    spec = next((f.split("=", 1)[1] for f in flags if f.startswith("--layerPrecisions=")), None)
    if not spec or not log_built(parsed):
        return                                   # no precisions given, or no build in this log
    named = {item.rsplit(":", 1)[0].strip("'") for item in spec.split(",") if "*" not in item}
    unset = sorted(named - set(parsed.get("layers_set") or ()))
    if unset:
        more = f" and {len(unset) - 1} more" if len(unset) > 1 else ""
        warn_caller(f"trtexec set {len(named) - len(unset)} of the {len(named)} layers --layerPrecisions names "
                    f"(no 'Set layer {unset[0]} to precision' line{more} in its log): the others name no layer of "
                    "its network (folded away, or named otherwise by its ONNX parser), so the flag constrained "
                    "nothing there; `alignvar-edge selftest --engine` measures the tokens", RuntimeWarning)


def _check_against_golden(root: Path, manifest: Manifest) -> dict[str, Any]:
    lr, gsr, gtok, meta = read_golden(root / GOLDEN_FILE)
    with T.TensorRTEngine(root / ENGINE, manifest, "cuda:0", root) as engine:
        sr, tok = engine.run(lr)
    agree, p = token_agreement(gtok, tok), psnr(gsr, sr)
    r = recipe("tensorrt", manifest.precision)
    if r.misses(agree["overall"], p):
        raise ParityError(f"the adopted engine gives {agree['overall']:.2%} of the golden tokens and "
                          f"{p:.1f} dB (needs {r.gate_words} for {manifest.precision}); "
                          "rebuild it from this kit's model.onnx with the flags in README.md")
    return {"tokens": agree, "psnr_db": round(p, 2), "reference": meta.get("reference", "PyTorch") + " (golden)",
            "tiles": int(lr.shape[0]), "passed": True}
