"""`alignvar-edge deploy`: one model to every engine this machine can build, verified and benchmarked.

    export (single graph, validated vs PyTorch)
      -> quantize (calibration set; int8 Q/DQ for ONNX Runtime / TensorRT, NNCF for OpenVINO)
      -> build every (target, precision) of the plan, or record why it is skipped
      -> bench (PyTorch eager + bicubic baselines; token agreement = the parity check)
      -> report.json / report.md / report.png + a summary table

Output (created in a hidden temporary sibling and renamed into place at the end, so a directory
at --out is always complete):
    OUT/manifest.json        kind "deploy": the plan, each step's outcome and time, file hashes
                             (`inspect OUT` verifies them and each artifact inside: manifest.verified_parts)
    OUT/report.{json,md,png} the benchmark
    OUT/export/              fp32 single-graph ONNX (+ export-staged/ with --staged)
    OUT/quantized/T-P/       Q/DQ or fp16 ONNX artifacts (inputs of the ORT / TensorRT builds)
    OUT/engines/T-P/         one engine dir per built (target, precision); TensorRT dirs are build
                             kits when TensorRT is absent, Core ML dirs hold .mlpackage
A step that fails (e.g. a quantization that misses its fidelity target) is recorded with its
reason and the rest continues; the exit code is then 1. A failed export stops everything, and so
does a full disk or running out of memory during a build (the machine failing, not the target).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignvar_edge.argtypes import check_seed
from alignvar_edge.caller import WarningFilter, option, warnings_changed
from alignvar_edge.errors import AlignVAREdgeError, InputError, device_memory_failure, out_of_memory
from alignvar_edge.fsmodes import NO_SPACE, not_a_folder, write_text
from alignvar_edge.recipes import ALIASES, DEPLOY_DEFAULT, deploy_precisions, deploy_targets, engine_precision, recipe
from alignvar_edge.manifest import Manifest, ModelInfo, ModelSource, parity_figures, read_manifest
from alignvar_edge.name_text import shell_word

__all__ = ["DeployOptions", "DeployResult", "Step", "deploy", "plan"]

TARGETS = deploy_targets()
PRECISIONS = deploy_precisions()                          # what a user asks for; recipes.engine_precision maps it
Log = Callable[[str], None]
Progress = Callable[..., Iterable[Any]]


@dataclass
class DeployOptions:
    out: str
    checkpoint: str | None = None
    preset: str | None = None
    targets: str = "auto"
    # None: DEPLOY_DEFAULT, its fp32 step built half first where this host computes half fast (the
    # quick choice); fp32 asked for by name is f32, as `build --precision fp32`
    precisions: tuple[str, ...] | None = None
    calib: str = "builtin"
    force: bool = False
    quick: bool = False
    runs: int | None = None
    warmup: int | None = None
    threads: int | None = None
    staged: bool = False
    seed: int = 0
    model: Any = None               # an in-memory AlignVAR (API and tests) instead of checkpoint/preset
    export: str | None = None       # reuse this fp32 single-graph export of the same model
    bench_tiles: int | None = None
    batch: int | None = None        # static batch of every engine; None: measured (see _export)
    redact: bool = False            # engines as `build --redact` makes them (the rest of the output keeps all)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> DeployOptions:
        precisions = tuple(p.strip() for p in a.precision.split(",") if p.strip()) if a.precision else None
        return cls(out=a.out, checkpoint=a.checkpoint, preset=a.preset, targets=a.targets,
                   precisions=precisions, calib=a.calib, force=a.force, quick=a.quick, runs=a.runs,
                   warmup=a.warmup, threads=a.threads, staged=a.staged, seed=a.seed, export=a.export,
                   batch=a.batch, redact=a.redact)

    @property
    def requested(self) -> tuple[str, ...]:
        """The precisions to build: those given, else DEPLOY_DEFAULT."""
        return DEPLOY_DEFAULT if self.precisions is None else self.precisions

    def validate(self) -> None:
        bad = [p for p in self.requested if p not in PRECISIONS]
        if bad or not self.requested:
            raise InputError(f"unknown precision(s) {', '.join(bad) or '(none)'}; choose from {', '.join(PRECISIONS)}")
        from alignvar_edge.quantize.calibration.sets import check_calib
        check_calib(self.calib)             # a folder without images: now, not after the export
        if self.export and (why := not_a_folder(self.export)) is not None:
            raise InputError(f"{option('export', self.export)} {why}; pass an export made by "
                             "`alignvar-edge export` (or leave it out to export here)")
        if self.batch is not None and self.batch < 1:
            raise InputError(f"{option('batch', self.batch)} must be >= 1")
        check_seed("seed", self.seed)       # torch.manual_seed's range: a --preset's weights are seeded with it
        if self.batch is not None and self.export:
            raise InputError(f"{option('batch', self.batch)} and {option('export', self.export)} conflict: a reused "
                             "export keeps its own batch; leave one of them out")
        # None: the bench's default; only the option that is wrong is named
        if self.runs is not None and self.runs < 1:
            raise InputError(f"{option('runs', self.runs)} must be >= 1")
        if self.warmup is not None and self.warmup < 0:
            raise InputError(f"{option('warmup', self.warmup)} must be >= 0")
        if self.threads is not None:             # the bench refuses it too, but only after the builds
            from alignvar_edge.bench.host import run_threads
            from alignvar_edge.cpuinfo import cpu_info
            run_threads(self.threads, {"cpu": cpu_info()})
        self.target_list()

    def target_list(self) -> list[str]:
        from alignvar_edge import runtimes
        if self.targets == "auto":
            return [t for t in TARGETS if runtimes.get_backend(t).can_build()[0]]
        words = [t.strip().lower() for t in self.targets.split(",") if t.strip()]
        names = [ALIASES.get(t, t) for t in words]
        bad = [t for t in names if t not in TARGETS]
        if bad or not names:
            raise InputError(f"unknown target(s) {', '.join(bad) or '(none)'}; "
                             f"choose auto or from {', '.join(TARGETS)}")
        return list(dict.fromkeys(names))


@dataclass
class Step:
    """One (target, precision) of the plan: what to build, or why not."""

    target: str
    precision: str                  # the requested precision
    built_precision: str            # what the backend builds (Core ML int8 = int8-weights)
    skip: str | None = None
    half_first: bool = False        # an fp32 step of the default plan: the host's fast half precision first
    status: str = "planned"         # planned | built | kit (a TensorRT build kit) | skipped | failed
    detail: str = ""
    seconds: float = 0.0
    path: str | None = None

    @property
    def name(self) -> str:
        return f"{self.target}-{self.built_precision}"


def plan(targets: list[str], precisions: tuple[str, ...], quick: bool, half_first: bool = False) -> list[Step]:
    """Every (target, precision) pair with the rule that decides it (see docs/benchmarks.md);
    `half_first`: fp32 steps try the host's fast half precision first (deploy's default plan)."""
    from alignvar_edge import runtimes
    steps: list[Step] = []
    for t in targets:
        ok, why = runtimes.get_backend(t).can_build()
        built: set[str] = set()
        for p in (("fp16",) if t == "coreml" else ()) + tuple(precisions):
            # the recipe table maps a request to the engine that answers it (Core ML's Neural Engine
            # computes in fp16: fp32 gets the fp16 package, int8 is weight-only); one engine each
            ep = engine_precision(t, p)
            if ep is None or ep in built:
                continue
            built.add(ep)
            s = Step(t, p, ep, half_first=half_first and p == "fp32")
            if quick and t == "coreml" and ep != "fp16":
                s.skip = "skipped in --quick (a second Core ML conversion); run without --quick"
            elif quick and recipe(t, ep).judged_as_fake_quant:
                # quantize cannot run this row's int8 kernels here: what it checks is not what the engine runs
                s.skip = (f"skipped in --quick: quantize judges {t} {ep} on fake-quant only (Q/DQ computed "
                          f"literally), never on {t}'s own int8 kernels, so a first look leaves it out; run without "
                          f"--quick, or `{recipe(t, ep).quantize_command()}`")
            steps.append(s)
        for s in (s for s in steps if s.target == t):
            # an absent backend, or a tool the row's build needs beyond it (NNCF): the recipe's own line
            tool = None if not ok else recipe(t, s.built_precision).missing_tool()
            if not ok or tool is not None:
                s.skip = f"cannot build here: {why if tool is None else tool.missing()}"
    for s in steps:
        if s.skip:
            s.status = "skipped"
            s.detail = s.skip
    return steps


@dataclass
class DeployResult:
    out: Path
    steps: list[Step]
    report: dict[str, Any]
    summary: str
    exit_code: int
    timings: dict[str, float] = field(default_factory=dict)


def _load_model(opts: DeployOptions) -> tuple[Any, str, ModelSource]:
    if opts.model is not None:
        return opts.model.eval(), opts.model.config.name, ModelSource.memory()
    from alignvar_edge.export.random_model import load_model
    return load_model(opts.checkpoint, opts.preset, opts.seed)


def deploy(opts: DeployOptions, log: Log | None = None, progress: Progress | None = None) -> DeployResult:
    """Run the whole pipeline into opts.out (see the module docstring)."""
    from alignvar_edge.bench.outputs import write_outputs
    from alignvar_edge.manifest import new_manifest, staged_as, write_manifest
    from alignvar_edge.outputs import artifact_dir
    from alignvar_edge.export.onnx_export import export_onnx

    opts.validate()
    say = log or (lambda _m: None)
    out = Path(opts.out)
    from alignvar_edge.outputs import check_out
    check_out(out, opts.force)               # before minutes of work, not after
    t_start = time.perf_counter()
    model, name, source = _load_model(opts)
    reused = _checked_export(Path(opts.export), model, source) if opts.export else None
    steps = plan(opts.target_list(), opts.requested, opts.quick, half_first=opts.precisions is None)
    n_build = sum(1 for s in steps if s.status == "planned")
    total = 3 + n_build + (1 if opts.staged else 0)
    counter = iter(range(1, total + 1))
    timings: dict[str, float] = {}

    def stage(what: str) -> float:
        say(f"[{next(counter)}/{total}] {what} ({time.perf_counter() - t_start:.0f} s elapsed)")
        return time.perf_counter()

    batch_search: dict[str, Any] | None = None
    with artifact_dir(out, force=opts.force) as tmp, staged_as(tmp, out):
        if opts.export and reused is not None:          # checked before the staging folder was made
            t0 = stage(f"reuse the export {opts.export} (checked against the model, copied in)")
            export = _reuse_export(Path(opts.export), reused, tmp / "export", say)
        else:
            t0 = stage(f"export {name} to ONNX (single graph, validated against PyTorch)")
            export, batch_search = _export(model, tmp, name, source, opts, say)
        timings["export_s"] = round(time.perf_counter() - t0, 1)
        staged = None
        if opts.staged:
            t0 = stage("export the staged graphs (per-stage profile)")
            staged = export_onnx(model, tmp / "export-staged", graph="staged", seed=opts.seed,
                                 model_name=name, source=source, n_tiles=1, room=_room(opts))
            timings["export_staged_s"] = round(time.perf_counter() - t0, 1)
        calib = _calibration(opts, model.config, export, say)
        for s in steps:
            if s.status != "planned":
                say(f"      skip {s.name}: {s.detail}")
                continue
            t0 = stage(f"build {_build_label(s)}")
            try:
                with _quiet_builders():
                    s.path = str(_build(s, export, tmp, model, calib, opts, say).relative_to(tmp))
                s.status = "kit" if read_manifest(tmp / s.path).tensorrt_kit else "built"
            except Exception as e:  # noqa: BLE001 - a backend crash is a finding about that target only
                if (machine := _machine_failure(e)) is not None:
                    # no other target would fare better: stop; `artifact_dir` removes the staging
                    # folder and leaves an old output as it is
                    if machine is e:
                        raise
                    raise machine from e
                why = str(e) if isinstance(e, AlignVAREdgeError) else f"{type(e).__name__}: {_first_line(e)}"
                # named where it will lie: the staging folder is gone once the output is published
                s.status, s.detail = "failed", _published(" ".join(why.split()), tmp, out)
                say(f"      failed: {s.detail}")
            s.seconds = round(time.perf_counter() - t0, 1)
            if s.status in ("built", "kit") and s.path:
                s.detail = _build_detail(tmp / s.path)
                say(f"      {s.detail or 'done'} ({s.seconds:.0f} s)")

        t0 = stage("benchmark every engine against PyTorch eager and bicubic (parity = token agreement)")
        report = _bench(steps, tmp, (model, name, source), opts, staged, say, progress)
        timings["bench_s"] = round(time.perf_counter() - t0, 1)
        report["deploy"] = {"steps": [_step_json(s) for s in steps], "timings_s": timings,
                            "source": source.describe(), "options": _opts_json(opts), "batch_search": batch_search}
        t0 = stage("write report.json / report.md / report.png")
        write_outputs(report, str(tmp / "report.json"), str(tmp / "report.md"), str(tmp / "report.png"))
        _append_plan(tmp / "report.md", steps)
        timings["total_s"] = round(time.perf_counter() - t_start, 1)
        m = new_manifest("deploy", "multi", "single", ",".join(opts.requested),
                         ModelInfo(name=name, source=source, config=model.config.to_dict()),
                         parity={s: e for s, e in _parity(report).items()},
                         extra={"steps": [_step_json(s) for s in steps], "timings_s": timings,
                                "options": _opts_json(opts)})
        write_manifest(tmp, m)
    summary = format_summary(out, steps, report, timings)
    failed = any(s.status == "failed" for s in steps) or bool(report["summary"]["failed"])
    return DeployResult(out, steps, report, summary, 1 if failed else 0, timings)


@contextlib.contextmanager
def _quiet_builders() -> Iterator[None]:
    """torch.jit.trace warns about shape-dependent Python in the resampling code (static here by
    construction): no news to a deploy user."""
    # NNCF's calls are quieted where they run (openvino.nncf's `_quiet_nncf`)
    quiet = [WarningFilter("ignore", message=r".*(TracerWarning|Converting a tensor to a Python)")]
    try:
        from torch.jit import TracerWarning
        quiet.append(WarningFilter("ignore", category=TracerWarning))
    except ImportError:
        pass
    with warnings_changed(*quiet):
        yield


def _first_line(e: BaseException) -> str:
    """The most specific line of a runtime's multi-line message (OpenVINO nests its checks)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from src/")]
    return (useful or lines or [""])[0][:400]


