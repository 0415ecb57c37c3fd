"""`adopt`: an engine directory (manifest, golden outputs, build files) for a TensorRT engine built
outside alignvar-edge (trtexec on the device), from the kit it was built from.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from alignvar_edge.errors import InputError, ParityError
from alignvar_edge.manifest import Manifest, artifact_dir, write_manifest
from alignvar_edge.export.parity import psnr, token_agreement
from alignvar_edge.runtimes.artifacts import engine_manifest
from alignvar_edge.recipes import recipe
from alignvar_edge.runtimes.golden import GOLDEN_FILE, read_golden
from alignvar_edge.runtimes.onnxruntime import ship_golden
from alignvar_edge.runtimes.tensorrt import backend as T
from alignvar_edge.runtimes.tensorrt.kit import (FP16_F32, LOG_FILE, f32_layers_of, half_layers_of, plan_record,
                                                 write_build_files)
from alignvar_edge.runtimes.tensorrt.plan import ENGINE, ONNX, network_plan, trt_major
from alignvar_edge.runtimes.tensorrt.trtexec_log import other_file_named, parse_trtexec_log, read_trtexec_log

__all__ = ["adopt"]


def adopt(engine_file: str | Path, like: str | Path, out: str | Path, log: str | Path | None = None,
          precision: str | None = None, dla_core: int | None = None, force: bool = False) -> Path:
    """An engine directory for an engine built outside alignvar-edge (trtexec on the device), from
    the kit (or export, or engine dir) it was built from: engine + ONNX + golden + manifest.

    TensorRT version and GPU: from `import tensorrt` and the CUDA device when TensorRT runs here,
    else from the trtexec log. Precision and DLA core: given, else from the log's command line,
    else the kit's. When TensorRT runs here the engine is checked against the golden outputs and
    the figures go into the manifest's parity (a FAIL writes nothing)."""
    engine_file, like, out = Path(engine_file), Path(like).resolve(), Path(out)
    if not engine_file.is_file():
        raise InputError(f"no engine file at '{engine_file}'; pass the file trtexec wrote (--saveEngine)")
    src, onnx_path = T._source(like)
    parsed = parse_trtexec_log(read_trtexec_log(log), timing=False) if log else {}
    _log_built(parsed, engine_file, onnx_path, log)
    _warn_unset_layers(parsed)
    usable, _ = T.BACKEND.is_available()
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
    kit_precision = src.precision or "fp32"
    precision = precision or parsed.get("precision") or (src.extra.get("tensorrt_kit") or {}).get(
        "precision") or kit_precision
    if dla_core is None:
        dla_core = parsed.get("dla_core")
    kit_f32, kit_half = f32_layers_of(src), half_layers_of(src)     # what a rebuild should ask for
    f32_layers, half_layers = kit_f32, kit_half
    flags = parsed.get("flags") or []
    if flags and not any(f.startswith("--layerPrecisions") for f in flags):
        f32_layers, half_layers = [], None        # built by hand without the kit's fp32 layers
    plan = network_plan(trt_major(trt_version), precision, kit_precision, f32_layers, half_layers)
    if flags and "--noTF32" not in flags:
        plan["tf32"] = True                       # TensorRT's default: the log is what was built
    with artifact_dir(out, force=force) as tmp:
        shutil.copy2(engine_file, tmp / ENGINE)
        shutil.copy2(onnx_path, tmp / ONNX)
        if log:
            shutil.copy2(log, tmp / LOG_FILE)
        # what an fp16 build of this model should keep in f32 (the rebuild files use it), the one
        # place the lists are kept; "plan" says what this engine was built with, whether it kept
        # them (OBEYS) included. The command that built it is trtexec.log's, kept beside it.
        f32 = src.extra.get(FP16_F32) or {"source": "the kit's plan", "layers": kit_f32, "half_layers": kit_half}
        extra = {"tensorrt_version": trt_version, "compute_capability": cc, "gpu_name": gpu_name,
                 "plan": plan_record(plan, f32), "device": "cuda:0", "dla_core": dla_core, FP16_F32: f32,
                 # the engine's SHA-256 is files["model.engine"]'s (a copy of it), kept there only
                 "adopted": {"engine": str(engine_file), "log": str(log) if log else None,
                             "versions_from": "this machine" if usable else "trtexec log"}}
        m = engine_manifest(src, like, "tensorrt", precision, {"engine": ENGINE}, batch=src.static_batch,
                            extra=extra)
        m.extra["golden"] = ship_golden(src, like, tmp)
        write_build_files(tmp, m, precision, kit_precision, None, 3, dla_core)
        if usable and m.extra["golden"]:
            m.parity = _check_against_golden(tmp, m)
        write_manifest(tmp, m)
    return out


