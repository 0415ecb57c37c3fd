"""CLI verbs `build`, `upscale`, `compare`, `doctor` and `selftest` (registered by alignvar_edge.cli)."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignvar_edge.argtypes import (DEFAULT_MAX_MEGAPIXELS, MAX_TILES, batch_size, nonneg_int, positive_float, positive_int,
                                   tile_count)
from alignvar_edge.caller import option
from alignvar_edge.cli_json import add_json_option, no_stale_result
from alignvar_edge.errors import BackendUnavailableError, InputError, OutputExistsError
from alignvar_edge import progress
from alignvar_edge.recipes import (BACKENDS, CALIB_TILES, OPTION_FLAGS, check_options, default_precision, precisions,
                                   recipe, where)
from alignvar_edge.manifest import Manifest, first_names, unverified_caution
from alignvar_edge.model.bundled import DEFAULT_CHECKPOINT
from alignvar_edge.name_text import line_text, shell_word
from alignvar_edge.runtimes.upscale_jobs import FolderTally, Job, changed_inputs, foreign_outputs, plan_jobs
from alignvar_edge.runtimes.upscale_record import FolderRecord, Hashed, input_digest
from alignvar_edge.runtimes.base import check_thread_count
from alignvar_edge.runtimes.openvino import CACHE_ENV

if TYPE_CHECKING:
    from collections.abc import Iterable

    from alignvar_edge.runtimes import BackendInfo

BACKEND_CHOICES = ("auto", *BACKENDS)
# Core ML's palettized precisions, as build's help lists them: 'palette2|4|6|8'
PALETTES = "palette" + "|".join(p.removeprefix("palette") for p in precisions("coreml") if p.startswith("palette"))
# --device of the verbs that run an engine
RUN_DEVICE_HELP = ("the device the engine runs on, named as `build --device` names it (torch: cpu, cuda[:N] or mps); "
                   "default: the one it was built for (torch from a checkpoint: cpu)")


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """--cache-dir of the verbs that load engines (upscale, selftest, bench): the `cache_dir` load option."""
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="OpenVINO engines: keep their compiled model in DIR (made if missing) and read it from "
                             "there on later calls instead of compiling again, seconds each; a call per photo wants "
                             f"it (default: ${CACHE_ENV} where set, which the other engines ignore; else no cache)")


def cache_dir_scope() -> str:
    """What --cache-dir applies to, as its refusals say it (upscale, selftest, bench)."""
    from alignvar_edge import runtimes
    return ("--cache-dir keeps the model an engine compiles as it loads, which only "
            f"{', '.join(runtimes.backends_taking('cache_dir'))} engines do")


def cache_dir_option(args: argparse.Namespace, engine: str, backend: str) -> dict[str, Any]:
    """--cache-dir as the load option it gives, refused in one line, before any work, on an engine
    whose backend compiles nothing as it loads (the variable that sets it for every call is ignored there)."""
    if args.cache_dir is None:
        return {}
    _require_option(engine, backend, "cache_dir", f"{cache_dir_scope()}: drop it")
    return {"cache_dir": args.cache_dir}


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build a backend engine from an export (or a checkpoint)",
                       description="Make an engine directory (with manifest.json) for one backend. "
                                   "ONNX Runtime / OpenVINO / TensorRT build from `alignvar-edge export` "
                                   "output; torch and Core ML from a checkpoint (or an export naming it). "
                                   "Without TensorRT, --target tensorrt writes a build kit for the device.")
    p.add_argument("source", help="export directory, checkpoint directory or bundled name")
    p.add_argument("--target", required=True, choices=BACKEND_CHOICES[1:], help="the backend to build for")
    p.add_argument("--precision", help=f"fp32 | fp16 | bf16 (OpenVINO CPU) | int8 | int8-weights | {PALETTES} "
                                       "(Core ML); default fp32 (Core ML: fp16), or half where this host has "
                                       "fast half units and the half build keeps the tokens")
    p.add_argument("--calib", help="INT8 calibration: 'builtin' or a folder of images")
    p.add_argument("--calib-tiles", type=tile_count,
                   help=f"calibration tiles (default {CALIB_TILES}, at most {MAX_TILES})")
    p.add_argument("--out", help="engine directory (default: SOURCE-TARGET-PRECISION beside SOURCE)")
    from alignvar_edge.runtimes.onnxruntime import DEVICES as ORT_DEVICES
    from alignvar_edge.runtimes.openvino.devices import DEVICE_KINDS as OV_DEVICES     # names only: no openvino
    p.add_argument("--device", help=f"onnxruntime: {'|'.join(ORT_DEVICES)}; openvino: {'|'.join(OV_DEVICES)}; "
                                    "tensorrt: cuda:N; coreml: compute units (CPU_AND_NE, ALL, ...)")
    p.add_argument("--threads", type=positive_int, help=f"{where('threads')}: intra-op threads recorded in the engine")
    p.add_argument("--target-os", dest="target_os", help="Core ML minimum deployment target (default iOS17)")
    p.add_argument("--float-groups-from", dest="float_groups_from", metavar="DIR",
                   help="openvino int8: also keep in float the module groups that this int8 ONNX artifact's "
                        "fidelity search returned to float (e.g. the `quantize --target onnxruntime` output)")
    p.add_argument("--half-policy-from", dest="half_policy_from", metavar="DIR",
                   help="tensorrt / coreml fp16: keep in fp32 the groups the fp16 search of this "
                        "`quantize --precision fp16` artifact returned to f32 (left out, tensorrt keeps what "
                        "the source records, a kit's f32 layers or an fp16 export's policy, else the token path)")
    p.add_argument("--token-bf16", dest="token_bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="openvino bf16 and int8 on a CPU with AVX512-BF16 or AMX: before keeping the token path "
                        "all f32, try its MLP matmuls in bf16, kept only if 256 held-out tiles keep >= 99%% of "
                        "their tokens (about 1.15x on the whole image). Tried by default where the build "
                        "computes bf16; --token-bf16 fails where it cannot be judged, --no-token-bf16 "
                        "keeps the split's exact f32 tokens")
    p.add_argument("--kit", action="store_true", default=None, help="tensorrt: write the on-device build kit only")
    p.add_argument("--image-input", action="store_true", default=None,
                   help="coreml: the input is an RGB image tile (CVPixelBuffer in Swift) instead of a float array")
    p.add_argument("--batch", type=batch_size,
                   help="coreml: tiles per prediction (default: 16 for SR tiles up to 64 px, so a 512 px "
                        "photo of alignvar-tiny takes 8 predictions, not 121; 1 for larger tiles and "
                        "with --image-input)")
    p.add_argument("--redact", action="store_true",
                   help="for engines shipped to others: record the checkpoint by its folder name and SHA-256s and "
                        "the calibration set by its hash and counts, leaving out this machine's folders and the "
                        "calibration photos' file names (inspect says so)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run_build, stdout_is_a_summary=True)

    u = sub.add_parser("upscale", help="super-resolve an image or a folder with any engine (x4, any size)",
                       description="Super-resolve an image file or every image of a folder x4 with any engine "
                                   "(tiled with overlap blending, so any size works; gray and RGBA kept). Never "
                                   "writes onto inputs; a folder run skips finished outputs unless --force. "
                                   "A folder run skips and names the files it cannot use, finishes every other "
                                   "image and exits 4 naming them (2: refused, nothing written): fix or remove "
                                   "them and run again (finished images are skipped). A second run into the same "
                                   "folder does not start an image the first is working on (where the disk takes "
                                   "file locks): it leaves those to it and says how many.")
    u.add_argument("input", help="image file or folder")
    u.add_argument("output", help="for a file: the output file, or a folder to write it into (one that exists, "
                                  "or a path ending in /); for a folder: the output folder")
    u.add_argument("--engine", default=DEFAULT_CHECKPOINT,
                   help=f"engine dir, export dir or checkpoint (default: the bundled {DEFAULT_CHECKPOINT}, torch)")
    u.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="the runtime that runs --engine (default %(default)s: the one its manifest names; torch "
                        "for a checkpoint)")
    u.add_argument("--device", help=RUN_DEVICE_HELP)
    u.add_argument("--overlap", type=nonneg_int, help="tile overlap in LR pixels (default: a quarter tile)")
    u.add_argument("--color-fix", dest="color_fix", action=argparse.BooleanOptionalAction, default=None,
                   help="VARSR's AdaIN colour fix over each whole image: match the output's per-channel mean "
                        "and deviation to the input's (default: on for VARSR models, as VARSR's own script "
                        "applies it, off for AlignVAR's)")
    u.add_argument("--alpha-is-data", action="store_true",
                   help="the alpha channel is data (a mask, a packed texture), not coverage: the colour under "
                        "alpha 0 is upscaled as it is (default: replaced first by that of the visible pixels "
                        "around it, so that an editor's black there does not fringe the edges)")
    u.add_argument("--threads", type=positive_int, help="threads for the runtime")
    u.add_argument("--hint", choices=("latency", "throughput"),
                   help="OpenVINO engines: 'throughput' runs several tile batches at once on parallel "
                        "streams (faster whole images on a multi-core or busy host); default latency")
    u.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="torch on a CUDA device: run each call eagerly instead of replaying it as one "
                        "captured CUDA graph (the default there)")
    add_cache_dir_option(u)
    u.add_argument("--quality", type=_quality_arg, metavar="1-100|lossless",
                   help="JPEG and WebP outputs: 1 to 100 (default 95; JPEG keeps full-resolution colour, 4:4:4, "
                        "from 90 up, 4:2:0 below), or 'lossless' for WebP; refused where no output is .jpg or .webp")
    u.add_argument("--strip-metadata", action="store_true",
                   help="write the colour profile alone (ICC; a PNG's gamma, primaries and sRGB) and the DPI x4 "
                        "where the format has a field of its own for it (not WebP): no EXIF, XMP or PNG text, so no "
                        "camera, serial numbers, GPS, author or edit history (default: they are kept)")
    u.add_argument("--force", action="store_true", help="replace existing outputs")
    u.add_argument("--max-megapixels", type=positive_float, default=DEFAULT_MAX_MEGAPIXELS,
                   help=f"refuse larger inputs (default {DEFAULT_MAX_MEGAPIXELS:g})")
    u.add_argument("--quiet", action="store_true", help="no progress bar")
    u.set_defaults(func=run_upscale, stdout_is_a_summary=True)

    c = sub.add_parser("compare", help="engines vs the PyTorch reference on images: tokens, PSNR/SSIM-Y",
                       description="Run engines and the PyTorch reference on the same tiles: tiles with "
                                   "identical tokens, token agreement per scale, and PSNR / PSNR-Y / SSIM-Y "
                                   "of the stitched images. Files of --images that cannot be read are "
                                   "skipped and named.")
    c.add_argument("engines", nargs="+", help="engine / export directories")
    c.add_argument("--images", help="folder of images used as LR inputs (default: bundled held-out photos)")
    c.add_argument("--reference", help="checkpoint for the torch reference (default: the one the "
                                       "engines' manifests name)")
    c.add_argument("--max-size", type=positive_int, default=96, help="centre-crop images to at most this many "
                                                            "LR pixels per side (default 96)")
    c.add_argument("--limit", type=positive_int, help="use at most this many images")
    c.add_argument("--max-megapixels", type=positive_float,
                   help=f"skip larger files in --images (default {DEFAULT_MAX_MEGAPIXELS:g}; each is read whole before "
                        "--max-size crops it)")
    add_json_option(c, "the results")
    c.set_defaults(func=run_compare)

    d = sub.add_parser("doctor", help="which backends work here, their versions and devices, and why not",
                       description="List every backend with its version and devices where it is usable here, "
                                   "and one line on why each unusable one is not.")
    add_json_option(d, "the host and backends")
    d.set_defaults(func=run_doctor)

    a = sub.add_parser("adopt", help="an engine directory (manifest, golden outputs) for a TensorRT engine "
                                     "built by hand on the device, from the kit it was built from",
                       description="Wrap a TensorRT engine built by hand (trtexec --saveEngine) into an engine "
                                   "directory with a manifest and the golden outputs of the kit it was built "
                                   "from, so selftest and bench accept it.")
    a.add_argument("engine", metavar="ENGINE", help="the engine file trtexec wrote (--saveEngine)")
    a.add_argument("--like", required=True, metavar="KITDIR",
                   help="the build kit (or export, or TensorRT engine dir) the engine was built from")
    a.add_argument("--log", help="trtexec's full output: TensorRT version, GPU, precision, DLA core when "
                                 "TensorRT cannot be imported here")
    a.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="default: from the log's flags")
    a.add_argument("--dla-core", type=int, help="the DLA core it was built for (default: from the log)")
    a.add_argument("--out", required=True, help="the engine directory to write")
    a.add_argument("--force", action="store_true", help="replace --out if it exists")
    a.set_defaults(func=run_adopt, stdout_is_a_summary=True)

    s = sub.add_parser("selftest", help="build from the bundled model here, check against golden outputs, time it; "
                                        "or check a built engine against the golden outputs it carries",
                       description="What to run first on a new device: build an engine from the bundled model "
                                   "(--backend) or take a built one (--engine), check it against golden "
                                   "outputs, time it and print a shareable report.")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--backend", choices=BACKEND_CHOICES[1:],
                       help="build an engine of this backend from --model here, then check and time it")
    which.add_argument("--engine", metavar="DIR", help="a built engine directory (carries golden.safetensors); "
                                                       "needs only its runtime, no PyTorch")
    s.add_argument("--model", help=f"with --backend: bundled name or checkpoint with golden.safetensors "
                                   f"(default {DEFAULT_CHECKPOINT})")
    s.add_argument("--precision", help=f"with --backend: the engine's precision, as `build --precision` takes it "
                                       f"(default {default_precision('torch')}; Core ML: {default_precision('coreml')})")
    s.add_argument("--device", help=RUN_DEVICE_HELP)
    s.add_argument("--runs", type=positive_int, default=10, help="timed runs (default 10)")
    s.add_argument("--threads", type=positive_int,
                   help="CPU threads for the engine, where its backend takes a thread count, at most the usable "
                        "cores; default: the runtime's own (every core), a latency a busy host makes noisy. "
                        "`bench --threads` compares engines")
    s.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="torch on a CUDA device: run each call eagerly instead of replaying it as one "
                        "captured CUDA graph (the default there)")
    add_cache_dir_option(s)
    add_json_option(s, "the report")
    s.set_defaults(func=run_selftest)


# ------------------------------------------------------------------------------------------------
def run_build(args: argparse.Namespace) -> int:
    from alignvar_edge import runtimes
    b = runtimes.get_backend(args.target)
    opts: dict[str, Any] = {}
    # backend build options: which (backend, precision) takes which is the recipe table's to say
    given = {opt: getattr(args, flag.lstrip("-").replace("-", "_")) for opt, flag in OPTION_FLAGS.items()}
    from alignvar_edge.runtimes.half import build_auto, half_somewhere, host_half
    half = args.precision is None and host_half(b.name, args.device)
    # without --precision: the options of the half build it tries first (its fp32 fallback ignores them)
    first = args.precision or half or None
    takes = recipe(b.name, first).options
    # a switch turned off (--no-token-bf16) asks for nothing where this host's build does not take it but
    # the same command's build on a host with half units would (one command for every host); where no
    # host's would (another target, an explicit --precision), it is refused as any flag left unread
    elsewhere = recipe(b.name, args.precision or half_somewhere(b.name, args.device) or None).options
    given = {opt: value for opt, value in given.items()
             if value is not None and (value is not False or opt in takes or opt not in elsewhere)}   # None: not given
    check_options(b.name, first, given)
    opts.update(given)
    if "float_groups" in opts:
        from alignvar_edge.quantize.artifact import searched_float_groups
        opts["float_groups"] = searched_float_groups(args.float_groups_from)
    if "half_policy" in opts:
        from alignvar_edge.quantize.artifact import searched_half_policy
        opts["half_policy"] = searched_half_policy(args.half_policy_from)
    if b.name == "openvino":        # its checked rungs can take minutes each on a large model: say each one
        opts["rung_log"] = progress.note
    if b.checks_on_photos:          # a device install: one line now, not after a minute of building
        from alignvar_edge.runtimes.artifacts import require_validation_photos
        require_validation_photos()
    calibration = None
    if args.calib_tiles is not None and not args.calib:
        # it sizes the --calib set: on its own it would be silently ignored
        raise InputError("--calib-tiles sizes the --calib set and applies only with --calib")
    if args.calib:
        from alignvar_edge.recipes import calibrating_builds
        if not recipe(b.name, args.precision).calibration:
            raise InputError(f"--calib applies to builds that calibrate in the backend ({calibrating_builds()}); "
                             f"{b.name} {args.precision or 'default'} uses none. Builds from a Q/DQ export take "
                             "theirs in `alignvar-edge quantize`")
        calibration = _calibration(args)
    t0 = time.perf_counter()
    label = args.precision or (f"{half} (else fp32)" if half else b.default_precision)
    # TensorRT without TensorRT here writes a kit for the device: say so, not "building"
    writes_kit = b.name == "tensorrt" and (opts.get("kit") or not b.is_available()[0])
    from alignvar_edge.manifest import redacting
    with (progress.stage(f"writing the tensorrt {label} build kit" if writes_kit else f"building the {b.name} {label} engine"),
          redacting() if args.redact else contextlib.nullcontext()):
        if half:
            # fast half units here: half if its build keeps the tokens, else fp32
            from alignvar_edge.runtimes.artifacts import out_for
            out, _ = build_auto(Path(args.source), b.name, out_for(args.source, b.name, args.out),
                                device=args.device, log=progress.note, calibration=calibration, force=args.force, **opts)
        else:
            out = runtimes.build(args.source, b.name, args.precision, calibration=calibration, out=args.out,
                                 device=args.device, force=args.force, **opts)
    from alignvar_edge.manifest import db_text, parity_figures, read_manifest
    m = read_manifest(out)
    kit = m.extra.get("tensorrt_kit")
    if kit:
        print(f"{kit['reason']}; wrote a build kit to {out}: run "
              f"`sh {shell_word(os.path.join(out, 'build_on_device.sh'))}` on the device (by hand: "
              "`sh trtexec.txt` from inside it, which writes the engine beside it)")
        for line in engine_warnings(m):      # the kit's user cannot check the engine before the device
            progress.note(line)
        return 0
    par = parity_figures(m.parity)
    # an engine for a device this host lacks (an NPU, say) is written without running once
    note = (f"; not run here (no parity check): run `alignvar-edge selftest --engine {shell_word(out)}` on the device "
            "before trusting it")
    if par:
        psnr = "" if par.psnr_db is None else f", PSNR {db_text(par.psnr_db)} dB"
        note = f"; parity vs {par.reference or 'reference'}: tokens {par.tokens_pct}{psnr}"
    print(f"wrote {out} ({b.name} {m.precision}) in {time.perf_counter() - t0:.1f} s{note}")
    for line in engine_warnings(m):
        progress.note(line)
    from alignvar_edge.export.inspect_artifact import tried_rungs
    from alignvar_edge.runtimes.openvino.backend import half_checked_in_f32
    tried = tried_rungs(m)              # from the manifest just written: no second pass over the files
    # say which rung was kept and why the faster ones were not, or that the only one misses the gate
    if len(tried) > 1 or (tried and "selftest will fail it" in tried[-1]):
        print("\n".join(f"  tried {t}" for t in tried))
    if half_checked_in_f32(m):
        progress.note(f"note: {b.name} {m.extra.get('device') or ''} computed f32 here under the {m.precision} hint (no "
             f"{m.precision} units), so the build checked the engine in f32; run `alignvar-edge selftest --engine "
             f"{shell_word(out)}` on a machine that computes {m.precision}")
    return 0


def engine_warnings(m: Manifest) -> list[str]:
    """What a built engine's (or TensorRT build kit's) manifest says must reach the user who made it
    (`build`, and `quantize` for a backend that quantizes in its build): a Core ML proxy short of the
    selftest gate, the ANE lint's findings above `info`, and the int8 source's missed fidelity target
    (its own parity compares the engine with that source, not with fp32) or its target looser than
    the gate selftest applies to the engine."""
    from alignvar_edge.export.lint import package_finding_text
    from alignvar_edge.quantize.records import looser_target_warning, missed_target_warning
    lines = []
    # an engine carries its quantize step's record under `quantize`; a TensorRT build kit, the
    # quantize output plus scripts, carries it as its own parity
    kit = m.tensorrt_kit
    quantized = (m.parity or {}) if kit else (m.parity or {}).get("quantize")
    what = f"the {m.precision} {'build kit' if kit else 'engine'}"
    missed = missed_target_warning(quantized, m.quantization)
    if missed:
        lines.append(f"warning: {what}: {missed}")
    elif quantized:
        # a kit's manifest is its ONNX graph's (backend 'onnx'): its engine is TensorRT's, gated as such
        gate = recipe("tensorrt" if kit else m.backend, (kit or {}).get("precision") or m.precision)
        looser = looser_target_warning(m.quantization, gate)
        if looser:
            lines.append(f"warning: {what}: {looser}")
    if isinstance(m.parity, dict) and m.parity.get("short_of_gate"):    # Core ML: its proxy misses the gate
        from alignvar_edge.runtimes.coreml.readme import SHORT_OF_GATE
        lines.append(f"warning: {SHORT_OF_GATE.format(gate=m.parity['short_of_gate'])}")
    for f in m.extra.get("ane_lint") or []:           # Core ML: what keeps work off the Neural Engine
        if f["level"] != "info":
            lines.append(package_finding_text(f))
    return lines


def _calibration(args: argparse.Namespace) -> Any:
    from alignvar_edge.quantize.calibration.sets import CalibrationSet, rounding_note
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.checkpoint import is_checkpoint
    n = args.calib_tiles or CALIB_TILES
    if is_checkpoint(args.source):
        from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir
        config: Any = load_config(resolve_checkpoint_dir(args.source))
    else:
        from alignvar_edge.runtimes.base import config_from_manifest
        m = read_manifest(args.source)
        config = config_from_manifest(m)
        (n,), note = rounding_note("--calib-tiles", (n,), m.static_batch)
        if note and args.calib_tiles:
            progress.note(note)
    if args.calib == "builtin":
        return CalibrationSet.builtin(config, n=n)
    return CalibrationSet.from_folder(args.calib, config, n=n)


# ------------------------------------------------------------------------------------------------
def _finished(existing: list[Job], engine: str, output: str, force: bool, record: FolderRecord) -> list[Job]:
    """A folder run's outputs that exist: skipped where they are its results of the inputs as they
    are now, made by this engine and options, returned to be redone where their input changed since
    or the record says another engine or other options made them; any other file is named, and
    only --force replaces it (saying so), or its removal, which redoes that one alone."""
    ours, unrecorded = record.split(existing)
    foreign = foreign_outputs(unrecorded, _engine_scale(engine))
    shown = first_names(foreign)
    if foreign and not force:
        raise OutputExistsError(f"{len(foreign)} file(s) in {output} where this run writes its results are not "
                                f"finished results of it: {shown}; remove them or move them away and run the same "
                                f"command again (only they are redone), or pass {option('force', True)} to redo "
                                "every image")
    if force:                        # every existing output is redone already
        if foreign:
            progress.note(f"replacing {len(foreign)} file(s) in {output} that were not finished results of this "
                          f"run ({option('force', True)}): {shown}")
        return []
    other_input, other_make = record.made_otherwise(ours)
    changed = changed_inputs(unrecorded) + other_input
    if changed:
        progress.note(f"redoing {len(changed)} output(s) in {output} whose input changed since they were written: "
                      f"{first_names([str(dst) for _, dst in changed])}")
    if other_make:
        progress.note(f"redoing {len(other_make)} output(s) in {output} made by another engine or with other options "
                      f"({option('strip_metadata')}, {option('quality')}, {option('overlap')}, ...) than this run's: "
                      f"{first_names([str(dst) for _, dst in other_make])}")
    redone = changed + other_make
    if len(existing) > len(redone):
        progress.note(f"skipping {len(existing) - len(redone)} finished output(s) in {output} "
                      f"(pass {option('force', True)} to redo them)")
    return redone


def _engine_scale(engine: str) -> int:
    """The scale of the engine `--engine` names, from its checkpoint's config or its manifest
    (without loading it: a folder whose outputs are all finished needs no engine)."""
    from alignvar_edge.model.checkpoint import is_checkpoint
    if is_checkpoint(engine):
        from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir
        return int(load_config(resolve_checkpoint_dir(engine)).scale)
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.runtimes.base import config_from_manifest
    return int(config_from_manifest(read_manifest(engine)).scale)


def _require_option(engine: str, backend: str, option: str, what: str) -> None:
    """A backend-specific flag on an engine whose backend lacks it: one line, before any work (the
    backend's own list of load options decides, in CLI terms)."""
    from alignvar_edge import runtimes
    name = runtimes.detect_backend(engine) if backend == "auto" else backend
    if option not in runtimes.get_backend(name).load_options:
        raise InputError(f"{what}; {engine} runs on {name}")


# the engines --no-cuda-graphs changes: any other would run as it does without it
NO_CUDA_GRAPHS = "--no-cuda-graphs applies to torch engines on a CUDA device only"


def _require_cuda_device(engine: str, backend: str, device: str | None) -> None:
    """--no-cuda-graphs on an engine that replays no CUDA graph (another backend, torch on the CPU):
    one line, before any work."""
    _require_option(engine, backend, "cuda_graphs", NO_CUDA_GRAPHS)
    from alignvar_edge.runtimes.torch_backend import BACKEND as TORCH
    runs_on = TORCH.runs_on(engine, device)
    if not runs_on.startswith("cuda"):
        raise InputError(f"{NO_CUDA_GRAPHS}; {engine} runs on torch on {runs_on} here: drop --no-cuda-graphs, "
                         "or pass --device cuda on a machine with a CUDA GPU")


def _quality_arg(text: str) -> int | str:
    from alignvar_edge.images import quality_setting       # the rule is the image writer's
    try:
        return quality_setting(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("quality ")) from None


def _check_quality(quality: int | str | None, jobs: list[tuple[Path, Path]], output: str) -> None:
    """--quality that no output of the run takes, refused before any work (a folder's outputs keep
    their inputs' formats: it applies to those that are JPEG or WebP)."""
    from alignvar_edge.images import check_quality, output_format
    if quality is not None and jobs:
        check_quality(quality, {output_format(d) for _, d in jobs},
                      str(jobs[0][1]) if len(jobs) == 1 else f"the outputs in {output}", "--quality")


def run_upscale(args: argparse.Namespace) -> int:
    from alignvar_edge import runtimes
    from alignvar_edge.images import QUALITY_FORMATS, FormatCannotHold, output_format, result_path, save_image
    from alignvar_edge.images.arrays import unit_floats
    from alignvar_edge.images.read import file_samples, load_image_for_upscale
    from alignvar_edge.images.write import written_bits
    from alignvar_edge.images.transparency import fill_transparent
    from alignvar_edge.runtimes.tiling import (check_overlap_flag, count_tiles, overlap_cost,
                                               tiles_per_call, upscale_plane_bicubic)
    from alignvar_edge.outputs import OutputClaims
    folder = Path(args.input).is_dir()
    output = Path(args.output)
    if args.output.endswith(("/", os.sep)) and Path(args.input).is_file():
        output = result_path(output / Path(args.input).name)   # `upscale a.png out/`: into that folder
    jobs, existing, left_out = plan_jobs(Path(args.input), output, args.force)
    runtimes.check_backend(args.engine, args.backend)      # before any work
    for line in left_out:
        progress.note(line)
    # what makes this run's results, read from the engine's files once, where first needed
    made_by = functools.cache(lambda: _made_by(args))
    # a folder run's record of what made each output (a file run keeps none)
    record = FolderRecord(output, made_by, args.strip_metadata) if folder else None
    redone = _finished(existing, args.engine, args.output, args.force, record) if record and existing else []
    jobs += redone
    replaced = {dst for _, dst in redone}       # results of an input's earlier content: written over
    finished_before = len(existing) - len(redone) if not args.force else 0
    _check_quality(args.quality, jobs, args.output)
    tally = FolderTally(len(jobs), force=args.force)
    if folder:          # what a stop or a failure of a folder run keeps, counted when it comes
        args.on_interrupt, args.on_failure = tally.stopped, tally.failed
    if not jobs:
        progress.note(f"nothing to do: every output in {args.output} exists")
        return 0
    check_thread_count(args.threads, "--threads")         # as load would, named by its flag
    opts: dict[str, Any] = {"threads": args.threads} if args.threads else {}
    if args.hint:
        _require_option(args.engine, args.backend, "hint", "--hint applies to OpenVINO engines")
        opts["hint"] = args.hint
    if not args.cuda_graphs:
        _require_cuda_device(args.engine, args.backend, args.device)
        opts["cuda_graphs"] = False
    opts.update(cache_dir_option(args, args.engine, args.backend))
    limit = args.max_megapixels
    with runtimes.load(args.engine, backend=args.backend, device=args.device, **opts) as engine:
        caution = unverified_caution(args.engine)       # its precision and model are its manifest's word only
        if caution:
            progress.note(f"caution: {args.engine}: {caution}")
        # the tile is the engine's: known only once it is open, still before any work
        check_overlap_flag(args.overlap, engine.tile_size, "this engine's")
        bar = _progress(len(jobs), args.quiet)
        t0 = time.perf_counter()
        # (src, dst, alpha, bits, metadata, the input's SHA-256 for the record): read, not saved
        loaded: list[tuple[Path, Path, Any, int, Any, Hashed | None]] = []
        costly_overlap: list[str] = []                  # said once a run, at the first image it slows
        paces: list[_ImagePace] = []                    # by the index upscale_many gives each image
        claims = OutputClaims()                         # a folder run's images that another run must not start

        def drop(dst: Path) -> None:
            claims.release(dst)
            tally.drop(dst)

        def images() -> Any:
            for i, (src, dst) in enumerate(jobs):
                # hashed before it is read: an input changed meanwhile leaves a record that no rerun matches
                digest = input_digest(src) if folder else None
                try:
                    # the file's layout is kept, and its colours, EXIF and print size; with
                    # --strip-metadata its colours and print size alone, the rest not even parsed
                    stripped_for = output_format(dst) if args.strip_metadata else None
                    rgb, alpha, (gray, bits), meta = load_image_for_upscale(src, limit, engine.scale, stripped_for,
                                                                            made_by())
                    # e.g. alpha to .jpg, a WebP wider than it holds, a TIFF past 4 GiB: refused before the work
                    # a folder run's output takes its input's format: the advice names the command that chooses
                    output_format(dst, alpha is not None, (rgb.shape[1] * engine.scale, rgb.shape[0] * engine.scale),
                                  gray=gray, bits=bits, from_input=src if folder else None,
                                  engine=None if args.engine == DEFAULT_CHECKPOINT else args.engine)
                except InputError as e:
                    if not folder:
                        raise
                    # the user followed the advice: the output in a format that holds it is the result
                    if isinstance(e, FormatCannotHold) and (done := next(filter(os.path.exists, e.advised), None)):
                        progress.note(f"{line_text(src)}: done as {line_text(done)}, its format holds the result")
                        continue
                    tally.unusable.append((src, str(e)))
                    progress.note(f"skipping: {e}")
                    continue
                # claimed once it is known to be usable (an unusable one makes no output folder), before
                # its work: where another live run is working on it, that run does it
                if folder and not claims.take(dst):
                    if (why := claims.unclaimable_why(dst)) is None:
                        tally.left.append(dst)              # another live run is working on it
                    else:                                   # nothing clears it by itself: an input not done
                        tally.unusable.append((src, why))
                        progress.note(f"skipping: {src}: {why}")
                    continue
                tally.working.add(dst)
                if record and not args.force and record.finished_by_another_run((src, dst), digest):
                    drop(dst)
                    tally.taken.append(dst)
                    progress.note(f"skipping: {dst} was written by another run meanwhile; kept that one")
                    continue
                if args.overlap is not None and not costly_overlap and (
                        cost := overlap_cost(rgb.shape[:2], engine.tile_size, args.overlap)):
                    costly_overlap.append(cost)
                    progress.note(f"{src}: {cost}")
                # under the input folder: cam1/DSC0001.png and cam2/DSC0001.png told apart
                label = f"{line_text(src.relative_to(args.input) if folder else src.name)} ({i + 1}/{len(jobs)})"
                bar.set_description(label)
                tiles = count_tiles(rgb.shape[:2], engine.tile_size, args.overlap)
                paces.append(_ImagePace(label, rgb.shape[:2], engine.scale, tiles, tiles_per_call(engine), args.quiet))
                loaded.append((src, dst, alpha, bits, meta, digest))
                if alpha is not None and not args.alpha_is_data:
                    rgb = fill_transparent(rgb, alpha)      # the engine gets the RGB alone: as Engine.upscale fills it
                # the file's own samples: the result is made in their dtype, not held whole as float32
                # (12x an 8-bit result); floats where the output keeps fewer bits than the file, so
                # that their result is rounded once, as it always was
                kept = written_bits(dst, bits, gray, alpha is not None) == bits
                samples = file_samples(rgb, bits) if kept else unit_floats(rgb)
                del rgb                 # a paused generator's locals stay alive: not the floats beside the samples
                yield samples
        # small images share the engine's calls (Engine.upscale_many); each is saved when final
        # max_megapixels=None: load_image applied the limit to each file already
        # every claim still held is given up however the loop ends, and the record saved
        with claims, record or contextlib.nullcontext():
            for out in engine.upscale_many(images(), overlap=args.overlap, progress=_tile_ticker(bar, paces),
                                           color_fix=args.color_fix, max_megapixels=None):
                src, dst, alpha, bits, meta, digest = loaded.pop(0)
                big_alpha = upscale_plane_bicubic(alpha, engine.scale) if alpha is not None else None
                dst.parent.mkdir(parents=True, exist_ok=True)
                quality = args.quality if output_format(dst) in QUALITY_FORMATS else None   # a folder's PNGs: none
                try:
                    save_image(dst, out, big_alpha, overwrite=args.force or dst in replaced, input_path=src,
                               bits=bits, quality=quality, **meta)
                    tally.written += 1
                    if record:
                        record.published((src, dst), digest)
                except OutputExistsError:
                    # the last guard, where no claim could be taken (no flock): a second `upscale` into
                    # the same folder finished it first, so it is that run's result, as on a rerun
                    if not folder:
                        raise
                    drop(dst)
                    tally.taken.append(dst)
                    progress.note(f"skipping: {dst} was written by another run meanwhile; kept that one")
                claims.release(dst)
                del out, big_alpha          # saved: not held while the next file is read
        bar.close()
    others = f" ({len(tally.taken)} written by another run meanwhile)" if tally.taken else ""
    # a file's result by its name, which `upscale a.png out/` chose
    written = args.output if folder else str(jobs[0][1])
    progress.note(f"upscaled {tally.written} image(s){others} x{engine.scale} with {engine.backend} "
                  f"({engine.device}) in {time.perf_counter() - t0:.1f} s -> {written}")
    if tally.left:
        progress.note(f"left {len(tally.left)} image(s) to another run that was working on them "
                      f"({first_names([str(dst) for dst in tally.left])}); once it has ended, the same command "
                      "again does any it did not finish")
    tally.check_all_used(finished_before)
    return 0


def _made_by(args: argparse.Namespace) -> str:
    """What makes `upscale`'s results beside their inputs, as text with no path or date: the
    engine --engine names (backend, precision, model, the SHA-256s of its weights and files, read
    from its manifest or checkpoint without loading it) and the options that change the pixels
    written. A result's XMP InstanceID is derived from it and the input's content: the same command
    writes the same bytes, another engine or option another ID; a folder run's record keeps it to
    tell a rerun which outputs another engine or option made (`FolderRecord`)."""
    from alignvar_edge import runtimes
    from alignvar_edge.model.checkpoint import is_checkpoint
    from alignvar_edge.recipes import backend_name
    if is_checkpoint(args.engine):      # torch opens it as it is, at its default precision
        from alignvar_edge.model.checkpoint import checkpoint_source, load_config, resolve_checkpoint_dir
        engine = {"backend": "torch", "precision": default_precision("torch"),
                  "model": load_config(resolve_checkpoint_dir(args.engine)).name, "weights": None,
                  "checkpoint": dict(checkpoint_source(args.engine).sha256), "files": {}}
    else:
        from alignvar_edge.manifest import read_manifest
        m = read_manifest(args.engine)
        backend = runtimes.detect_backend(args.engine) if args.backend == "auto" else backend_name(args.backend)
        engine = {"backend": backend, "precision": m.precision, "model": m.model.display_name,
                  "weights": m.model.weights_sha256, "checkpoint": dict(m.source.sha256), "files": m.files}
    return json.dumps({**engine, "overlap": args.overlap, "color_fix": args.color_fix,
                       "alpha_is_data": args.alpha_is_data, "quality": args.quality}, sort_keys=True)


def _progress(n_images: int, quiet: bool) -> Any:
    # on a terminal only (a log gets the summary line), like every other bar
    return progress.bar(total=n_images, unit="img", leave=True, disable=True if quiet else None,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")


def _tile_ticker(bar: Any, paces: list[_ImagePace]) -> Any:
    def tick(index: int, done: int, total: int) -> None:
        bar.n = index + done / total         # fractional progress within the image
        bar.refresh()
        paces[index].update(done)
    return tick


BIG_IMAGE_TILES = 2_000     # an image of this many tiles or more is announced before its work ...
ESTIMATE_AFTER_CALLS = 8    # ... and timed over this many calls after its first (which may warm up)


class _ImagePace:
    """What one image's upscale takes. Said before its work where it is big (BIG_IMAGE_TILES) or where
    stderr is a log (the bar's line there): its size in and out, tiles and engine calls; for a big
    one, the time per call measured on its first calls and what the image will take at that pace;
    in a log, how far it has got at most every progress.LOG_EVERY_S. A 24 MP photograph is about
    167,000 tiles: an hour on a small CPU, which a bar's first ETA did not tell."""

    def __init__(self, label: str, size_hw: tuple[int, int], scale: int, tiles: int, per_call: int,
                 quiet: bool) -> None:
        self.label, self.tiles, self.per_call = label, tiles, per_call
        self.calls = math.ceil(tiles / per_call)
        big = tiles >= BIG_IMAGE_TILES
        self.estimate = big and not quiet
        self.pace = progress.Pace(label, tiles, "tiles", log=progress.in_log() and not quiet)
        self.first_call_s: float | None = None     # when the first call's tiles were all in
        if big or self.pace.log:
            h, w = size_hw
            progress.note(f"{label}: {w}x{h} -> {w * scale}x{h * scale} ({w * h * scale * scale / 1e6:.3g} MP), "
                          f"{tiles:,} tiles in {self.calls:,} calls")

    def update(self, done: int) -> None:
        if done % self.per_call and done < self.tiles:
            return                  # a call's tiles are blended one by one: act once its last is in
        self.pace.update(done)
        calls = math.ceil(done / self.per_call)
        if not self.estimate or calls >= self.calls:
            return
        now = time.monotonic()
        if calls == 1:
            self.first_call_s = now
        elif calls == 1 + ESTIMATE_AFTER_CALLS and self.first_call_s is not None:
            per_call = (now - self.first_call_s) / ESTIMATE_AFTER_CALLS
            total = self.first_call_s - self.pace.t0 + per_call * (self.calls - 1)
            progress.note(f"{self.label}: {per_call:.2f} s per call (calls 2 to {calls}): about "
                          f"{progress.duration(total)} for its {self.calls:,} calls, "
                          f"{progress.duration(total - (now - self.pace.t0))} left")


# ------------------------------------------------------------------------------------------------
def _compare_images(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """(name, centre crop) of each image compared, and (name, reason) of each file of --images
    that could not be read: those are skipped and named, as every folder run does."""
    skipped: list[tuple[str, str]] = []
    if args.images:
        from alignvar_edge.images.folders import usable_images
        # read only what is compared: --limit counts usable images; no --max-megapixels (None, as
        # check_megapixels_flag tells a flag given from none): the default
        imgs, skipped = usable_images(args.images, "--images", args.limit,
                                      args.max_megapixels or DEFAULT_MAX_MEGAPIXELS)
    else:
        from alignvar_edge.samples import sample_images
        imgs = sample_images("heldout")[:args.limit or None]
    out = []
    for name, img in imgs:
        h, w = img.shape[:2]
        ch, cw = min(h, args.max_size), min(w, args.max_size)
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append((name, img[y:y + ch, x:x + cw]))
    return out, skipped


def _reference_source(args: argparse.Namespace, engines: list[tuple[str, Manifest]]) -> str:
    """The checkpoint compare's reference runs: --reference (compare_engines warns where an engine
    records other weights), else the one the engines' manifests name and whose files they record."""
    from alignvar_edge.runtimes.artifacts import gone_checkpoint, redacted_reference, source_checkpoint
    if args.reference:
        from alignvar_edge.model.checkpoint import is_checkpoint
        if Path(args.reference).exists() and not is_checkpoint(args.reference):
            raise InputError(f"--reference {args.reference} is not a model checkpoint: --reference takes the "
                             "checkpoint the PyTorch reference runs (a bundled name such as "
                             f"{DEFAULT_CHECKPOINT}, or a checkpoint folder); leave it out to take the one the "
                             "engines' manifests name")
        return str(args.reference)
    from alignvar_edge.errors import ArtifactError
    gone: list[Any] = []
    for _, m in engines:
        ref = source_checkpoint(m, gone=gone)
        if ref is not None:
            return str(ref)
    if gone:            # none is where it was recorded: say so where one was
        raise gone_checkpoint(gone[0], "the engines", "pass --reference CHECKPOINT_DIR, that checkpoint where it is now")
    redacted = redacted_reference(engines)
    raise ArtifactError("the engines' manifests do not name the checkpoint they came from"
                        + (f": {redacted}" if redacted else "; pass --reference CHECKPOINT_DIR"))


def _runtime_versions(backends: Iterable[str]) -> dict[str, str]:
    """{distribution: version} of the runtimes that ran, as each backend reads its own version: a
    TensorRT of JetPack has no pip metadata, ONNX Runtime may be installed as onnxruntime-gpu."""
    from alignvar_edge import runtimes
    found = {b.distribution or b.module: b.version() for b in map(runtimes.get_backend, sorted(set(backends)))}
    return {name: v for name, v in sorted(found.items()) if v}


def run_compare(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from alignvar_edge.images.folders import check_megapixels_flag
    from alignvar_edge import runtimes
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.compare import EngineResult, compare_engines, format_summary, format_table
    from alignvar_edge.runtimes.torch_backend import torch_record
    engines = []
    absent: dict[int, tuple[EngineResult, Manifest]] = {}     # position -> engines that cannot open here
    names = [Path(e).name for e in args.engines]
    # an engine is named by its folder, or by the path given where two folders share a name
    # (runs/a/int8 and runs/b/int8 would otherwise be two rows called int8)
    labels = [e if names.count(n) > 1 else n for e, n in zip(args.engines, names)]
    # a failed run replaces an earlier --json FILE with an ERROR: its results are no longer current
    with no_stale_result(args.json, {"compare": list(args.engines)}) as result, ExitStack() as opened:
        check_megapixels_flag(args.images, args.max_megapixels)     # a refusal too prints its ERROR document
        for i, (e, label) in enumerate(zip(args.engines, labels)):
            try:
                engine = runtimes.load(e)
            except BackendUnavailableError as err:    # a GPU / NPU / TensorRT engine: the others still compare
                m = load_verified(e)
                absent[i] = (EngineResult(label, str(m.backend), str(m.precision),
                                          str(m.extra.get("device") or "-"), unavailable=str(err)), m)
                continue
            opened.callback(engine.close)
            runs_here, why = runtimes.get_backend(engine.backend).is_available()
            if not runs_here:     # it loads, cannot run here (Core ML off macOS): no figures, no reference
                progress.note(f"not comparing {label} here: {why}")
                absent[i] = (EngineResult(label, engine.backend, str(engine.metadata.precision), str(engine.device),
                                          unavailable=why), engine.metadata)
                continue
            engines.append((label, engine))
        reference = _reference_source(args, [(label, e.metadata) for label, e in engines]
                                      + [(r.engine, m) for r, m in absent.values()])
        # the model as each engine runs it: with VARSR's refiner, or without it (--no-refine exports)
        refs = [runtimes.load(reference, backend="torch", refine=refine)
                for refine in sorted({e.refines for _, e in engines}, reverse=True)]
        for ref in refs:
            opened.callback(ref.close)
        images, skipped = _compare_images(args)
        ran = iter(compare_engines(engines, refs, images, progress=progress.note) if engines else [])
        results = [absent[i][0] if i in absent else next(ran) for i in range(len(args.engines))]
        text = "\n".join([format_table(results)] + [format_summary(r) for r in results])
        record = torch_record()
        record["tools"].update(_runtime_versions(e.backend for _, e in engines))
        result.emit({"reference": reference, "images": [name for name, _ in images],
                     "skipped": [{"file": name, "reason": why} for name, why in skipped],
                     "engines": [r.to_json() for r in results], **record}, text)
    # an engine asked for that could not run here: nothing was checked for it
    return BackendUnavailableError.exit_code if any(r.unavailable for r in results) else 0


# ------------------------------------------------------------------------------------------------
def run_doctor(args: argparse.Namespace) -> int:
    from alignvar_edge import __version__, runtimes
    from alignvar_edge.cpuinfo import host_info
    with no_stale_result(args.json, {"doctor": True}) as result:
        infos = runtimes.available_backends()
        host = host_info()
        result.emit({"alignvar_edge": __version__, "host": host, "backends": [vars(i) for i in infos]},
                    _doctor_text(infos, host))
    return 0


def _doctor_text(infos: list[BackendInfo], host: dict[str, Any]) -> str:
    from alignvar_edge import __version__
    from alignvar_edge.cpuinfo import host_line
    lines = [f"alignvar-edge {__version__} on {host_line(host)}"]
    w = max(len(i.name) for i in infos)
    for i in infos:
        ver = i.version or "not installed"
        if i.available:
            lines.append(f"  {i.name:<{w}}  ok    {ver:<14} devices: {', '.join(i.devices)}")
        else:
            lines.append(f"  {i.name:<{w}}  no    {ver:<14} {i.reason}")
    feats = host["isa_features"]
    lines.append("ISA: " + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in feats.items())
                 + (" -> OpenVINO CPU computes bf16 by default here; our engines set their own: a plain build "
                    "uses bf16 only where the tokens hold (the token path kept f32 if needed), --precision fp32 "
                    "stays f32"
                    if feats.get("AMX") or feats.get("AVX512-BF16") else ""))
    return "\n".join(lines)


def run_adopt(args: argparse.Namespace) -> int:
    from alignvar_edge.manifest import db_text, parity_figures, read_manifest
    from alignvar_edge.runtimes.tensorrt.adopt import adopt
    out = adopt(args.engine, args.like, args.out, log=args.log, precision=args.precision,
                dla_core=args.dla_core, force=args.force)
    m = read_manifest(out)
    ex, par = m.extra, parity_figures(m.parity)
    print(f"adopted {args.engine} as {out}: TensorRT {ex['tensorrt_version']}, {ex.get('gpu_name')} "
          f"(compute capability {ex['compute_capability']}), {m.precision}"
          + (f", DLA core {ex['dla_core']}" if ex.get("dla_core") is not None else ""))
    print(f"parity vs golden: {par.tokens_pct} tokens, {db_text(par.psnr_db)} dB" if par else ex["adopted"]["unchecked"])
    return 0


def run_selftest(args: argparse.Namespace) -> int:
    from alignvar_edge.runtimes.selftest import format_report, selftest, selftest_engine
    graphs = None if args.cuda_graphs else False
    model = args.model or DEFAULT_CHECKPOINT
    what = {"engine": str(args.engine)} if args.engine else {"backend": args.backend, "model": model}
    with no_stale_result(args.json, what) as result:
        target, backend = (args.engine, "auto") if args.engine else (model, args.backend)
        if graphs is False:
            _require_cuda_device(target, backend, args.device)
        if args.threads:
            from alignvar_edge import runtimes
            _require_option(target, backend, "threads", "--threads applies to engines whose backend takes a "
                            f"thread count ({', '.join(runtimes.backends_taking('threads'))})")
            from alignvar_edge.bench.host import run_threads
            from alignvar_edge.cpuinfo import cpu_info
            run_threads(args.threads, {"cpu": cpu_info()})        # more threads than cores: refused
        cache = cache_dir_option(args, target, backend)
        if args.engine:
            # an engine carries its own model (its golden outputs) and precision: neither is chosen here
            given = [flag for flag, value in (("--precision", args.precision), ("--model", args.model)) if value]
            if given:
                raise InputError(f"{' and '.join(given)} {'goes' if len(given) == 1 else 'go'} with --backend; "
                                 "an --engine was built from its own model, at its own precision")
            report = selftest_engine(args.engine, device=args.device, runs=args.runs, log=progress.note, cuda_graphs=graphs,
                                     threads=args.threads, **cache)
        else:
            report = selftest(args.backend, model=model, device=args.device, precision=args.precision,
                              runs=args.runs, log=progress.note, cuda_graphs=graphs, threads=args.threads, **cache)
        result.emit(report, format_report(report))
    # BUILT-ONLY: built and validated, but nothing ran here, so nothing was checked
    return {"PASS": 0, "BUILT-ONLY": BackendUnavailableError.exit_code}.get(report["result"], 1)
