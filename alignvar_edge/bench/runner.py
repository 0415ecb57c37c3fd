"""`run_bench`: measure engines and the two baselines in one run, on one machine, into one report.

Order of work (each phase on every subject before the next phase):
  1. open engines (unavailable backends become report rows with their reason);
  2. peak: a large fp32 GEMM with the same thread count (the roofline), best of a few; one more
     GEMM is timed in every latency round, so the roof is also known under the engines' load;
  3. fidelity + memory: every subject on the held-out tile pairs (PyTorch eager first: its output
     is the reference), against eager and the HR tiles; around that pass the RSS high-water mark
     (reset first) and tracemalloc's peak. This pass is also every engine's first, warming call;
  4. latency: warm-up, then `runs` rounds in which every subject runs once, in rotating order,
     so background load on a shared machine hits every engine alike; what load still moves between
     subjects within a round is the per-round spread of each ratio (stats.ratio_spread);
  5. profile: FLOPs and time per stage (PyTorch eager stages; ONNX Runtime staged graphs if given).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignvar_edge.argtypes import check_fraction, check_seed
from alignvar_edge.bench.fidelity import bicubic_tiles, fidelity
from alignvar_edge.bench.image import (FOLDER_LR, IMAGE_LR, IMAGE_RUNS, MAX_IMAGE_LR, PER_RUN, engine_shape,
                                       folder_call, folder_geometry, folder_lrs, folder_summary, image_call,
                                       image_geometry, image_summary, photo_lr)
from alignvar_edge.bench.host import OwnLoad, load_words, shared_load
from alignvar_edge.bench.memory import PeakRSS, traced_peak_mb
from alignvar_edge.bench.peak import MAX_PEAK_N
from alignvar_edge.bench.render import cache_note, pruning_note, spread_words, unverified_note
from alignvar_edge.bench.schema import ROUNDS, SPEEDUP_OF, SPEEDUPS, device_kind, meets_fidelity, new_report, reference_model_block, status_reasons
from alignvar_edge.bench.stats import latency_summary, ratio_spread, separated, spread_bounds
from alignvar_edge.bench.subjects import (BICUBIC, EAGER, EngineSpec, Subject, artifact_bytes, call_for,
                                          check_cache_dir, check_exists, open_subject, parse_spec, spec_manifest,
                                          unique_label, untimed_error)
from alignvar_edge.caller import option, python_call
from alignvar_edge.errors import AlignVAREdgeError, BackendUnavailableError, InputError
from alignvar_edge.fsmodes import not_a_folder
from alignvar_edge.manifest import Manifest, ModelSource, default_overlap, parse_preset_reference
from alignvar_edge.recipes import DEFAULT_MIN_TOKENS
from alignvar_edge.runtimes.base import Engine
from alignvar_edge.runtimes.compare import NO_REFINER

__all__ = ["RULED_FIELDS", "SUMMARY_RULES", "BenchOptions", "graph_fields", "identity_fields", "made_by_these_rules",
           "resolve_reference", "run_bench", "summary_again"]

# `log=`: called with each line to say; what it returns is ignored, so any function of a str fits
Log = Callable[[str], object]
Progress = Callable[..., Iterable[Any]]
# config keys that change what an engine computes (training-only keys and the name do not)
_IGNORED_CONFIG_KEYS = {"name", "hcc_weight", "cond_drop", "degradation"}


@dataclass
class BenchOptions:
    runs: int = 20
    warmup: int = 3
    tiles: int = 8                    # held-out tile pairs for fidelity
    images: str | None = None         # folder of HR photographs instead of the bundled held-out set
    seed: int = 0
    threads: int | None = None        # None: every usable core
    peak_n: int = 1024
    profile_runs: int = 3             # 0: no per-stage profile
    staged: str | None = None         # staged ONNX export for ONNX Runtime per-stage timing
    min_token_agreement: float = DEFAULT_MIN_TOKENS
    target_speedup: float | None = None
    label: str | None = None
    spin: bool = False                # ORT busy-waiting would steal cores from the next engine
    batch: int | None = None          # PyTorch eager batch (None: the engines' common batch)
    sequential: bool = False          # one engine in memory at a time (big models), no interleaving
    duration: float | None = None     # time rounds for this many seconds (at least `runs` rounds)
    image_size: int = IMAGE_LR        # LR side of the whole-image timing (0: none)
    image_runs: int = IMAGE_RUNS      # interleaved whole-image (and folder) rounds, after one untimed round
    image_overlap: int | None = None  # tile overlap of the whole-image timing (None: a quarter tile)
    folder_images: int = 0            # small images of the folder timing (0: none); as many rounds as image_runs
    folder_size: int = FOLDER_LR      # LR side of each of them
    need_an_engine: bool = False      # refuse (before a report) where every engine asked for is unavailable
    # where OpenVINO engines keep their compiled model (None: ALIGNVAR_EDGE_CACHE_DIR's, if set); load_s
    # then times reading it, not compiling
    cache_dir: str | os.PathLike[str] | None = None

    @python_call(overlap="image_overlap")           # --overlap's Python name
    def validate(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.tiles < 1:
            raise InputError(f"runs must be >= 1, warmup >= 0 and tiles >= 1; got {option('runs', self.runs)}, "
                             f"{option('warmup', self.warmup)}, {option('tiles', self.tiles)}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"{option('threads', self.threads)} must be >= 1")
        check_fraction("min_token_agreement", self.min_token_agreement)
        check_seed("seed", self.seed)
        if self.image_overlap is not None and self.image_overlap < 0:
            raise InputError(f"{option('overlap', self.image_overlap)} must be >= 0 LR pixels")
        if self.image_size < 0 or self.image_runs < 1:
            raise InputError(f"the image size must be >= 0 (0: no whole-image timing) and its runs >= 1; got "
                             f"{option('image_size', self.image_size)}, {option('image_runs', self.image_runs)}")
        if self.folder_images < 0 or self.folder_size < 1:
            raise InputError(f"the folder's images must be >= 0 (0: no folder timing) and their size >= 1; got "
                             f"{option('folder_images', self.folder_images)}, "
                             f"{option('folder_size', self.folder_size)}")
        if self.duration is not None and not self.duration > 0:
            raise InputError(f"{option('duration', self.duration)} must be > 0 seconds")
        if self.profile_runs < 0 or not 64 <= self.peak_n <= MAX_PEAK_N:
            raise InputError(f"the profile's runs must be >= 0 and the peak's n from 64 to {MAX_PEAK_N} (three n x n "
                             f"fp32 matrices are held); got {option('profile_runs', self.profile_runs)}, "
                             f"{option('peak_n', self.peak_n)}")
        if self.image_size > MAX_IMAGE_LR or self.folder_images * self.folder_size ** 2 > MAX_IMAGE_LR ** 2:
            raise InputError(f"the whole image must be at most {MAX_IMAGE_LR} LR px a side, and the folder's images "
                             f"x their size^2 at most {MAX_IMAGE_LR}^2 LR pixels (the images are held in memory); "
                             f"got {option('image_size', self.image_size)}, "
                             f"{option('folder_images', self.folder_images)} x "
                             f"{option('folder_size', self.folder_size)}^2")
        self._refuse_unread()

    def _refuse_unread(self) -> None:
        """An option this run would not read is refused, not dropped: its user believes it was timed.
        (One left at its default cannot be told from one not given, and changes nothing either way.)"""
        if self.staged and not self.profile_runs:
            raise InputError(f"{option('staged')} applies to a per-stage profile only: "
                             f"{option('profile_runs', 0)} runs none; leave one of them out")
        if self.folder_size != FOLDER_LR and not self.folder_images:
            raise InputError(f"{option('folder_size')} applies to {option('folder_images')} only")
        if self.image_size or self.folder_images:
            return
        whole = (f"the whole-image and folder timings only: {option('image_size', 0)} times no image, and no "
                 f"{option('folder_images')} is given")
        if self.image_overlap is not None:
            raise InputError(f"{option('overlap')} applies to {whole}")
        if self.image_runs != IMAGE_RUNS:
            raise InputError(f"{option('image_runs')} applies to {whole}")


# ------------------------------------------------------------------------------------------------
# the reference model
# ------------------------------------------------------------------------------------------------
def _from_text(text: str) -> tuple[Any, str, ModelSource]:
    """'preset:NAME[:SEED]' (random weights, as `export --preset`) or a checkpoint / bundled name."""
    from alignvar_edge.export.random_model import load_model
    preset = parse_preset_reference(text)
    if preset is not None:
        name, seed = preset
        return load_model(preset=name, seed=seed)
    return load_model(text, hashed=False)


def _candidates(manifest: Manifest, gone: list[ModelSource]) -> list[str]:
    """Reference specs an export's manifest implies: where its weights came from, then its name (not
    a redacted one's: its checkpoint's folder name, which names no folder here); a recorded
    checkpoint that no longer exists is added to `gone` (`source_checkpoint`)."""
    from alignvar_edge.model.checkpoint import bundled_at
    from alignvar_edge.runtimes.artifacts import source_checkpoint
    # first the checkpoint `compare` takes (found by content where it moved with the package)
    found = source_checkpoint(manifest, gone=gone)
    ref, name = manifest.source.reference, None if manifest.redacted else manifest.model.name
    return [c for c in ((bundled_at(found) or str(found)) if found else None, ref, name) if c]


def _recorded_reference(cand: str, manifest: Manifest) -> tuple[Any, str, ModelSource]:
    """The reference `cand` names, taken from `manifest`: a checkpoint whose files are not the ones
    the manifest records (a name that is a folder of the current directory, or another checkpoint
    now at a recorded path) is refused (CheckpointError), so that the next candidate is tried."""
    from alignvar_edge.model.checkpoint import is_checkpoint, resolve_checkpoint_dir
    from alignvar_edge.runtimes.artifacts import check_same_checkpoint
    if is_checkpoint(cand):
        check_same_checkpoint(resolve_checkpoint_dir(cand), manifest.model)
    return _from_text(cand)


def resolve_reference(reference: Any, specs: Sequence[EngineSpec]) -> tuple[Any, str, ModelSource]:
    """(AlignVAR, name, source) from a model (or such a triple), a text spec, or what the engines'
    manifests name."""
    from alignvar_edge.model.checkpoint import is_checkpoint
    from alignvar_edge.runtimes.artifacts import gone_checkpoint, model_weights, redacted_reference, warn_other_weights
    recorded = [(spec.path, m) for spec in specs if spec.path and (m := spec_manifest(spec.path)) is not None]
    manifests = dict(recorded)          # each engine's manifest, read once
    if reference is not None:
        if isinstance(reference, tuple):
            src = reference[2] if isinstance(reference[2], ModelSource) else ModelSource.other(str(reference[2]))
            model = reference[0].eval(), str(reference[1]), src
        elif not isinstance(reference, str):
            model = reference.eval(), reference.config.name, ModelSource.memory()
        else:
            try:
                model = _from_text(reference)
            except InputError as e:          # a reference that names no model: say which option took it
                raise InputError(f"{option('reference')}: {e}") from e
        given = option("reference", reference) if isinstance(reference, str) else "the reference model"
        warn_other_weights(given, model_weights(model[0]), recorded)
        return model
    tried = []
    gone: list[ModelSource] = []
    for spec in specs:
        if spec.path and is_checkpoint(spec.path):
            return _from_text(spec.path)
        manifest = manifests.get(spec.path) if spec.path else None
        if manifest is None:
            continue
        for cand in _candidates(manifest, gone):
            tried.append(cand)
            try:
                return _recorded_reference(cand, manifest)
            except (AlignVAREdgeError, OSError):
                continue
    if gone:                 # a recorded checkpoint that is gone: said as compare says it
        raise gone_checkpoint(gone[0], "the engines",
                              f"pass {option('reference', 'CHECKPOINT')}, that checkpoint where it is now")
    redacted = redacted_reference(recorded)
    raise InputError("cannot tell which PyTorch model these engines came from"
                     + (f" (tried {', '.join(tried)})" if tried else "")
                     + (f": {redacted}" if redacted else f"; pass {option('reference', 'CHECKPOINT')} "
                        "(or preset:NAME[:SEED] for random-weight exports)"))


def _same_model(sub: Subject, ref: Any) -> bool:
    """Whether an engine was built for the reference's architecture.

    Only the keys its manifest recorded are compared: a manifest written before a config field
    existed says nothing about it (reading it back fills today's default, which may differ from
    what the graph was traced with)."""
    raw = sub.manifest.config if sub.manifest else None
    mine = dict(raw) if raw else sub.engine.config.to_dict()
    theirs = ref.to_dict()
    return all(theirs.get(k) == v or (isinstance(v, list) and tuple(v) == tuple(theirs.get(k) or ()))
               for k, v in mine.items() if k not in _IGNORED_CONFIG_KEYS)


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------
def _guard(sub: Subject, what: str, fn: Callable[[], Any]) -> Any:
    """Run one measurement; a crash marks this subject failed and keeps the others' numbers."""
    if sub.status != "ok":
        return None
    try:
        return fn()
    except BackendUnavailableError as e:
        sub.fail("unavailable", str(e))
    except Exception as e:  # noqa: BLE001 - any runtime error is a finding about this engine
        sub.fail("failed", f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return None


def rounds(runs: int, duration: float | None, clock: Callable[[], float] = time.perf_counter) -> Iterator[int]:
    """Round numbers: `runs` of them, or with `duration` (s) as many as fit, never fewer than `runs`."""
    end = None if duration is None else clock() + duration
    r = 0
    while r < runs or (end is not None and clock() < end):
        yield r
        r += 1


def interleaved(subjects: list[Subject], calls: dict[int, Callable[[], object]], round_numbers: Iterable[int],
                prog: Progress, desc: str, after_round: Callable[[], None] | None = None
                ) -> dict[int, list[float]]:
    """Wall ms of every subject's call, round by round in rotating order (so background load on a
    shared machine hits every subject alike); a subject that fails drops out, keeping the others."""
    times: dict[int, list[float]] = {id(s): [] for s in subjects}
    for r in prog(round_numbers, desc=desc, unit="round"):
        live = [s for s in subjects if s.status == "ok"]
        k = r % max(1, len(live))
        for s in live[k:] + live[:k]:   # rotate: nobody always runs right after the same neighbour
            t0 = time.perf_counter()
            _guard(s, f"timed run ({desc})", calls[id(s)])
            if s.status == "ok":
                times[id(s)].append((time.perf_counter() - t0) * 1e3)
        if after_round is not None:
            after_round()
    return times


def _refuse_untimed(opts: BenchOptions, subjects: list[Subject]) -> None:
    """Where asked (`need_an_engine`), the one-line refusal of a bench none of whose engines could run
    here (`untimed_error`), before a report is made of it."""
    untimed = untimed_error([(s.label, s.status, s.reason) for s in subjects])
    if opts.need_an_engine and untimed:
        raise untimed


def _image_engine(sub: Subject) -> Any:
    """The engine a whole image runs on (PyTorch eager: at the batch its backend's upscale uses)."""
    return sub.info.get("image_engine") or sub.engine


def _batch_of(sub: Subject) -> int:
    return 1 if sub.engine is None else int(sub.engine.batch)


class _Measure:
    """The per-subject measurements (memory, fidelity, latency) for a group of open subjects."""

    def __init__(self, lr: np.ndarray, hr: np.ndarray, scale: int, opts: BenchOptions, prog: Progress, say: Log,
                 gemm: Callable[[], object], image: np.ndarray | None = None,
                 folder: list[np.ndarray] | None = None,
                 unrefined: Callable[[], Engine] | None = None):
        self.lr, self.hr, self.scale = lr, hr, scale
        # the reference for engines without VARSR's refiner (exports made with --no-refine): opened
        # and run once, where such an engine is benched
        self.unrefined = unrefined
        self.unrefined_out: tuple[np.ndarray, list[np.ndarray]] | None = None
        self.image = image                   # the whole LR image timed through each engine's tiling
        self.image_times: dict[int, list[float]] = {}
        self.folder = folder                 # small LR images timed through each engine's pooling
        self.folder_times: dict[int, list[float]] = {}
        self.gemm = gemm                     # one peak GEMM per round: the roof under the same load
        self.gemm_ms: list[float] = []
        self.ref_sr: np.ndarray | None = None
        self.ref_tok: list[np.ndarray] = []
        self.opts, self.prog, self.say = opts, prog, say
        self.times: dict[int, list[float]] = {}

    def measure(self, group: list[Subject]) -> None:
        live = [s for s in group if s.status == "ok"]
        calls = {id(s): call_for(s, self.lr, self.scale) for s in live}
        for s in live:
            s.info["batch"] = _batch_of(s)
        names = ", ".join(s.label for s in live)
        # fidelity pass (also the first, warming call); memory is measured around it: the RSS
        # high-water mark (reset first) and tracemalloc, one engine call per batch of tiles.
        # PyTorch eager comes first: its outputs are the reference of every later subject.
        for s in self.prog(live, desc="fidelity+memory", unit="engine"):
            box: list[Any] = []
            run = self._fidelity_run(s)
            p = PeakRSS()
            with p:
                heap = _guard(s, "fidelity run", lambda: traced_peak_mb(lambda: box.append(run())))
            if s.status != "ok" or not box:
                continue
            sr, tokens = box[0]
            if self.ref_sr is None:
                assert s.label == EAGER, "PyTorch eager must be measured first"
                self.ref_sr, self.ref_tok = sr, tokens
            s.info["memory"] = {**p.result(), "load_rss_mb": s.info.get("load_rss_mb"),
                                "python_heap_peak_mb": heap, "measured_on": f"fidelity pass ({len(self.lr)} tiles)"}
            ref_sr, ref_tok, ref_name = self._reference_for(s)
            s.info["fidelity"] = fidelity(sr, tokens, ref_sr, ref_tok, self.hr, self.scale, ref_name)
        for _ in self.prog(range(self.opts.warmup), desc="warm-up", unit="round"):
            for s in live:
                _guard(s, "warm-up", calls[id(s)])
        live = [s for s in live if s.status == "ok"]
        o = self.opts
        self.say(f"timing {names}: " + (f"{o.duration:g} s and at least {o.runs} rounds" if o.duration
                                          else f"{o.runs} rounds"))
        timed = interleaved(live, calls, rounds(o.runs, o.duration), self.prog, "timing", after_round=self._time_gemm)
        self.times.update(timed)
        ov = self.opts.image_overlap
        for s in live:
            eng = _image_engine(s)          # its shape, while it is open: what the call counts depend on
            s.info["image_shape"] = None if eng is None else engine_shape(eng)
        if self.image is not None:
            h, w = self.image.shape[:2]
            self.image_times.update(self._measure_whole(
                live, {id(s): image_call(_image_engine(s), self.image, self.scale, ov) for s in live}, "image",
                f"a {w}x{h} LR image ({w * self.scale}x{h * self.scale} SR)"))
        if self.folder:
            side = self.folder[0].shape[0]
            self.folder_times.update(self._measure_whole(
                live, {id(s): folder_call(_image_engine(s), self.folder, self.scale, ov) for s in live}, "folder",
                f"a folder of {len(self.folder)} {side}x{side} LR images, small images sharing calls"))

    def _measure_whole(self, live: list[Subject], calls: dict[int, Callable[[], object]], what: str,
                       desc: str) -> dict[int, list[float]]:
        """Whole images through each subject's tiling (engines) or bicubic, interleaved."""
        live = [s for s in live if s.status == "ok"]
        self.say(f"timing {desc}, 1 untimed + {self.opts.image_runs} rounds")
        interleaved(live, calls, range(1), self.prog, f"{what} warm-up")
        return interleaved([s for s in live if s.status == "ok"], calls,
                           range(self.opts.image_runs), self.prog, f"{what} timing")

    def _time_gemm(self) -> None:
        t0 = time.perf_counter()
        self.gemm()
        self.gemm_ms.append((time.perf_counter() - t0) * 1e3)

    def _reference_for(self, s: Subject) -> tuple[np.ndarray, list[np.ndarray], str | None]:
        """(SR, tokens, name) of the reference that runs the model as `s` does: eager's, or for an
        engine whose graph leaves VARSR's refiner out, the model without it (as compare holds it)."""
        assert self.ref_sr is not None
        if s.engine is None or s.engine.refines or self.unrefined is None:
            return self.ref_sr, self.ref_tok, None
        if self.unrefined_out is None:
            with self.unrefined() as ref:
                self.unrefined_out = ref.run(self.lr)
        return (*self.unrefined_out, NO_REFINER)

    def _fidelity_run(self, s: Subject) -> Callable[[], tuple[np.ndarray, Any]]:
        if s.backend == BICUBIC:
            return lambda: (bicubic_tiles(self.lr, self.scale), None)
        return lambda: s.engine.run(self.lr)


def _specs_batch(specs: Sequence[EngineSpec]) -> int:
    """The most common static batch among the engines' manifests (PyTorch eager runs that)."""
    manifests = [spec_manifest(sp.path) if sp.path else None for sp in specs]
    found = [m.static_batch for m in manifests if m is not None and m.graphs]
    return max(set(found), key=found.count) if found else 1


@dataclass
class _Run:
    """What one bench run measures with: the reference model, its baselines, the tiles and whole
    images (`measure`), the GEMM peak and the measurements; `subjects` are the engines, each added
    as it is opened (so that whatever happens, what was opened is closed)."""
    model: Any
    name: str
    source: ModelSource
    batch: int                        # PyTorch eager's
    eager: Subject
    bicubic: Subject
    peak: dict[str, Any]              # before the rounds (in_run_peak adds those timed between them)
    gemm_flops: float
    measure: _Measure
    subjects: list[Subject]

    @property
    def config(self) -> Any:
        return self.model.config


def run_bench(engines: Sequence[str], reference: Any = None, options: BenchOptions | None = None,
              log: Log | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Measure `engines` (ENGINE specs, see subjects.py) plus PyTorch eager and bicubic."""
    import torch

    from alignvar_edge.bench.host import fingerprint, run_threads
    from alignvar_edge.bench.peak import in_run_peak

    opts = options or BenchOptions()
    opts.validate()
    say = log or (lambda _m: None)
    prog = progress or (lambda it, **_k: it)
    specs = [parse_spec(e) for e in engines]
    for spec in specs:
        check_exists(spec)
    check_cache_dir(specs, opts.cache_dir)
    if opts.staged and (why := not_a_folder(opts.staged)) is not None:
        raise InputError(f"{option('staged', opts.staged)} {why}; pass a staged export "
                         "(`alignvar-edge export --graph staged`)")
    host = fingerprint()
    own = OwnLoad()
    threads = run_threads(opts.threads, host)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    run: _Run | None = None
    try:
        run = _prepare(reference, specs, opts, threads, say, prog)
        _open_and_measure(run, specs, opts, threads, say)
        flops_of = _pruned_flops(run.config)
        profile = _profile(run, opts, threads, flops_of, say) if opts.profile_runs else None
        own.record(host)
        peak = in_run_peak(run.peak, run.measure.gemm_ms, run.gemm_flops)
        entries = _entries(run, opts, flops_of, peak)
    finally:
        for s in _open_subjects(run):
            _close(s)
        torch.set_num_threads(old_threads)
    return _report(run, opts, host, threads, peak, entries, flops_of(()), profile)


def _prepare(reference: Any, specs: Sequence[EngineSpec], opts: BenchOptions, threads: int, say: Log,
             prog: Progress) -> _Run:
    """The reference model and its baselines, the held-out tiles and images, the GEMM peak."""
    from alignvar_edge.bench.peak import gemm_call, measure_peak
    from alignvar_edge.quantize.calibration.tiles import load_photos, tile_pairs
    from alignvar_edge.runtimes.torch_backend import DEFAULT_BATCH as TORCH_BATCH, TorchEngine

    model, model_name, model_source = resolve_reference(reference, specs)
    config = model.config
    if opts.image_size or opts.folder_images:
        try:        # before any timing: tiling refuses an overlap of a whole tile or more
            image_geometry((1, 1), config.lr_size, 1, opts.image_overlap)
        except InputError as err:
            raise InputError(f"--overlap: {err}") from err
    say(f"reference: {model_name} ({model_source.describe()}); {threads} threads; "
        f"{'one engine at a time' if opts.sequential else 'engines interleaved'}")
    batch = opts.batch or _specs_batch(specs)
    eager = Subject(EAGER, "torch", "baseline", precision="fp32", device="cpu",
                    engine=TorchEngine.from_model(model, batch=batch))
    # whole images: eager batches tiles as `upscale --backend torch` does
    eager.info["image_engine"] = TorchEngine.from_model(model, batch=TORCH_BATCH)
    eager.info["artifact_bytes"] = (artifact_bytes(model_name)
                                    if model_source.kind in ("bundled", "checkpoint", "upstream") else None)
    bicubic = Subject(BICUBIC, BICUBIC, "baseline", precision="fp32", device="cpu")
    photos = load_photos("heldout", opts.images)        # decoded once for tiles, image and folder
    lr, hr = tile_pairs(config, opts.tiles, seed=opts.seed, split="heldout", images=photos)
    say(f"fidelity on {opts.tiles} held-out tile pairs "
        f"({'folder ' + opts.images if opts.images else 'bundled photographs'})")
    say(f"measuring the fp32 GEMM peak ({opts.peak_n}^3, {threads} threads)")
    peak = measure_peak(opts.peak_n, threads=threads)
    gemm, gemm_flops = gemm_call(opts.peak_n, peak["library"], peak["threads"])
    image = photo_lr(opts.image_size, photos) if opts.image_size else None
    folder = folder_lrs(opts.folder_size, opts.folder_images, photos) if opts.folder_images else None
    m = _Measure(lr, hr, config.scale, opts, prog, say, gemm, image, folder,
                 unrefined=(lambda: TorchEngine.from_model(model, batch=batch, refine=False))
                 if config.has_refiner else None)
    return _Run(model, model_name, model_source, batch, eager, bicubic, peak, gemm_flops, m, [])


def _open_subjects(run: _Run | None) -> list[Subject]:
    """Eager, the engines and bicubic, in the order they are measured and reported."""
    return [] if run is None else [run.eager, *run.subjects, run.bicubic]


def _open_and_measure(run: _Run, specs: Sequence[EngineSpec], opts: BenchOptions, threads: int, say: Log) -> None:
    """Open the engines (into run.subjects, for the caller to close) and measure them with the
    baselines: interleaved, or one engine in memory at a time (--sequential)."""
    engine_specs = [sp for sp in specs if sp.backend != BICUBIC]
    taken = {EAGER, BICUBIC}
    m = run.measure
    if opts.sequential:
        # big models: one engine in memory at a time (measured, then closed); no interleaving
        m.measure([run.eager])
        for spec in engine_specs:
            run.subjects.append(unique_label(_opened(spec, run, opts, threads, say), taken))
            m.measure(run.subjects[-1:])
            _close(run.subjects[-1])
        _refuse_untimed(opts, run.subjects)
        m.measure([run.bicubic])
    else:
        for spec in engine_specs:
            run.subjects.append(unique_label(_opened(spec, run, opts, threads, say), taken))
        _refuse_untimed(opts, run.subjects)        # before minutes of timing the baselines for nothing
        m.measure(_open_subjects(run))


def _opened(spec: EngineSpec, run: _Run, opts: BenchOptions, threads: int, say: Log) -> Subject:
    """An engine opened for the bench; one built for another model than the reference fails."""
    say(f"opening {spec.text}")
    sub = open_subject(spec, threads=threads, spin=opts.spin, cache_dir=opts.cache_dir)
    if sub.engine is not None and not _same_model(sub, run.config):
        sub.fail("failed", f"built for model '{sub.engine.metadata.model.name}', not the reference "
                           f"'{run.name}'; pass the matching --reference")
    return sub


def _pruned_flops(config: Any) -> Callable[[tuple[float, ...]], dict[str, int]]:
    """Per-stage FLOPs of the rollout pruned with a set of ratios (() none), counted once per set."""
    from alignvar_edge.model.info import stage_flops
    counted: dict[tuple[float, ...], dict[str, int]] = {(): stage_flops(config)}

    def flops_of(prune: tuple[float, ...]) -> dict[str, int]:
        if prune not in counted:
            counted[prune] = stage_flops(config, prune)
        return counted[prune]
    return flops_of


def _profile(run: _Run, opts: BenchOptions, threads: int, flops_of: Callable[[tuple[float, ...]], dict[str, int]],
             say: Log) -> dict[str, Any]:
    """FLOPs and time per stage: PyTorch eager's, and a staged ONNX Runtime export's (--staged)."""
    from alignvar_edge.bench.profile import stage_profile, staged_ort_times, torch_stage_times
    say("per-stage profile")
    lr = run.measure.lr
    # eager already ran (fidelity, timing): no extra warm-up rollout
    timings = {"eager": torch_stage_times(run.model, lr[:1], opts.profile_runs, warmup=False)}
    pruned = {}
    if opts.staged:
        timings["ort_staged"] = staged_ort_times(opts.staged, lr, opts.profile_runs, threads)
        staged_prune = graph_fields(spec_manifest(opts.staged))["prune"]
        if staged_prune:
            pruned["ort_staged"] = (flops_of(tuple(staged_prune)), list(staged_prune))
    return stage_profile(flops_of(()), timings, pruned=pruned)


def _entries(run: _Run, opts: BenchOptions, flops_of: Callable[[tuple[float, ...]], dict[str, int]],
             peak: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's rows, eager first and bicubic last, with their whole-image and folder timings."""
    config, m = run.config, run.measure
    image, folder = m.image, m.folder
    mp = config.hr_size ** 2 / 1e6
    order = _open_subjects(run)
    # a pruned engine's figures count the FLOPs of its pruned rollout, not the model's
    entries = [_entry(s, m.times.get(id(s), []), mp, None if s.backend == BICUBIC else
                      sum(flops_of(tuple(graph_fields(s.manifest)["prune"] or ())).values()),
                      peak, run.model.parameter_report()["inference"]) for s in order]
    for s, e in zip(order, entries):
        shape = s.info.get("image_shape")
        if image is not None and e["status"] == "ok" and m.image_times.get(id(s)):
            geo = shape and image_geometry(image.shape[:2], overlap=opts.image_overlap, **shape)
            e["image"] = image_summary(m.image_times[id(s)], image.shape[:2], config.scale, geo)
        if folder and e["status"] == "ok" and m.folder_times.get(id(s)):
            geo = shape and folder_geometry(folder, overlap=opts.image_overlap, **shape)
            e["folder"] = folder_summary(m.folder_times[id(s)], folder[0].shape[:2], len(folder),
                                         config.scale, geo)
    return entries


def _settings(run: _Run, opts: BenchOptions, threads: int) -> dict[str, Any]:
    timed_whole = bool(opts.image_size or opts.folder_images)
    return {"runs": opts.runs, "duration_s": opts.duration, "warmup": opts.warmup, "threads": threads,
            "image_lr": opts.image_size or None,
            "image_runs": opts.image_runs if timed_whole else None,
            # the overlap used, not the flag: a default and the same value given are one setting
            "image_overlap": (opts.image_overlap if opts.image_overlap is not None
                              else default_overlap(run.config.lr_size)) if timed_whole else None,
            "folder_images": opts.folder_images or None,
            "folder_lr": opts.folder_size if opts.folder_images else None,
            "fidelity_tiles": opts.tiles, "images": opts.images or "bundled held-out photographs",
            # what the fidelity figures were measured on, whatever the folder's path: `bench merge`
            # compares this (the HR crops: exact on every platform; the LR is computed from them)
            "fidelity_tiles_sha256": hashlib.sha256(run.measure.hr.tobytes()).hexdigest(),
            "seed": opts.seed, "eager_batch": run.batch, "interleaved": not opts.sequential,
            "ort_spin": opts.spin, "min_token_agreement": opts.min_token_agreement,
            "target_speedup": opts.target_speedup}


def _report(run: _Run, opts: BenchOptions, host: dict[str, Any], threads: int, peak: dict[str, Any],
            entries: list[dict[str, Any]], flops: dict[str, int], profile: dict[str, Any] | None) -> dict[str, Any]:
    summary = _summary(entries, opts, sum(flops.values()), peak["gflops"], _median_gflops(peak))
    summary["shared_load"] = shared_load(host)
    model = reference_model_block(run.model, run.name, run.source.describe(), flops)
    return new_report(label=opts.label, host=host, model=model, settings=_settings(run, opts, threads), peak=peak,
                      engines=entries, summary=summary, profile=profile,
                      notes=_notes(host, entries, interleaved=not opts.sequential))


def _close(s: Subject) -> None:
    extra = s.info.pop("image_engine", None)
    if extra is not None:
        extra.close()
    if s.engine is not None:
        try:
            s.engine.close()
        finally:
            s.engine = None


def precision_fields(s: Subject) -> dict[str, Any]:
    """What the runtime computed in (OpenVINO: the compiled INFERENCE_PRECISION_HINT), when it says,
    and what the engine was built and checked for: every report's row carries both, so its label
    never claims a precision that was not computed."""
    return {"compute_precision": s.info.get("compute_precision"),
            "expected_precision": s.info.get("expected_precision")}


def graph_fields(manifest: Manifest | None) -> dict[str, Any]:
    """What graph an engine runs, from its manifest: token pruning ratios, the attention form
    ('explicit'/'fused') and the ONNX opset it was exported at (None where not recorded). Every
    report's entry carries them: two engines of one backend and precision can run different graphs,
    and `bench merge` warns where one row lines up such engines."""
    if manifest is None:
        return {"prune": None, "attention": None, "opset": None}
    return {"prune": manifest.graph_facts.get("prune") or None, "attention": manifest.attention_form,
            "opset": manifest.opset}


def identity_fields(path: str | None, manifest: Manifest | None) -> dict[str, Any]:
    """Which artifact an engine entry timed, from its manifest: `content_sha256` (the content hash
    its manifest.json records; null where it records none, so that the manifest's own fields,
    build_parity included, are unverified), `files_sha256` (its graph files and their external data,
    `manifest.graph_files_sha256`: the same for a rebuild that wrote the same ones; null for a
    TensorRT engine, whose plan its GPU compiles anew at each build) and `built_from` (the export it
    was built from, as `extra.source` records it, with that export's `files_sha256`). Nothing
    without a manifest (a checkpoint, a baseline)."""
    if manifest is None or path is None:
        return {}
    from alignvar_edge.manifest import graph_files_sha256, recorded_content_hash
    built = manifest.built_from
    return {"content_sha256": recorded_content_hash(path), "files_sha256": graph_files_sha256(manifest),
            "built_from": built.to_json() if built else None}


def _median_gflops(peak: dict[str, Any]) -> float | None:
    """The median rate of the GEMMs timed between the rounds (None where none was): the roof under
    the load the engines' median times saw."""
    return (peak.get("in_run") or {}).get("median_gflops")


def _entry(s: Subject, times_ms: list[float], mp: float, flops: int | None, peak: dict[str, Any],
           inference_params: int) -> dict[str, Any]:
    e: dict[str, Any] = {"label": s.label, "backend": s.backend, "kind": s.kind, "status": s.status,
                         "reason": s.reason, "path": s.path, "precision": s.precision, "device": s.device}
    e.update(precision_fields(s))
    e.update(graph_fields(s.manifest))
    e.update(identity_fields(s.path, s.manifest))
    size = s.info.get("artifact_bytes")
    e["artifact_bytes"] = size
    e["bytes_per_parameter"] = round(size / inference_params, 3) if size and s.backend != BICUBIC else None
    if s.status != "ok":
        return e
    e["batch"] = s.info.get("batch", 1)
    e["parallel_requests"] = s.info.get("parallel_requests", 1)
    e["load_s"] = s.info.get("load_s")
    e.update(s.info.get("cache") or {})
    e["latency"] = latency_summary(times_ms, e["batch"], mp, flops, peak["gflops"], _median_gflops(peak))
    e["flops_per_tile"] = flops          # what GFLOP/s and % peak count: a pruned engine's own
    e["memory"] = s.info.get("memory")
    e["fidelity"] = s.info.get("fidelity")
    if s.manifest and s.manifest.parity:
        par = s.manifest.parity
        e["build_parity"] = {k: par.get(k) for k in ("tokens", "psnr_db", "reference", "passed", "target_met")
                             if k in par} or None
    return e


def _tile_p50(e: dict[str, Any]) -> float | None:
    lat = e.get("latency")
    return lat["per_tile_ms"]["p50"] if lat else None


# Core ML's compute units (CPU, GPU, Neural Engine) are parts of one Apple SoC beside the CPU that
# eager PyTorch runs on: on a Mac the question "which engine is fastest here" takes them all in
_SOC_BACKENDS = ("coreml",)


def _in_best_cpu_choice(e: dict[str, Any]) -> bool:
    """Whether an engine row competes for the summary's best CPU engine: it ran on this machine's
    CPU (OpenVINO's AUTO included) or, through Core ML, on its Apple SoC's compute units; another
    runtime's GPU, DLA or NPU does not."""
    return e["backend"] in _SOC_BACKENDS or device_kind(e["backend"], e.get("device") or "cpu") == "cpu"


def _compute_units(e: dict[str, Any]) -> dict[str, Any]:
    """A summary's best engine's `compute_units` where it ran through Core ML (CPU_AND_NE, ALL, ...):
    the report's lines then say where it ran, and claim no thread count for it (Core ML takes none)."""
    return {"compute_units": e.get("device")} if e["backend"] in _SOC_BACKENDS else {}


# The version of the rules a summary chooses by: which rows compete for its best engine (per tile,
# whole image, folder) and how the best is picked, which rivals it is not told from
# (within_noise_of), and the target's verdict. A summary records it (`rules`). Bump it whenever one
# of those rules changes: reading a report (integrity.check_figures) checks its choices only where
# they were made by these rules, so a report written under earlier ones is not called edited.
SUMMARY_RULES = 1
# a summary's figures that follow from those rules beyond which engines it names (a report of other
# rules keeps its choices, and these with them)
RULED_FIELDS = ("within_noise_of", "target_met", "target_within_spread")


def made_by_these_rules(report: dict[str, Any]) -> bool:
    """Whether a report's summary chose by SUMMARY_RULES (reports before the field: no)."""
    return (report.get("summary") or {}).get("rules") == SUMMARY_RULES


def _choices(summary: dict[str, Any]) -> dict[str, str | None]:
    """The labels of the best engines a summary names, per tile (best_cpu), whole image and folder."""
    def label(block: Any) -> str | None:
        return block.get("label") if isinstance(block, dict) else None
    return {"best_cpu": label(summary.get("best_cpu")),
            **{what: label((summary.get(what) or {}).get("best_cpu")) for what in ("image", "folder")}}


def _best(where: str, rivals: list[dict[str, Any]], by: Callable[[dict[str, Any]], Any],
          entries: list[dict[str, Any]], chosen: dict[str, str | None] | None) -> dict[str, Any] | None:
    """The best of `rivals` by `by`; where `chosen` is given (a report of other rules), the entry it
    names for `where` instead, chosen or not by today's rules."""
    if chosen is None:
        return max(rivals, key=by, default=None)
    return next((e for e in entries if e["label"] == chosen.get(where)), None)


def _summary(entries: list[dict[str, Any]], opts: BenchOptions, flops_total: float,
             peak_gflops: float | None, median_gflops: float | None = None,
             chosen: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Speed-ups against eager (set on every timed entry, with their per-round spreads where the
    subjects were interleaved), the best CPU engine and the engines it is not told from, the fp32
    roofline bound at the run's best and median GEMM rates, and the target's verdict. `chosen`
    (`_choices` of a report of other rules): the best engines it named, kept instead of chosen."""
    eager = next(e for e in entries if e["label"] == EAGER)
    base = _tile_p50(eager)
    rows = []
    for e in entries:
        p50 = _tile_p50(e)
        if p50 and base:
            e[SPEEDUP_OF["tile"]] = round(base / p50, 3)
        tok = ((e.get("fidelity") or {}).get("vs_reference") or {}).get("token_agreement")
        e["meets_fidelity"] = meets_fidelity(tok, opts.min_token_agreement)
        if e["kind"] == "engine" and e["status"] == "ok" and e["meets_fidelity"]:
            rows.append(e)
    paired = not opts.sequential
    _set_round_spreads(SPEEDUP_OF["tile"], eager, entries, _tile_ms, paired)
    cpu = [e for e in rows if _in_best_cpu_choice(e)]
    best = _best("best_cpu", cpu, lambda e: e.get(SPEEDUP_OF["tile"]) or 0, entries, chosen)
    out: dict[str, Any] = {
        "rules": SUMMARY_RULES,
        "eager_p50_ms_per_tile": base,
        "min_token_agreement": opts.min_token_agreement,
        "engines_meeting_fidelity": [e["label"] for e in rows],
        **status_reasons(entries),
        "best_cpu": None, "target_speedup": opts.target_speedup, "target_met": None,
        # roofline bound: an fp32 engine cannot beat FLOPs / best measured GEMM rate per tile
        "fp32_bound_ms_per_tile": _bound_ms(flops_total, peak_gflops),
    }
    if base and out["fp32_bound_ms_per_tile"]:
        out["fp32_bound_speedup"] = round(base / out["fp32_bound_ms_per_tile"], 2)
        if median_gflops:
            # the same at the GEMMs' median rate between the rounds: set against eager's median
            # under that load, not the best GEMM of a quiet moment
            out["fp32_bound_ms_per_tile_median"] = _bound_ms(flops_total, median_gflops)
            out["fp32_bound_speedup_median"] = round(base / out["fp32_bound_ms_per_tile_median"], 2)
    if best is not None:
        out["best_cpu"] = {"label": best["label"], "speedup_vs_eager": best.get(SPEEDUP_OF["tile"]),
                           "p50_ms_per_tile": _tile_p50(best),
                           "token_agreement": best["fidelity"]["vs_reference"]["token_agreement"],
                           **_compute_units(best), **_beside_best(best, cpu, SPEEDUP_OF["tile"], _tile_ms)}
    out["image"] = _whole_summary("image", eager, entries, cpu, paired, chosen)
    out["folder"] = _whole_summary("folder", eager, entries, cpu, paired, chosen)
    if opts.target_speedup:
        out.update(_target(opts.target_speedup, out["best_cpu"] or {}))
    return out


def summary_again(report: dict[str, Any], keep_choices: bool = False) -> dict[str, Any] | None:
    """A report's ratios to eager and its summary made again from its own entries, settings, FLOPs
    and peak, as `_report` made them: what reading a report checks its stored ones against. The
    ratios (and their per-round spreads) are set anew on `report["engines"]`, in place: pass a copy.
    `keep_choices`: the best engines the report names are kept, not chosen again (a report of other
    rules, `made_by_these_rules`), and their figures made again from those engines' own.
    None, and no ratios, where the report timed no PyTorch eager (a device report)."""
    entries = report["engines"]
    for e in entries:                   # a ratio `_summary` would not set again must not stay behind
        for key in [k for k in e if k.removesuffix(ROUNDS) in SPEEDUPS]:
            del e[key]
    if not any(e["label"] == EAGER for e in entries):
        return None
    settings, peak = report["settings"], report.get("peak") or {}
    opts = BenchOptions(min_token_agreement=settings.get("min_token_agreement", DEFAULT_MIN_TOKENS),
                        sequential=not settings.get("interleaved", True),
                        target_speedup=settings.get("target_speedup"))
    flops = sum((report["model"].get("flops_per_stage") or {}).values())
    chosen = _choices(report.get("summary") or {}) if keep_choices else None
    return _summary(entries, opts, flops, peak.get("gflops"), _median_gflops(peak), chosen)


def _bound_ms(flops: float, gflops: float | None) -> float | None:
    """The fastest a tile of `flops` FLOPs can run at `gflops` GFLOP/s (ms)."""
    return round(flops / gflops / 1e6, 3) if gflops else None


def _target(target: float, best: dict[str, Any]) -> dict[str, Any]:
    """--target-speedup's verdict on the best CPU engine (`best`, a summary's best_cpu or {}):
    met or missed, and where the target lies within its per-round spread, that one run does not
    settle which."""
    got = best.get("speedup_vs_eager") or 0.0
    met = got >= target
    verdict = (f"met: {got:.2f}x >= {target:g}x" if met else
               f"missed: best {got:.2f}x vs {target:g}x target ({got / target:.0%} of it; "
               f"the best engine would need to be {target / got if got else float('inf'):.2f}x faster)")
    spread, within = best.get("speedup_vs_eager_rounds"), False
    if spread is not None:
        low, high, _ = spread_bounds(spread)
        within = low <= target <= high
        if within:
            verdict += (f"; but {target:g}x lies within its per-round spread ({spread_words(spread)}): "
                        "not settled by this run")
    return {"target_met": met, "target_verdict": verdict, "target_within_spread": within}


def _tile_ms(e: dict[str, Any]) -> list[float]:
    """An entry's time per tile in each timed round, in round order (its raw call times / its batch)."""
    lat = e.get("latency") or {}
    return [t / lat["tiles_per_call"] for t in lat.get("raw_call_ms") or []]


def _whole_ms(what: str) -> Callable[[dict[str, Any]], list[float]]:
    """An entry's time of the whole image (or folder, `what`) in each timed round, in round order."""
    return lambda e: (e.get(what) or {}).get("raw_ms") or []


def _set_round_spreads(key: str, eager: dict[str, Any], entries: list[dict[str, Any]],
                       times: Callable[[dict[str, Any]], list[float]], paired: bool) -> None:
    """Beside each entry's ratio `key` (eager's p50 / its own), `key`_rounds: the per-round spread of
    eager's time / its own (`ratio_spread`), where the subjects were timed in the same rounds."""
    if not paired:
        return
    for e in entries:
        spread = ratio_spread(times(eager), times(e)) if e is not eager and e.get(key) else None
        if spread is not None:
            e[key + ROUNDS] = spread


def _beside_best(best: dict[str, Any], rivals: list[dict[str, Any]], key: str,
                 times: Callable[[dict[str, Any]], list[float]]) -> dict[str, Any]:
    """What a summary's best entry records beside its ratio `key`: that ratio's per-round spread and
    `within_noise_of`, the rivals it is not told from beyond one run's noise (`separated`); nothing
    where its ratio has no per-round spread (subjects timed one after another)."""
    spread = best.get(key + ROUNDS)
    if spread is None:
        return {}

    def told_apart(other: dict[str, Any]) -> bool:
        theirs, paired = other.get(key + ROUNDS), ratio_spread(times(other), times(best))
        return theirs is not None and paired is not None and separated(spread, theirs, paired)
    return {"speedup_vs_eager_rounds": spread,
            "within_noise_of": [e["label"] for e in rivals if e is not best and e.get(key) and not told_apart(e)]}


def _whole_p50(e: dict[str, Any], what: str) -> float | None:
    return ((e.get(what) or {}).get(PER_RUN[what]) or {}).get("p50")


def _whole_summary(what: str, eager: dict[str, Any], entries: list[dict[str, Any]],
                   fit_cpu: list[dict[str, Any]], paired: bool = True,
                   chosen: dict[str, str | None] | None = None) -> dict[str, Any] | None:
    """Speed-ups of the whole image (or folder, `what`) against eager's (set on every timed entry,
    with their per-round spreads where `paired`) and the best CPU engine by its MP/s among those
    meeting the fidelity gate (or the one `chosen` names, `_summary`)."""
    base = _whole_p50(eager, what)
    if not base:
        return None
    key = SPEEDUP_OF[what]
    for e in entries:
        p50 = _whole_p50(e, what)
        if p50:
            e[key] = round(base / p50, 3)
    _set_round_spreads(key, eager, entries, _whole_ms(what), paired)
    best = _best(what, [e for e in fit_cpu if _whole_p50(e, what)], lambda e: e[key], entries, chosen)
    ref = eager[what]
    return {**{k: ref[k] for k in ("lr", "sr", "images", "image_lr", "image_sr") if k in ref},
            "eager_mp_per_s": ref["megapixels_per_s"], "eager_batch": ref.get("batch"),
            "best_cpu": None if best is None else {
                "label": best["label"], "mp_per_s": best[what]["megapixels_per_s"],
                "batch": best[what].get("batch"), "speedup_vs_eager": best[key], **_compute_units(best),
                **_beside_best(best, fit_cpu, key, _whole_ms(what))}}


def _notes(host: dict[str, Any], entries: list[dict[str, Any]], interleaved: bool = True) -> list[str]:
    notes = ["Latency: wall time of one engine call (Engine.infer) on the engine's static batch, "
             "divided by the batch; subjects interleaved round by round.",
             "Image: wall time of one whole LR image through Engine.upscale's tiling (overlapping tiles in "
             "the engine's batches, the last one padded where the batch is static, blended); MP/s counts the "
             "image's SR pixels, not the tiles'. PyTorch eager runs it at the torch backend's default batch. "
             "A folder (when timed) "
             "runs through Engine.upscale_many's pooling, as `upscale DIR` does (reading and writing files "
             "not timed): small images share the engine's calls.",
             "Roofline: achieved GFLOP/s = matmul+conv FLOPs per tile (flops_per_tile: a pruned engine's are "
             "those of its pruned rollout) / p50 time per tile (and / the "
             "fastest time: roofline_fraction_best), against the best fp32 GEMM timed in this run, before "
             "and between the rounds, and (roofline_fraction_median) p50 against the median of those timed "
             "between the rounds, under the same load; int8/fp16 engines are set against the same fp32 peak.",
             "Memory: peak_delta_mb is the process RSS peak during the fidelity pass (one engine call per "
             "batch of tiles) above the RSS before it; load_rss_mb the RSS growth when the engine was opened "
             "(the first engine of a runtime also pays for loading its library); python_heap_peak_mb is "
             "tracemalloc (host-side numpy buffers only, not runtime-native memory)."]
    shared = shared_load(host)
    if shared:
        notes.append(f"The machine was shared: {load_words(shared)}; absolute times are inflated"
                     + (", and interleaving protects the ratios between subjects only partly: the per-round "
                        "spread of each ratio (speedup_vs_eager_rounds) says how much the load still moved it. "
                        if interleaved else
                        ", and the engines were timed one after another (--sequential), so neither are the ratios "
                        "between them. ") + "With more "
                     "runnable threads than cores, multi-threaded runs also measure contention (PyTorch's "
                     "OpenMP barriers suffer most): compare with --threads 1.")
    notes += [n for n in (pruning_note(entries), unverified_note(entries), cache_note(entries)) if n]
    stray = [e["label"] for e in entries if e["kind"] == "engine" and e.get("precision") == "fp32"
             and not e.get("prune")
             and (((e.get("fidelity") or {}).get("vs_reference") or {}).get("token_agreement") or 1.0) < 0.9]
    if stray:
        notes.append(f"fp32 engine(s) {', '.join(stray)} choose different tokens than the reference on most "
                     "tiles: they were probably exported from other weights (a re-trained checkpoint?); "
                     "re-export, or pass the matching --reference.")
    if any(e["status"] == "unavailable" for e in entries):
        notes.append("Unavailable engines are listed with the reason; no number is reported for them.")
    return notes
