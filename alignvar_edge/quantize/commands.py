"""CLI verb `quantize`: INT8 / FP16 from an fp32 export, with a token-fidelity target."""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from alignvar_edge.argtypes import MAX_TILES, fraction, nonneg_float, percent, random_seed, tile_count
from alignvar_edge.caller import WarningFilter, option, warnings_changed
from alignvar_edge.manifest import db_text, listed_bytes
from alignvar_edge.name_text import shell_word
from alignvar_edge.progress import bar, note
from alignvar_edge.recipes import (DEFAULT_MIN_TOKENS, QDQ_KINDS, qdq_kind, qdq_targets, quantize_precisions,
                                   quantize_targets, quantized_in_build)
from alignvar_edge.quantize.records import drop_text, float_lines, target_words

if TYPE_CHECKING:
    from alignvar_edge.manifest import Manifest


def _own_quantizers() -> list[str]:
    """The targets that quantize in their own build (NNCF, coremltools), not in our ONNX pass."""
    return [t for t in quantize_targets() if quantized_in_build(t)]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from alignvar_edge.quantize.calibration.ranges import METHODS
    from alignvar_edge.quantize.calibration.sets import DEFAULT_TILES, DEFAULT_VALIDATION_TILES

    p = sub.add_parser(
        "quantize", help="INT8 / FP16 artifacts that keep the tokens (calibration + fidelity search)",
        description="Quantize an fp32 ONNX export. int8: explicit Q/DQ calibrated on LR tiles degraded "
                    "like the training data; module groups return to float until the validation split "
                    "meets the token-agreement and PSNR-Y targets against the fp32 engine. fp16: half-"
                    f"precision tensors, fp32 I/O. {'/'.join(_own_quantizers())} targets go to their backends.")
    p.add_argument("artifact", metavar="DIR", help="fp32 export directory (alignvar-edge export)")
    p.add_argument("--calib", metavar="builtin|FOLDER",
                   help="calibration photographs: the bundled sample set or a folder (default: builtin)")
    p.add_argument("--precision", choices=quantize_precisions(), default="int8",
                   help="int8: calibrated, with the fidelity search; fp16: half-precision tensors (default %(default)s)")
    p.add_argument("--target", choices=quantize_targets(), default="onnxruntime",
                   help="the backend that builds the result (default %(default)s). "
                        + "; ".join(f"{t}: {QDQ_KINDS[str(qdq_kind(t))]}" for t in qdq_targets()))
    # the flags only some passes read default to None here, so that one typed at its default value
    # is still known as given (and refused where it is not read: QuantizeOptions.given)
    p.add_argument("--method", choices=METHODS, help="activation range statistic (default minmax)")
    p.add_argument("--percentile", type=percent, help="for --method percentile (default 99.99)")
    p.add_argument("--min-token-agreement", type=fraction,
                   help=f"fraction of tokens equal to the fp32 engine's (default {DEFAULT_MIN_TOKENS:g})")
    p.add_argument("--max-psnr-drop", type=nonneg_float,
                   help="PSNR-Y loss vs HR relative to the fp32 engine, dB, judged as printed: to "
                        "0.0001 dB (default 0.1)")
    p.add_argument("--tiles", type=tile_count,
                   help=f"calibration tiles (default {DEFAULT_TILES}, at most {MAX_TILES})")
    p.add_argument("--val-tiles", type=tile_count,
                   help=f"validation tiles (default {DEFAULT_VALIDATION_TILES}, at most {MAX_TILES})")
    p.add_argument("--seed", type=random_seed, help="picks the calibration and validation tiles (default 0)")
    p.add_argument("--no-search", action="store_true",
                   help="no mixed-precision search: write the policy's graph even if it misses the target")
    rr = p.add_mutually_exclusive_group()
    rr.add_argument("--reduce-range", dest="reduce_range", action="store_true", default=None,
                    help="7-bit weights (default: on for x86 CPUs without VNNI, "
                         f"{' and '.join(t for t in qdq_targets() if qdq_kind(t) == 'asymmetric')} target)")
    rr.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                    help="8-bit weights, also where --reduce-range is the default")
    p.add_argument("--float-copy-weights", choices=("int8", "fp32"),
                   help="weights that int8 nodes share with nodes kept float: read dequantized from the one "
                        "int8 copy (int8, smallest; the default) or stored again in fp32 (larger, no run-time "
                        "dequantize)")
    p.add_argument("--out", help="output directory (default: DIR-PRECISION-TARGET)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    # calibration runs the export's graph a whole batch of tiles at a time, every tensor it measures an output
    p.set_defaults(func=run_quantize, stdout_is_a_summary=True,
                   memory_advice=lambda: f"quantize an export made with a smaller {option('batch')}")


# flags whose argparse default is None (given when not None) -> the QuantizeOptions attribute they set
_OPTIONAL_FLAGS = {"calib": "calib", "tiles": "tiles", "seed": "seed", "method": "method", "percentile": "percentile",
                   "val_tiles": "val_tiles",
                   "float_copy_weights": "float_copy_weights", "reduce_range": "reduce_range",
                   "min_token_agreement": "fidelity", "max_psnr_drop": "fidelity"}


def run_quantize(args: argparse.Namespace) -> int:
    # verbs import their machinery when run: `--help` stays fast, and on a device install a host verb
    # is listed and says in one line what it needs
    from alignvar_edge import runtimes
    from alignvar_edge.manifest import load_verified, read_manifest
    from alignvar_edge.outputs import check_out
    from alignvar_edge.quantize.artifact import QuantizeOptions, calibration_for, quantize_artifact
    from alignvar_edge.quantize.sensitivity import FidelityTarget
    from alignvar_edge.recipes import BACKEND, engine_precision, quantize_out, quantized_in_build, recipe
    from alignvar_edge.runtimes.commands import engine_warnings

    out = args.out or quantize_out(str(args.artifact), args.precision, args.target)
    d = QuantizeOptions()
    # QuantizeOptions' attributes the user typed: both fidelity flags set its `fidelity`
    given = {_OPTIONAL_FLAGS[name] for name in _OPTIONAL_FLAGS if getattr(args, name) is not None}
    typed = lambda name, default: default if getattr(args, name) is None else getattr(args, name)  # noqa: E731
    opts = QuantizeOptions(
        precision=args.precision, target=args.target, method=typed("method", d.method),
        percentile=typed("percentile", d.percentile), calib=typed("calib", d.calib), tiles=typed("tiles", d.tiles),
        val_tiles=typed("val_tiles", d.val_tiles), seed=typed("seed", d.seed),
        fidelity=FidelityTarget(typed("min_token_agreement", d.fidelity.min_token_agreement),
                                typed("max_psnr_drop", d.fidelity.max_psnr_drop)),
        search=not args.no_search, reduce_range=args.reduce_range,
        float_copy_weights=typed("float_copy_weights", d.float_copy_weights), given=frozenset(given))
    opts.validate()                 # before any work, also where no calibration set is made (coreml)
    say = note
    # skipped calibration files are reported in the log line, not again as a warning; the
    # few-images warning has no log line and must reach the user
    with warnings_changed(WarningFilter("ignore", message="calibration: skipped")):
        if quantized_in_build(opts.target):        # NNCF / coremltools quantize inside the backend's build
            precision = engine_precision(opts.target, opts.precision) or opts.precision
            # --out refused before the calibration set is made and logged (one line per error)
            load_verified(args.artifact)
            check_out(out, args.force, source=args.artifact)
            if opts.reads_calibration:
                cs = calibration_for(args.artifact, opts, say)
                say(f"the {opts.target} build judges its engine on its own held-out tiles, not on the validation "
                    "split: those images are set aside so that the calibration tiles (and the set's hash) are "
                    "the ones `quantize --target onnxruntime` picks from the same --calib, --tiles and --seed")
            else:
                cs = None
                # Core ML's int8 compresses weights alone; its fp16 computes in fp16
                weights = recipe(opts.target, precision).quantizer == BACKEND
                say(f"{opts.target} {precision} {'compresses weights only: it ' if weights else ''}"
                    "needs no calibration set")
            say(f"handing over to the {opts.target} backend ({precision})")
            path = runtimes.build(args.artifact, opts.target, precision=precision, calibration=cs, out=out,
                                  force=args.force)
            for line in engine_warnings(read_manifest(path)):      # as `build` says them
                say(line)
        else:
            path = quantize_artifact(args.artifact, out, opts, force=args.force, log=say, progress=bar)
    say(f"recorded in {path}/manifest.json (quantization, calibration, parity); "
        f"`alignvar-edge inspect {shell_word(path)}` shows them")
    print(fidelity_table(read_manifest(path), path))
    print(path)
    return 0


def _fig(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


_COLUMNS = (f"{'graph':22s} {'tokens':>8s} {'same tiles':>10s} {'PSNR-Y/HR':>10s} {'drop dB':>8s} "
            f"{'vs fp32':>8s} {'MB':>7s}")


def _row(name: str, tok: float | None, same: float | None, p_hr: Any, drop: float | None, vs: Any,
         nbytes: int | None) -> str:
    """One graph's line; a figure its check did not measure (or a graph not written: no MB) shows '–'."""
    return (f"{name:22s} {_fig(tok, '.2%'):>8s} {_fig(same, '.0%'):>10s} {db_text(p_hr, 2):>10s} "
            f"{'–' if drop is None else drop_text(drop):>8s} {db_text(vs, 2):>8s} "
            f"{_fig(nbytes / 1e6 if nbytes else None, '.2f'):>7s}")


def fidelity_table(m: Manifest, root: str | os.PathLike[str] | None = None) -> str:
    """The end-of-run table, fp32 vs what was written, for every target: our ONNX pass's validation
    split, or the build-time check of an engine its backend quantized (openvino, coreml), whose
    size is its files' in `root` (the engine directory)."""
    if m.kind != "engine":
        return _onnx_table(m)
    return _engine_table(m, None if root is None else listed_bytes(root, m))


def _onnx_table(m: Manifest) -> str:
    """fp32 vs the policy graph vs the written graph, on the validation split."""
    q = m.quantization or {}
    par = m.parity or {}
    val, init = par.get("validation", {}), par.get("initial_validation", {})
    size = m.extra.get("bytes", {})
    rows = [("fp32 engine", 1.0, 1.0, val.get("psnr_y_hr_fp32"), 0.0, "inf", size.get("fp32"))]
    prec = m.precision
    # where the search returned groups to float, the graph it started from: what the search bought
    start = ("policy only" if q.get("format") == "onnx-qdq" and q.get("float_by_search") else
             "every group half" if q.get("format") == "onnx-fp16" and (q.get("half_policy") or {}).get("f32_groups")
             else None)
    if start:
        rows.append((f"{prec}, {start}", init.get("token_agreement"), init.get("identical_samples"),
                     init.get("psnr_y_hr"), init.get("psnr_drop"), init.get("psnr_y_vs_fp32"), None))
    rows.append((f"{prec} (written)", val.get("token_agreement"), val.get("identical_samples"),
                 val.get("psnr_y_hr"), val.get("psnr_drop"), val.get("psnr_y_vs_fp32"), size.get(prec)))
    lines = [f"validation split: {val.get('tiles')} tiles; target: {target_words(q.get('target'))}: "
             f"{'met' if par.get('target_met') else 'NOT met'}",
             _COLUMNS, *(_row(*r) for r in rows)]
    if q.get("format") == "onnx-qdq":
        lines += float_lines(q)
    elif q.get("format") == "onnx-fp16":
        per_group = (q.get("half_policy") or {}).get("per_group") or {}
        lines.append(f"compute precision per group: {', '.join(f'{g} {v}' for g, v in per_group.items())}; "
                     f"f32 ops: {', '.join(q.get('keep_fp32_ops', []))}")
    return "\n".join(lines)


def _engine_table(m: Manifest, nbytes: int | None) -> str:
    """fp32 vs the engine, from its build-time check: tokens and PSNR-Y against the fp32 reference
    (the check has no HR image, so no PSNR-Y/HR or drop), then the rungs its build tried."""
    from alignvar_edge.export.inspect_artifact import tried_rungs
    par = m.parity or {}
    tokens = par.get("tokens") or {}
    if not tokens:      # an engine for a device this host lacks, or a Core ML palette (no proxy)
        return (f"{m.backend} {m.precision}: no fidelity check ran at build time; run "
                "`alignvar-edge selftest --engine DIR` where the engine runs")
    lines = [f"build-time check: {par.get('tiles')} tiles vs {par.get('reference', 'the fp32 reference')}",
             _COLUMNS, _row("fp32 engine", 1.0, 1.0, None, 0.0, "inf", None),
             _row(f"{m.precision} (written)", tokens.get("overall"), tokens.get("identical_samples"), None, None,
                  par.get("psnr_y_db"), nbytes)]
    return "\n".join(lines + [f"tried {t}" for t in tried_rungs(m)])
