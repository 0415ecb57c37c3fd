"""CLI verbs `bench` (and `bench merge`) and `deploy` (registered by alignvar_edge.cli)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from alignvar_edge.argtypes import (MAX_TILES, batch_size, fraction, nonneg_int, positive_float, positive_int, random_seed,
                                 tile_count)
from alignvar_edge.bench.image import FOLDER_LR, IMAGE_LR, IMAGE_RUNS
from alignvar_edge.errors import AlignVAREdgeError, InputError, OutputExistsError
from alignvar_edge.extras import is_installed
from alignvar_edge.model.bundled import CHECKPOINT_HELP
from alignvar_edge.name_text import shell_word
from alignvar_edge.progress import bar, note
from alignvar_edge import recipes
from alignvar_edge.recipes import DEFAULT_MIN_TOKENS, DEPLOY_DEFAULT, deploy_precisions, deploy_targets
from alignvar_edge.runtimes.commands import add_cache_dir_option, cache_dir_scope


def _engine_help() -> str:
    """ENGINE's help, naming the backends the recipe table lists."""
    return ("[LABEL=][BACKEND[@DEVICE][+MODE]:]PATH or 'bicubic': an ONNX export, a built engine "
            f"dir or a checkpoint (backend from its manifest unless given: {', '.join(recipes.BACKENDS)}). "
            "openvino+throughput opens OpenVINO with its throughput hint: whole "
            "images run their tile batches as asynchronous requests on parallel streams (with "
            "--threads N, N streams of one thread). torch+eager runs the torch engine on a CUDA device "
            "without replaying each call as one CUDA graph (torch@cuda+eager:PATH). "
            "PyTorch eager and bicubic baselines are always included. "
            "`bench merge A.json B.json ...` merges reports instead (its flags: --out, --md, --plot, --force).")


# the flags `bench merge` reads
MERGE_FLAGS = ("out", "md", "plot", "force")
# the flags the device bench reads (`bench ENGINE --no-reference`, or any bench where PyTorch is not
# installed; --md and --plot are refused there with their own hint) and `bench trtexec`
DEVICE_FLAGS = ("out", "md", "plot", "force", "runs", "warmup", "duration", "threads", "label",
                "min_token_agreement", "no_reference", "cache_dir")
TRTEXEC_ONLY = ("trt_engine", "batch")
TRTEXEC_FLAGS = ("out", "md", "plot", "force", "label", *TRTEXEC_ONLY)