def _export(model: Any, tmp: Path, name: str, source: ModelSource, opts: DeployOptions, say: Log
            ) -> tuple[Path, dict[str, Any] | None]:
    """The fp32 single-graph export every engine is built from, at the batch that serves whole
    images best: --batch if given (--quick, or tiles too large to batch: the model's default batch,
    export/batch.py), else each candidate batch is exported and timed on ONNX Runtime CPU at the
    headline thread count, and the fastest for a 128x128 LR image's tiles is kept
    (runtimes/batching.py)."""
    import shutil

    from alignvar_edge.bench.image import IMAGE_LR, image_geometry
    from alignvar_edge.export.batch import default_batch
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.runtimes.batching import CANDIDATES, pick_batch, time_per_call
    from alignvar_edge.runtimes.onnxruntime import BACKEND as ORT

    def one(b: int, path: Path) -> Path:
        return export_onnx(model, path, graph="single", batch=b, seed=opts.seed, model_name=name, source=source,
                           n_tiles=max(b, 2 if opts.quick else 4), log=lambda m: say(f"      export: {m}"),
                           room=_room(opts))
    if opts.batch or opts.quick:
        return one(opts.batch or default_batch(model.config), tmp / "export"), None
    if default_batch(model.config) == 1:
        # tiles this large gain nothing from a batch, and exporting each candidate would multiply
        # an export that already takes minutes and gigabytes
        say(f"      batch 1: {model.config.hr_size} px tiles are not batched (no search)")
        return one(1, tmp / "export"), None
    tiles = image_geometry((IMAGE_LR, IMAGE_LR), model.config.lr_size, 1)["tiles"]
    threads = opts.threads or 1
    ms, paths = {}, {}
    for b in CANDIDATES:
        paths[b] = one(b, tmp / f".batch-{b}")
        with ORT.load(paths[b], device="cpu", threads=threads, spin=False) as eng:
            ms[b] = round(time_per_call(eng), 3)
        say(f"      batch {b}: {ms[b]:.1f} ms per call on onnxruntime cpu, {threads} thread(s)")
    best, costs = pick_batch(ms, tiles)
    say(f"      batch {best}: fastest for a {IMAGE_LR}x{IMAGE_LR} LR image ({tiles} tiles)")
    paths.pop(best).rename(tmp / "export")
    for p in paths.values():
        shutil.rmtree(p)
    return tmp / "export", {"chosen": best, "ms_per_call": ms, "image_ms": costs, "tiles_per_image": tiles,
                            "image_lr": IMAGE_LR, "measured_on": f"onnxruntime cpu, {threads} thread(s)"}