def _log_built(parsed: dict[str, Any], engine_file: Path, onnx_path: Path, log: str | Path | None) -> None:
    """The log's --saveEngine and --onnx, where they name files here (relative: to this folder, as in
    the kit's README), must be the engine and the ONNX adopted: the manifest takes precision, DLA core
    and layer precisions from the log, which must describe this engine."""
    other = other_file_named(parsed, {"--saveEngine": engine_file, "--onnx": onnx_path})
    if other:
        flag, named, given = other
        what = "engine" if flag == "--saveEngine" else "ONNX"
        raise InputError(f"--log {log} is trtexec's log of a build {'into' if what == 'engine' else 'from'} "
                         f"'{named}' ({flag}), another {what} than '{given}': pass the log of the "
                         f"trtexec run that built {engine_file}")


def _warn_unset_layers(parsed: dict[str, Any]) -> None:
    """trtexec logs 'Set layer NAME to precision P' for each --layerPrecisions name it found among the
    network's layers and ignores the others without a word (another TensorRT's ONNX parser may name
    layers otherwise): a build that set fewer than it was given did not compute as the kit planned."""
    flags = parsed.get("flags") or []
    spec = next((f.split("=", 1)[1] for f in flags if f.startswith("--layerPrecisions=")), None)
    if not spec or not any(f.startswith("--onnx=") for f in flags):
        return                                   # no precisions given, or no build in this log
    named = {item.rsplit(":", 1)[0].strip("'") for item in spec.split(",") if "*" not in item}
    unset = sorted(named - set(parsed.get("layers_set") or ()))
    if unset:
        more = f" and {len(unset) - 1} more" if len(unset) > 1 else ""
        warnings.warn(f"trtexec set {len(named) - len(unset)} of the {len(named)} layers --layerPrecisions names "
                      f"(no 'Set layer {unset[0]} to precision' line{more} in its log): the others name no layer of "
                      "its network (folded away, or named otherwise by its ONNX parser), so the flag constrained "
                      "nothing there; `alignvar-edge selftest --engine` measures the tokens", RuntimeWarning, stacklevel=3)


def _check_against_golden(root: Path, manifest: Manifest) -> dict[str, Any]:
    lr, gsr, gtok, meta = read_golden(root / GOLDEN_FILE)
    with T.TensorRTEngine(root / ENGINE, manifest, "cuda:0", root) as engine:
        sr, tok = engine.run(lr)
    agree, p = token_agreement(gtok, tok), psnr(gsr, sr)
    r = recipe("tensorrt", manifest.precision)
    tok_min, psnr_min = r.tokens, r.psnr_db
    if agree["overall"] < tok_min or p < psnr_min:
        raise ParityError(f"the adopted engine gives {agree['overall']:.2%} of the golden tokens and "
                          f"{p:.1f} dB (needs {tok_min:.0%} and {psnr_min} dB for {manifest.precision}); "
                          "rebuild it from this kit's model.onnx with the flags in README.md")
    return {"tokens": agree, "psnr_db": round(p, 2), "reference": meta.get("reference", "PyTorch") + " (golden)",
            "tiles": int(lr.shape[0]), "passed": True}