def _merge_parser(prog: str, parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """`bench merge`'s own usage (`prog`: 'alignvar-edge bench merge'): it shares the bench's parser
    (its first ENGINE is 'merge'), but reads only these."""
    m = parser_class(
        prog=prog, description="Merge bench reports (report.json of `bench`, `bench --no-reference`, "
                                          "`bench trtexec`, `deploy`, or merged reports) from several devices "
                                          "into one table, Markdown page and plot.")
    m.add_argument("reports", nargs="+", metavar="REPORT.json", help="reports to merge")
    m.add_argument("--out", help="merged report JSON to write")
    m.add_argument("--md", help="the merged table as Markdown (printed on stdout when left out)")
    m.add_argument("--plot", help="a PNG plot of ms per megapixel per device and engine")
    m.add_argument("--force", action="store_true", help=_MERGE_FORCE_HELP)
    return m


def _trtexec_parser(prog: str, parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """`bench trtexec`'s own usage: it shares the bench's parser too, and reads only these."""
    t = parser_class(
        prog=prog, description="A bench report from a trtexec log's performance summary (no PyTorch "
                                            "or TensorRT needed); it merges with the other reports.")
    t.add_argument("log", metavar="LOG", help="trtexec's whole output, saved with `trtexec ... 2>&1 | tee FILE`")
    t.add_argument("--out", required=True, help="report JSON to write")
    t.add_argument("--engine", metavar="DIR", help=_ENGINE_HELP)
    t.add_argument("--batch", help=_BATCH_HELP)
    t.add_argument("--label", help="device label (default: the device the log names, 'NAME (trtexec log)'; "
                                   "needed where the log names none)")
    t.add_argument("--force", action="store_true", help=_FORCE_HELP)
    return t


# the verbs nested in `bench` (its first ENGINE names one) -> their own usage
_NESTED = {"merge": _merge_parser, "trtexec": _trtexec_parser}


class _Engines(argparse.Action):
    """The ENGINE operands. Where the first names a nested verb, the parser takes that verb's name,
    so that its errors and help are the nested verb's: `alignvar-edge bench merge: error: ...; see
    `alignvar-edge bench merge --help``, not bench's."""

    def __init__(self, *args: Any, verb_prog: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verb_prog = verb_prog          # 'alignvar-edge bench'

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        parser.prog = f"{self.verb_prog} {values[0]}" if values[0] in _NESTED else self.verb_prog


class _Help(argparse.Action):
    """-h/--help: bench's, or `bench merge`'s / `bench trtexec`'s where the first ENGINE names one
    (_Engines has given the parser its name), printed by a parser of bench's own class: the CLI's,
    whose help that stdout does not take is an error, as every verb's."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        first = (getattr(namespace, "engines", None) or [None])[0]
        own = _NESTED.get(first)
        (own(parser.prog, type(parser)) if own else parser).print_help()
        parser.exit()


_LABEL_HELP = "device label for tables and merges (default: from the host)"
_ENGINE_HELP = ("the engine dir or kit the log belongs to (model, batch, parity); a log of another engine, "
                "precision, DLA core, TensorRT or GPU is refused")
_BATCH_HELP = "tiles per inference (default: the engine's; needed without --engine)"
_FORCE_HELP = ("let --out replace a merged report, or a report timed on another machine (without it, only an "
               "earlier report of this machine)")
_MERGE_FORCE_HELP = "let --out replace a report of one run (without it, only an earlier merged report)"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench", add_help=False, help="latency, throughput, memory, FLOPs/roofline and fidelity of engines; `bench merge`",
        description="Benchmark engines against PyTorch eager (KV-cached) and bicubic in one interleaved "
                    "run: latency p50/p90/p99 per tile and per megapixel, throughput, peak memory, size, "
                    "parameters, FLOPs and achieved GFLOP/s against a GEMM peak measured in the same run, "
                    "token agreement and PSNR/SSIM-Y against PyTorch and against HR, and a host "
                    "fingerprint. `alignvar-edge bench merge A.json B.json ... --md M.md --plot M.png` "
                    "combines reports from several devices. Without PyTorch (a device install), "
                    "`--no-reference` times engine directories against the golden outputs they carry, "
                    "and `alignvar-edge bench trtexec LOG --engine DIR --out R.json` imports "
                    "trtexec's timing summary; both reports merge with the others.")
    p.add_argument("-h", "--help", action=_Help, nargs=0, help="show this help message and exit "
                                                               "(`bench merge --help`: merge's)")
    p.add_argument("engines", nargs="+", metavar="ENGINE", help=_engine_help(), action=_Engines, verb_prog=p.prog)
    p.add_argument("--out", help="report JSON to write (required for a benchmark; optional for merge)")
    p.add_argument("--md", help="also write the report as Markdown")
    p.add_argument("--plot", help="also write a PNG plot")
    p.add_argument("--force", action="store_true", help=f"{_FORCE_HELP}; merge: {_MERGE_FORCE_HELP}")
    p.add_argument("--reference", help="the PyTorch model: checkpoint dir, bundled name, or "
                                       "preset:NAME[:SEED] for random-weight exports (default: from the manifests)")
    p.add_argument("--images", help="folder of HR photographs for the fidelity tiles and the timed image and folder "
                                    "(default: bundled held-out set)")
    p.add_argument("--tiles", type=tile_count, default=8,
                   help=f"fidelity tile pairs (default 8, at most {MAX_TILES})")
    p.add_argument("--runs", type=positive_int, default=20, help="timed rounds (default 20)")
    p.add_argument("--duration", type=positive_float, metavar="SECONDS",
                   help="time rounds for SECONDS (and at least --runs rounds): a fixed time budget "
                        "instead of a fixed count; p99 is reported from 100 rounds on")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--image-size", type=nonneg_int, default=IMAGE_LR, metavar="LR_PX",
                   help="also time a whole LR_PX x LR_PX photograph crop through each engine's tiling "
                        "(overlap and batch padding counted) and report whole-image MP/s (default "
                        f"{IMAGE_LR}: a {4 * IMAGE_LR}x{4 * IMAGE_LR} SR image at x4; 0: no whole-image timing)")
    p.add_argument("--image-runs", type=positive_int, default=IMAGE_RUNS,
                   help=f"timed rounds of the whole image and of the folder (default {IMAGE_RUNS})")
    p.add_argument("--folder-images", type=nonneg_int, default=0, metavar="COUNT",
                   help="also time a folder of COUNT small LR photograph crops through each engine as "
                        "`upscale DIR` runs it (small images share the engine's calls) and report the "
                        "folder's MP/s (default 0: none)")
    p.add_argument("--folder-size", type=positive_int, default=FOLDER_LR, metavar="LR_PX",
                   help=f"LR side of each image of --folder-images (default {FOLDER_LR}: "
                        f"{4 * FOLDER_LR}x{4 * FOLDER_LR} SR thumbnails at x4)")
    p.add_argument("--overlap", type=nonneg_int, metavar="LR_PX",
                   help="tile overlap of the whole-image and folder timings (default: a quarter tile, as upscale)")
    p.add_argument("--threads", type=positive_int,
                   help="threads for every engine, at most the usable cores (default: all usable cores)")
    add_cache_dir_option(p)
    p.add_argument("--staged", help="a staged ONNX export of the same model: adds ONNX Runtime per-stage timing")
    p.add_argument("--profile-runs", type=nonneg_int, default=3, help="runs of the per-stage profile (0: none; default %(default)s)")
    p.add_argument("--peak-n", type=positive_int, default=1024, help="side of the GEMM that measures the peak (default 1024)")
    p.add_argument("--min-token-agreement", type=fraction, default=DEFAULT_MIN_TOKENS,
                   help=f"fidelity gate for 'best engine' (default {DEFAULT_MIN_TOKENS:g})")
    p.add_argument("--target-speedup", type=positive_float, help="report whether the best CPU engine reaches this speed-up")
    p.add_argument("--sequential", action="store_true",
                   help="one engine in memory at a time, no interleaving (models too big to load together)")
    p.add_argument("--label", help=_LABEL_HELP)
    p.add_argument("--seed", type=random_seed, default=0, help="seed of the fidelity tile crops (default %(default)s)")
    p.add_argument("--no-reference", action="store_true",
                   help="no PyTorch: time engine directories and check them against their golden outputs "
                        "(automatic when PyTorch is not installed)")
    p.add_argument("--engine", dest="trt_engine", metavar="DIR",
                   help=f"bench trtexec: {_ENGINE_HELP}")
    p.add_argument("--batch", type=batch_size,
                   help=f"bench trtexec: {_BATCH_HELP}")
    # `bench merge`, the device bench and `bench trtexec` share this parser; each refuses the flags
    # it does not read (_unread), rather than ignoring them
    p.set_defaults(func=run_bench_cmd, stdout_is_a_summary=_prints_a_summary, flag_defaults=tuple(
        (a.dest, a.option_strings[-1], a.default) for a in p._actions if a.option_strings and a.dest != "help"))

    d = sub.add_parser(
        "deploy", help="export -> quantize -> build every target -> parity -> bench, one command",
        description="The whole path on one model: export the single graph, calibrate and quantize, build "
                    "every target that can be built here (Core ML packages and TensorRT build kits are "
                    "written even where they cannot run), check parity, benchmark against PyTorch eager "
                    "and bicubic, and write report.json/.md/.png. The output directory appears only "
                    "when everything is written.")
    d.add_argument("checkpoint", nargs="?", default=None,
                   help=CHECKPOINT_HELP)
    d.add_argument("--preset", help="random weights of a preset instead of a checkpoint (e.g. micro, tiny, d16)")
    d.add_argument("--targets", default="auto",
                   help=f"auto (every backend that can build here) or a comma list of {','.join(deploy_targets())} "
                        "(default: %(default)s)")
    d.add_argument("--precision", default=None,
                   help=f"comma list of {','.join(deploy_precisions())} (default: {','.join(DEPLOY_DEFAULT)}); "
                        "without --precision, OpenVINO's fp32 step builds bf16 first on a CPU with fast bf16 units "
                        "(kept where the tokens hold, as `build` without --precision), while a --precision that "
                        "names fp32 builds f32; Core ML always gets its fp16 package (the Neural Engine computes "
                        "in fp16) and int8 means weight-only there")
    d.add_argument("--calib", default="builtin", metavar="builtin|DIR", help="calibration photographs: the bundled sample set or a folder (default: %(default)s)")
    d.add_argument("--out", required=True, help="output directory (created atomically)")
    d.add_argument("--force", action="store_true", help="replace --out if it exists")
    d.add_argument("--quick", action="store_true",
                   help="a first look in minutes: 8 calibration and validation tiles and 2 export-validation "
                        "tiles, each rounded up to whole calls of the export's batch (16 of each at the default "
                        "batch 16), 5 timed rounds, 4 fidelity tiles; no TensorRT int8 kit, no Core ML int8 "
                        "package or fidelity proxy")
    d.add_argument("--runs", type=positive_int, help="timed bench rounds (default 10; --quick 5)")
    d.add_argument("--warmup", type=nonneg_int, help="bench warm-up rounds (default 2; --quick 1)")
    d.add_argument("--threads", type=positive_int,
                   help="threads for every engine in the headline bench (default 1, the fair figure on a "
                        "shared host); without --threads a second, all-core row follows; --threads N (even 1) "
                        "skips it")
    d.add_argument("--staged", action="store_true",
                   help="also export the staged graphs and profile ONNX Runtime per stage")
    d.add_argument("--export", help="reuse an fp32 single-graph export of the same model (copied into --out) "
                                    "instead of exporting again")
    d.add_argument("--batch", type=batch_size,
                   help="static batch of every engine (default: each of 1, 4, 8, 16 is exported and timed on "
                        "ONNX Runtime at the headline threads; the fastest for a 128x128 LR image's tiles is kept; "
                        "--quick: 16; SR tiles over 64 px: 1, with no search)")
    d.add_argument("--seed", type=random_seed, default=0, help="--preset weights, tiles and calibration seed (default %(default)s)")
    d.add_argument("--redact", action="store_true",
                   help="build the engines as `build --redact` does, to ship them to others (the export, the "
                        "quantize outputs and the reports beside them keep every path)")
    d.set_defaults(func=run_deploy_cmd, stdout_is_a_summary=True)


def _prints_a_summary(args: argparse.Namespace) -> bool:
    """Whether stdout carries only a summary of the reports written (`stdout_is_a_summary`): every
    bench's but a `bench merge` without --md, which prints the merged table there."""
    return args.engines[0] != "merge" or bool(args.md)


def _say(msg: str) -> None:
    note(f"bench: {msg}")


def run_bench_cmd(args: argparse.Namespace) -> int:
    if args.engines[0] == "merge":
        return run_merge(args.engines[1:], args)
    if args.engines[0] == "trtexec":
        return run_trtexec(args.engines[1:], args)
    from alignvar_edge.bench.render import pyplot, summary_lines, terminal_table
    if not args.out:
        raise InputError("bench needs --out REPORT.json (the report is the result)")
    from alignvar_edge.bench.outputs import check_same_machine, check_targets
    check_targets(args.out, args.md, args.plot, force=args.force)     # before minutes of measuring
    check_same_machine(args.out, args.force)
    _refuse_unused_cache_dir(args)
    if args.no_reference or not is_installed("torch"):
        return run_device_bench(args)
    _refuse_unread(args, tuple(dest for dest, _, _ in args.flag_defaults if dest not in TRTEXEC_ONLY),
                   "a bench of engines (they are flags of `alignvar-edge bench trtexec LOG`)")
    from alignvar_edge.bench.runner import BenchOptions, run_bench
    if args.plot:
        pyplot()                # before minutes of measuring
    opts = BenchOptions(runs=args.runs, warmup=args.warmup, tiles=args.tiles, images=args.images,
                        seed=args.seed, threads=args.threads, peak_n=args.peak_n,
                        profile_runs=args.profile_runs, staged=args.staged,
                        min_token_agreement=args.min_token_agreement,
                        target_speedup=args.target_speedup, label=args.label, sequential=args.sequential,
                        duration=args.duration, image_size=args.image_size, image_runs=args.image_runs,
                        image_overlap=args.overlap, folder_images=args.folder_images,
                        folder_size=args.folder_size, need_an_engine=True, cache_dir=args.cache_dir)
    report = run_bench(args.engines, reference=args.reference, options=opts, log=_say, progress=bar)
    from alignvar_edge.bench.outputs import rechecked, write_outputs

    def show() -> None:
        print(terminal_table(report))
        for line in summary_lines(report):
            print(line.replace("**", ""))
    _written(lambda: write_outputs(report, args.out, args.md, args.plot,
                                   rechecked(args.out, args.md, args.plot, force=args.force)), show)
    print(f"wrote {', '.join(p for p in (args.out, args.md, args.plot) if p)}")
    return _exit_status(report)


def _written(write: Callable[[], object], show: Callable[[], None]) -> None:
    """`write` a report's files, then `show` it; shown all the same where a file written to one of
    them while the bench ran is kept (the refusal then names it): minutes of timing are not lost."""
    try:
        write()
    except OutputExistsError:
        show()
        raise
    show()


def _refuse_untimed(report: dict[str, Any]) -> None:
    """Exit 3, in one line naming why and writing nothing, where none of the engines asked for
    could be timed here: the baselines are not what was asked for, and a script must not read
    "nothing measured" as success, nor merge such a report as a device's figures."""
    from alignvar_edge.bench.subjects import untimed_error
    error = untimed_error([(e["label"], e["status"], e["reason"]) for e in report["engines"] if e["kind"] == "engine"])
    if error:
        raise error


def _exit_status(report: dict[str, Any]) -> int:
    """A bench's status once its report is written: 1 where an engine failed (the report keeps
    why), else 0."""
    return 1 if report["summary"]["failed"] else 0


def _refuse_unused_cache_dir(args: argparse.Namespace) -> None:
    """--cache-dir where no engine benched takes it, refused by name as every flag the run would not
    read; with one that does, it applies to those (ALIGNVAR_EDGE_CACHE_DIR is not a flag: ignored there)."""
    from alignvar_edge.bench.subjects import parse_spec, takes_load_option
    if args.cache_dir is None:
        return
    try:
        taken = any(takes_load_option(parse_spec(e), "cache_dir") for e in args.engines)
    except AlignVAREdgeError:
        return              # a path that names no engine: the bench's own checks say so, in their words
    if not taken:
        raise InputError(f"{cache_dir_scope()}, and no engine benched here is one: drop it")


def _refuse_unread(args: argparse.Namespace, reads: tuple[str, ...], mode: str, hint: str = "") -> None:
    """One line naming the flags given that `mode`, reading only `reads`, would ignore. A flag left
    at its default cannot be told from one not given, and changes nothing either way."""
    given = [flag for dest, flag, default in args.flag_defaults if dest not in reads and getattr(args, dest) != default]
    if given:
        one = len(given) == 1
        raise InputError(f"{', '.join(given)} {'is' if one else 'are'} not read by {mode}: leave "
                         f"{'it' if one else 'them'} out{hint}")


def run_device_bench(args: argparse.Namespace) -> int:
    """`bench ENGINE... --no-reference`: engines timed against their golden outputs, without PyTorch."""
    from alignvar_edge.bench.device import bench_engine_dir
    _refuse_unread(args, DEVICE_FLAGS, "the device bench (engines timed against their golden outputs, no "
                   "PyTorch), which reads only --out, --force, --runs, --warmup, --duration, --threads, --label, "
                   "--min-token-agreement and --cache-dir",
                   ", or run the bench where PyTorch is installed, without --no-reference")
    _refuse_renderings(args)
    if not args.no_reference:
        _say("PyTorch is not installed: timing the engines against their golden outputs (--no-reference)")
    report = bench_engine_dir(args.engines, runs=args.runs, warmup=args.warmup, threads=args.threads,
                              label=args.label, min_token_agreement=args.min_token_agreement, log=_say,
                              duration=args.duration, cache_dir=args.cache_dir)
    _refuse_untimed(report)
    from alignvar_edge.bench.outputs import rechecked
    return _write_device_report(args.out, report, rechecked(args.out, None, None, force=args.force))


def run_trtexec(logs: list[str], args: argparse.Namespace) -> int:
    """`bench trtexec LOG`: a report from trtexec's performance summary, of the log's device."""
    from alignvar_edge.bench.device import trtexec_report
    from alignvar_edge.bench.outputs import check_same_machine, check_targets, rechecked
    if len(logs) != 1:                  # named first: without it nothing else can be judged
        raise InputError(f"reads one LOG, trtexec's saved output ({len(logs) or 'none'} given): "
                         "alignvar-edge bench trtexec LOG --engine DIR --out R.json (or --batch N in place of --engine)")
    _refuse_unread(args, TRTEXEC_FLAGS, "bench trtexec (which reads only --out, --force, --engine, --batch and "
                   "--label)")
    if not args.out:
        raise InputError("needs --out REPORT.json (the report is the result)")
    _refuse_renderings(args)
    check_targets(args.out, args.md, args.plot, force=args.force)
    report = trtexec_report(logs[0], args.trt_engine, label=args.label, batch=args.batch)
    check_same_machine(args.out, args.force, report["host"])       # the log's device, known once it is read
    return _write_device_report(args.out, report, rechecked(args.out, None, None, force=args.force,
                                                            host=report["host"]))


def _refuse_renderings(args: argparse.Namespace) -> None:
    if args.md or args.plot:
        raise InputError("device reports are JSON only: render them with `alignvar-edge bench merge "
                         f"{shell_word(args.out)} --md REPORT.md` (with the reports of other devices)")


def _write_device_report(out: str, report: dict[str, Any], recheck: Callable[[], None]) -> int:
    """Write a report made without PyTorch and print its table, as the bench does."""
    from alignvar_edge.bench.render import shared_line, tail_lines, terminal_table
    from alignvar_edge.bench.schema import write_json

    def show() -> None:
        print(terminal_table(report))
        for line in tail_lines(report):
            print(line)
        if report["summary"].get("shared_load"):
            print(shared_line(report))
    _written(lambda: write_json(out, report, recheck), show)
    print(f"wrote {out}")
    return _exit_status(report)


def run_merge(paths: list[str], args: argparse.Namespace) -> int:
    import os

    from alignvar_edge.bench.merge import merge_markdown, merge_reports, plot_merged, plot_rows
    from alignvar_edge.bench.render import pyplot
    from alignvar_edge.fsmodes import write_text
    from alignvar_edge.bench.schema import write_json
    _refuse_unread(args, MERGE_FLAGS, "bench merge (which reads only --out, --md, --plot and --force)")
    if not paths:
        raise InputError("needs report files: alignvar-edge bench merge A.json B.json --md out.md")
    from alignvar_edge.bench.outputs import check_targets, rechecked
    check_targets(args.out, args.md, args.plot, paths, force=args.force)
    recheck = rechecked(args.out, args.md, args.plot, paths, force=args.force)
    if args.plot:
        pyplot()                # before writing anything: all the outputs asked for, or none
    merged = merge_reports(paths)
    if args.plot:
        plot_rows(merged)
    for w in merged["warnings"]:
        note(f"{args.who}: warning: {w}")     # the CLI names the nested verb that speaks
    for n in merged["notes"]:
        note(f"{args.who}: note: {n}")
    recheck()                   # before any file: one written meanwhile leaves none of these written
    if args.out:
        write_json(args.out, merged, recheck)
    if args.plot:
        plot_merged(merged, args.plot, recheck)
    text = merge_markdown(merged, os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.md)))
                          if args.plot and args.md else None)
    if args.md:
        write_text(args.md, text, recheck)
    # on stdout without its title: from the devices (host, ISA, threads of each) on
    print(text.split("\n\n", 2)[-1] if not args.md else f"merged {len(merged['reports'])} report(s) into "
          f"{', '.join(p for p in (args.out, args.md, args.plot) if p)}")
    return 0


def run_deploy_cmd(args: argparse.Namespace) -> int:
    from alignvar_edge.deploy import DeployOptions, deploy
    opts = DeployOptions.from_args(args)
    result = deploy(opts, log=note, progress=bar)
    print(result.summary)
    return result.exit_code