def _checked_export(src: Path, model: Any, source: ModelSource) -> Manifest:
    """The verified manifest of --export, refused before any work unless it is an fp32 single-graph
    export of this very model: its config, and its weights by the state-dict SHA-256 the export
    recorded (an export of other weights would ship engines of two models side by side)."""
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.model.checkpoint import weights_sha256
    from alignvar_edge.runtimes.artifacts import model_difference
    m = load_verified(src)
    given = option("export", src)
    if m.kind != "onnx" or m.graph != "single" or m.precision != "fp32":
        raise ArtifactError(f"{given} is a {m.precision} {m.graph} {m.kind} artifact; "
                            "it needs an fp32 single-graph export (`alignvar-edge export`)")
    recorded, mine = m.model.weights_sha256, weights_sha256(model)
    differs = model_difference(m, model.config, mine)
    if differs == "config":
        raise ArtifactError(f"{given} was exported from another model configuration "
                            f"('{m.model.name}'); export this model instead (leave out {option('export')})")
    if differs == "weights":
        command = _export_command(source)
        if recorded is None:
            # an older export: which weights it holds is not known, so neither is whether they differ
            raise ArtifactError(f"{given} records no weights SHA-256, so it cannot be checked against "
                                f"{source.describe()}: re-export with "
                                + (f"`{command}`" if command else "this model") + f", or leave out {option('export')}")
        raise ArtifactError(f"{given} was exported from {m.source.describe()} (weights SHA-256 {recorded[:12]}), "
                            f"not from the model to deploy, {source.describe()} (weights SHA-256 {mine[:12]}): "
                            "export this model " + (f"(`{command}`) " if command else "")
                            + f"and pass that, or leave out {option('export')} to export here")
    return m


def _export_command(source: ModelSource) -> str | None:
    """The `export` command of the model `source` names (None where none loads it)."""
    if source.kind == "preset":
        return f"alignvar-edge export --preset {source.name} --seed {source.seed} --out DIR"
    ref = source.reference
    return f"alignvar-edge export {shell_word(ref)} --out DIR" if ref else None


def _reuse_export(src: Path, m: Manifest, dest: Path, say: Log) -> Path:
    """Copy the export `_checked_export` verified (`m`, its manifest) into OUT; say where it is
    pruned (every engine built from it is, so their tokens differ from eager's)."""
    import shutil

    from alignvar_edge.manifest import prune_text
    prune = m.graph_facts.get("prune")
    if prune:
        say(f"      the export is pruned ({prune_text(prune)}): every engine built from it leaves out tokens at the "
            "last scales, so its tokens differ from PyTorch eager's by design; judge it on PSNR-Y/ref")
    shutil.copytree(src, dest)
    return dest


def _calibration(opts: DeployOptions, config: Any, export: Path, say: Log) -> Any:
    """One calibration set for every int8 build (OpenVINO takes it directly; quantize rebuilds the
    same set from the same arguments, so the hashes agree)."""
    from alignvar_edge.quantize.artifact import calibration_set
    tiles, val = _calib_sizes(opts, export)
    cs = calibration_set(opts.calib, config, tiles, val, opts.seed)
    say(f"      calibration set {cs.hash[:12]}: {len(cs.calibration)} tiles, {len(cs.validation)} validation tiles "
        f"({opts.calib})")
    return cs


def _calib_sizes(opts: DeployOptions, export: Path) -> tuple[int, int]:
    """Calibration and validation tiles in whole calls of the export's static batch (a
    static-batch engine is fed whole batches only)."""
    from alignvar_edge.quantize.calibration.sets import DEFAULT_TILES, DEFAULT_VALIDATION_TILES, whole_calls
    batch = read_manifest(export).static_batch
    tiles, val = (8, 8) if opts.quick else (DEFAULT_TILES, DEFAULT_VALIDATION_TILES)
    return whole_calls(tiles, batch), whole_calls(val, batch)


def _build(s: Step, export: Path, tmp: Path, model: Any, calib: Any, opts: DeployOptions, say: Log) -> Path:
    from alignvar_edge import runtimes
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    dest = tmp / "engines" / s.name
    src = export
    r = recipe(s.target, s.built_precision)
    if r.needs_quantize:
        # our ONNX pass first (Q/DQ int8, fp16 ONNX); the backend builds from its output
        tiles, val = _calib_sizes(opts, export)
        src = tmp / "quantized" / f"{s.target}-{r.precision}"
        quantize_artifact(export, src, QuantizeOptions(precision=r.precision, target=s.target, calib=opts.calib,
                                                       tiles=tiles, val_tiles=val, seed=opts.seed),
                          log=lambda m: say(f"      quantize: {m}"))
    extra: dict[str, Any] = {}
    if s.target == "coreml":
        extra = {"model": model, "proxy": not opts.quick}
    ort_int8 = tmp / "quantized" / "onnxruntime-int8"
    if s.target == "openvino" and s.built_precision == "int8" and (ort_int8 / "manifest.json").exists():
        # keep the layers the ONNX int8 search found sensitive in float in the NNCF model too
        from alignvar_edge.quantize.artifact import searched_float_groups
        extra = {"float_groups": searched_float_groups(ort_int8)}
        say(f"      openvino int8: {len(extra['float_groups'])} module groups in float, as the onnxruntime "
            "int8 search chose")
    from alignvar_edge.manifest import redacting
    from alignvar_edge.runtimes.half import build_auto
    with redacting() if opts.redact else contextlib.nullcontext():      # the engine only: it is what ships
        if _half_first(s):
            # fast half units here: the half engine if it keeps the tokens, else fp32 (named by what was built)
            path, s.built_precision = build_auto(src, s.target, lambda p: tmp / "engines" / f"{s.target}-{p}",
                                                 log=lambda m: say(f"      {m}"), **extra)
            return Path(path)
        return Path(runtimes.build(src, s.target, precision=s.built_precision,
                                   calibration=calib if r.calibration else None,
                                   out=dest, **extra))


def _half_first(s: Step) -> str | None:
    """The half precision a step builds first on this host's fast half units (else None)."""
    from alignvar_edge.runtimes.half import host_half
    return host_half(s.target, None) if s.half_first else None


def _build_label(s: Step) -> str:
    """The progress line's name of what a step builds: the half engine it tries first, if any, as
    `build` says it (`openvino-bf16 (else fp32)`), not the fp32 it may not build."""
    half = _half_first(s)
    return f"{s.target}-{half} (else fp32)" if half else s.name


def _build_detail(path: Path) -> str:
    m = read_manifest(path)
    if m.tensorrt_kit:
        return f"TensorRT build kit (trtexec.txt, build_on_device.sh): {m.tensorrt_kit.get('reason')}"
    par = parity_figures(m.parity)
    if par is None:              # a Core ML package: converted and validated, never run by its build
        return _unchecked_detail(m.backend)
    # an int8 ladder's last rung, or a Core ML package's build-time proxy
    short = (((m.quantization or {}).get("ladder") or [{}])[-1].get("short_of_gate")
             or (m.parity or {}).get("short_of_gate"))
    # an engine of a quantize output compares with that output: the step's own figures vs fp32 follow
    from alignvar_edge.quantize.records import validation_line
    quantized = validation_line((m.parity or {}).get("quantize"), (m.quantization or {}).get("target"))
    return f"build-time parity: tokens {par.tokens_pct} vs {par.reference or 'fp32'}" + (
        f", SR PSNR {par.psnr_db} dB: short of the selftest gate ({short})" if short else "") + (
        f"; quantize step: {quantized}" if quantized else "")


def _unchecked_detail(backend: str) -> str:
    """The step's line for an engine its build never ran (a Core ML package; --quick skips even its
    fp16 proxy): the bench checks its tokens where this machine runs it (Core ML on a Mac)."""
    from alignvar_edge import runtimes
    if runtimes.get_backend(backend).is_available()[0]:
        return "no build-time parity check: the bench checks its tokens against PyTorch"
    return "not run here: no parity check"


def _bench(steps: list[Step], tmp: Path, reference: tuple[Any, str, ModelSource], opts: DeployOptions, staged: Path | None,
           say: Log, progress: Progress | None) -> dict[str, Any]:
    """The headline bench at one stated thread count (--threads, default 1: the fair figure on a
    shared host); without --threads, a shorter all-core run follows as a second, labelled row."""
    from alignvar_edge.bench.host import fingerprint
    from alignvar_edge.bench.runner import BenchOptions, run_bench
    specs = [f"{s.name}={tmp / s.path}" for s in steps if s.status in ("built", "kit") and s.path]
    bopts = BenchOptions(runs=opts.runs or (5 if opts.quick else 10), warmup=opts.warmup if opts.warmup is not None
                         else (1 if opts.quick else 2), tiles=opts.bench_tiles or (4 if opts.quick else 8),
                         threads=opts.threads or 1, profile_runs=2 if opts.quick else 3, seed=opts.seed,
                         staged=str(staged) if staged else None, peak_n=1024, image_runs=2 if opts.quick else 5)
    report = run_bench(specs, reference=reference, options=bopts, log=lambda m: say(f"      bench: {m}"),
                       progress=progress)
    cores = int(fingerprint()["cpu"].get("usable_cores") or 1)
    if opts.threads is None and cores > 1:
        say(f"      bench: second row: every core ({cores} threads), shorter")
        extra = BenchOptions(runs=bopts.runs, warmup=bopts.warmup, tiles=2, threads=cores, profile_runs=0,
                             seed=opts.seed, peak_n=1024, image_runs=2)
        report["all_cores"] = all_cores_row(run_bench(specs, reference=reference, options=extra,
                                                      log=lambda m: say(f"      bench (all cores): {m}"),
                                                      progress=progress))
    for e in report["engines"]:                 # paths as they will be after the rename
        if e.get("path") and str(e["path"]).startswith(str(tmp)):
            e["path"] = str(Path(e["path"]).relative_to(tmp))
        if e.get("reason"):                     # a kit's names the script to run on the device
            e["reason"] = _published(e["reason"], tmp, Path(opts.out))
    # the summary repeats those reasons
    unavailable = report["summary"]["unavailable"]
    report["summary"]["unavailable"] = {k: _published(v, tmp, Path(opts.out)) for k, v in unavailable.items()}
    return report


def _room(opts: DeployOptions) -> tuple[Path, str]:
    """What an export's refusal for want of room names: the user's --out, not the staging folder
    (removed by the time the line is read) that deploy exports into beside it."""
    return Path(opts.out), f"choose another {option('out')}"


def _published(text: str, tmp: Path, out: Path) -> str:
    """`text` with the staging folder `tmp` named as `out`, where its files lie once published."""
    return text.replace(str(tmp), str(out))


def _machine_failure(e: Exception) -> BaseException | None:
    """`e` where it is this machine failing, not the target being built: a full disk or quota
    (`NO_SPACE`), as it is, or the host running out of memory (`out_of_memory`'s error); None
    otherwise. A GPU out of its own memory fails its target's step only: the other targets run on
    the host or another device."""
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return e
    return None if device_memory_failure(e) else out_of_memory(e)


def all_cores_row(report: dict[str, Any]) -> dict[str, Any]:
    """What an all-core bench adds beside the one-thread headline: its thread count and best rows."""
    s = report["summary"]
    return {"threads": report["settings"]["threads"], "load_average": report["host"].get("load_average"),
            "best_cpu": s.get("best_cpu"), "image": s.get("image")}


def _parity(report: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for e in report["engines"]:
        tok = ((e.get("fidelity") or {}).get("vs_reference") or {}).get("token_agreement")
        if e["kind"] == "engine":
            out[e["label"]] = {"status": e["status"], "token_agreement": tok, "meets_gate": e.get("meets_fidelity"),
                               "reason": e.get("reason")}
    return out


def _step_json(s: Step) -> dict[str, Any]:
    return {"target": s.target, "precision": s.precision, "built_precision": s.built_precision,
            "status": s.status, "detail": s.detail, "seconds": s.seconds, "path": s.path}


def _opts_json(o: DeployOptions) -> dict[str, Any]:
    return {"targets": o.targets, "precisions": list(o.requested), "calib": o.calib, "quick": o.quick,
            "runs": o.runs, "warmup": o.warmup, "threads": o.threads, "staged": o.staged, "seed": o.seed,
            "export": o.export, "batch": o.batch, "redact": o.redact}


def _plan_lines(steps: list[Step]) -> list[str]:
    w = max(len(s.name) for s in steps) if steps else 10
    return [f"{s.name:<{w}}  {s.status:<8} {('%5.0f s' % s.seconds) if s.seconds else '       '}  {s.detail}"
            for s in steps]


def _append_plan(md: Path, steps: list[Step]) -> None:
    rows = ["", "## Deploy plan", "", "| engine | status | seconds | detail |", "|---|---|---|---|"]
    rows += [f"| {s.name} | {s.status} | {s.seconds:.0f} | {s.detail.replace('|', '/')} |" for s in steps]
    # whoever receives the folder (on a board, say) learns the one command that checks it whole
    rows += ["", "Check this folder wherever it is copied: `alignvar-edge inspect DIR` (DIR: this folder) verifies "
             "every file its manifest.json lists, report.json included, and each export and engine inside it; it "
             "exits 0 when all are intact, and 2 naming the file that is not."]
    write_text(md, md.read_text(encoding="utf-8") + "\n".join(rows) + "\n")


def format_summary(out: Path, steps: list[Step], report: dict[str, Any], timings: dict[str, float]) -> str:
    from alignvar_edge.bench.render import summary_lines, terminal_table
    lines = ["", "engines built here:", *("  " + ln for ln in _plan_lines(steps)), "",
             terminal_table(report), ""]
    lines += [ln.replace("**", "") for ln in summary_lines(report)]
    lines.append(f"deploy finished in {timings.get('total_s', 0):.0f} s: {out}/report.md, report.json, "
                 f"report.png, engines/; `alignvar-edge inspect {shell_word(out)}` verifies it whole, and any copy "
                 "of it")
    return "\n".join(lines)
