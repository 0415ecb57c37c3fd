"""On-device self-test: build an engine from the bundled model here, check it against golden
outputs shipped in the package, time it, and print a report a user can paste into an issue.

Golden outputs (`golden.safetensors` beside the bundled weights) hold a few held-out LR tiles and
the PyTorch reference's tokens and SR tiles for them, made once by `golden.make_golden`
(`golden.GOLDEN_COMMAND` on the command line).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.caller import WarningFilter, warn_caller, warnings_changed
from alignvar_edge.cpuinfo import host_info, host_line
from alignvar_edge.errors import ArtifactError, BackendUnavailableError, HostToolsError, InputError, OtherVersionWarning
from alignvar_edge.extras import install_command
from alignvar_edge.fsmodes import is_temporary_name, unwritable_folder
from alignvar_edge.lazy import import_host
from alignvar_edge.manifest import (MANIFEST_FILE, Manifest, load_verified, readable, sha256_file, source_digest,
                                    token_share, tool_versions, unverified_caution)
from alignvar_edge.model.bundled import DEFAULT_CHECKPOINT
from alignvar_edge.model.checkpoint import WEIGHTS_FILE, is_checkpoint
from alignvar_edge.name_text import shell_word
from alignvar_edge.recipes import BACKEND, CALIB_TILES, Recipe, recipe
from alignvar_edge.runtimes.base import precision_label
from alignvar_edge.runtimes.golden import GOLDEN_FILE, engine_golden, load_golden, read_golden

Log = Callable[[str], None]


# the load's warning that another runtime version built the engine: the report's `runtime_note` says it
_VERSION_IN_REPORT = WarningFilter("ignore", category=OtherVersionWarning)


def _weights_sha256(ckpt: Path) -> str:
    from alignvar_edge.model.alignvar import load_pretrained
    from alignvar_edge.model.checkpoint import weights_sha256
    return weights_sha256(load_pretrained(ckpt))


def cache_dir() -> Path:
    """Where selftest keeps its exports: ALIGNVAR_EDGE_CACHE, else $XDG_CACHE_HOME/alignvar-edge, else
    ~/.cache/alignvar-edge. An empty or relative XDG_CACHE_HOME counts as unset (the XDG spec's rule),
    not as the working folder. Made, and checked, only where an export is written (`cached_export`):
    a read-only cache holding the export is used as it is."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return Path(os.environ.get("ALIGNVAR_EDGE_CACHE") or os.path.join(
        xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache"), "alignvar-edge"))


def _check_writable_cache(base: Path, exports: Path) -> None:
    """The `exports` folder of the cache `base`, made and writable before an export; selftest has no
    output option, so a folder it cannot write names the variable that chooses another."""
    try:
        exports.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot make the export cache {base} ({e.strerror or e}); set ALIGNVAR_EDGE_CACHE "
                         "to a writable folder") from e
    if unwritable_folder(exports / "new") is not None:
        raise InputError(f"the export cache {base} is not writable; set ALIGNVAR_EDGE_CACHE to a writable folder")


def export_cache_key(ckpt: Path) -> str:
    """What makes one export differ from another: the weights, this code and the export tool chain."""
    tools = tool_versions(("torch", "onnx", "onnxscript"))
    parts = [sha256_file(ckpt / WEIGHTS_FILE), source_digest(), *(f"{k}={v}" for k, v in sorted(tools.items()))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_export(ckpt: Path, log: Log) -> tuple[Path, float, bool]:
    """The checkpoint's single-graph ONNX export, made once per weights, code and tool versions.

    The cache is the tool's own, so nothing in it is the user's to repair: an entry that fails
    verification is made again, with a warning, and what a killed run left of one is removed
    (`_remove_leftovers`). One selftest makes an entry at a time; another waits, then uses it."""
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.model.alignvar import load_pretrained
    base = cache_dir()
    out = base / "exports" / export_cache_key(ckpt)
    if _verified(out):
        return out, 0.0, True
    _check_writable_cache(base, out.parent)
    with _making(out, log):
        if _verified(out):                   # another selftest made it while this one waited
            return out, 0.0, True
        if os.path.lexists(out):
            warn_caller(f"selftest's cached export {out} failed verification (damaged, or changed since it was "
                        "made); it is made again")
            shutil.rmtree(out)
        log(f"exporting {ckpt.name} to ONNX (once; cached in {out.parent})")
        t0 = time.perf_counter()
        export_onnx(load_pretrained(ckpt), out, graph="single", force=True, checkpoint=ckpt,
                    room=(base, "set ALIGNVAR_EDGE_CACHE to a folder on a disk with more room"))
    return out, time.perf_counter() - t0, False


def _verified(entry: Path) -> bool:
    """Whether the cache's `entry` is there and passes verification as an artifact."""
    if not (entry / MANIFEST_FILE).is_file():
        return False
    try:
        load_verified(entry)
    except ArtifactError:
        return False
    return True


def _lock_file(entry: Path) -> Path:
    return entry.with_name(f".{entry.name}.lock")


@contextlib.contextmanager
def _making(entry: Path, log: Log) -> Iterator[None]:
    """Hold the lock file of the cache's `entry` (`.KEY.lock` beside it) while it is made, and remove
    the leftovers of killed runs first. The OS lets go of a lock when its process ends however it
    ends (SIGKILL too), so a lock no one holds means no run is making that entry. Where the file
    system takes no locks (some network mounts) the entry is made without one, and nothing removed."""
    with open(_lock_file(entry), "a") as lock:
        if _locked(lock, entry, log):
            _remove_leftovers(entry.parent, made_here=entry.name)
        yield


def _locked(lock: Any, entry: Path, log: Log) -> bool:
    """Take the lock of the open lock file `lock`, waiting for a run that holds it; False where this
    file system takes no locks."""
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another selftest that is exporting the same model into {entry.parent}")
            fcntl.flock(lock, fcntl.LOCK_EX)
    except OSError:
        return False
    return True


def _remove_leftovers(exports: Path, made_here: str) -> None:
    """Remove the hidden folders in `exports` that runs killed while making an entry left (the
    export's `.KEY.tmp-*`, a replaced entry's `.KEY.old-PID`) where no live run is making that entry:
    its lock is free, or held here (`made_here`, the entry this run makes). One whose entry has no
    lock file was left by an older version, which took none: a run of it may be working there now,
    so it is left alone. Only folders untouched for `_STALE_S` go: a cache shared between machines
    whose locks are each machine's own (an NFS mount with local locks) shows another machine's
    live run as free."""
    now = time.time()
    for leftover in exports.iterdir():
        if not is_temporary_name(leftover.name) or now - leftover.stat().st_mtime < _STALE_S:
            continue
        key = leftover.name[1:].split(".", 1)[0]
        if key == made_here or _lock_is_free(exports / f".{key}.lock"):
            shutil.rmtree(leftover, ignore_errors=True)


_STALE_S = 3600.0


def _lock_is_free(path: Path) -> bool:
    """Whether the lock file `path` exists and no process holds its lock. Asked as a shared lock,
    which a file opened for reading can take on NFS too (an exclusive one needs it open for writing)."""
    try:
        with open(path, "r") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:                  # missing, held (BlockingIOError), or no locks on this file system
        return False
    return True


def selftest(backend: str, model: str = DEFAULT_CHECKPOINT, device: str | None = None,
             precision: str | None = None, runs: int = 10, workdir: str | None = None,
             log: Log = lambda _m: None, cuda_graphs: bool | None = None,
             threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Build, verify against golden outputs and time one backend here; returns the report.
    `cuda_graphs=False`: a torch engine on CUDA runs eagerly (the torch load option); `threads`:
    the CPU threads it runs on (the load option; None: the runtime's default); `cache_dir`: where an
    OpenVINO engine keeps its compiled model (the load option)."""
    from alignvar_edge import __version__, runtimes
    from alignvar_edge.model.checkpoint import resolve_checkpoint_dir

    _require_pytorch()
    b = runtimes.get_backend(backend)
    ckpt = resolve_checkpoint_dir(model)
    lr, golden_sr, golden_tok = load_golden(ckpt)
    r = recipe(b.name, precision)
    precision = r.precision
    report: dict[str, Any] = {
        "alignvar_edge": __version__, "backend": b.name, "backend_version": b.version(),
        "host": host_info(), "model": model, "precision": precision, "golden_tiles": int(lr.shape[0])}
    ok, why = b.can_build()
    if not ok:
        raise BackendUnavailableError(f"{b.name} cannot be tested here: {why}")
    # the state-dict hash engines record (manifest model.weights_sha256): one fingerprint for
    # `--backend` and `--engine` reports of the same weights
    report["weights_sha256"] = _weights_sha256(ckpt)[:16]
    tmp = tempfile.TemporaryDirectory(prefix="alignvar-selftest-", dir=workdir)
    try:
        t0 = time.perf_counter()
        if b.name == "torch":
            engine_dir: Path = ckpt
        elif b.name == "coreml":
            engine_dir = runtimes.build(ckpt, "coreml", precision, out=Path(tmp.name) / "engine", device=device)
        else:
            export, export_s, cached = cached_export(ckpt, log)
            report.update(export_s=round(export_s, 2), export_cached=cached, export_dir=str(export))
            export, calibration = _quantized(export, r, Path(tmp.name) / "quantized", log)
            log(f"building the {b.name} engine ({precision})")
            engine_dir = runtimes.build(export, b.name, precision, calibration=calibration,
                                        out=Path(tmp.name) / "engine", device=device)
        report["build_s"] = round(time.perf_counter() - t0, 2)
        if b.name == "tensorrt" and not b.is_available()[0]:
            report.update(result="BUILT-ONLY", reason=b.is_available()[1] +
                          "; a build kit was written instead of an engine and is not kept: write one "
                          "with `alignvar-edge build EXPORT --target tensorrt --out KIT`")
            return report
        t0 = time.perf_counter()
        opts = _load_options(report, cuda_graphs, threads, cache_dir)
        with warnings_changed(_VERSION_IN_REPORT), runtimes.load(engine_dir, backend=b.name, device=device,
                                                                 **opts) as engine:
            report["load_s"] = round(time.perf_counter() - t0, 2)
            report["device"] = engine.device
            report.update(cache_record(engine))
            report.update(_runtime_versions(b, engine.metadata))
            try:
                sr, tok = engine.run(lr)
            except BackendUnavailableError as e:          # Core ML off macOS: built and validated only
                # the engine named in the message lives in this run's temporary folder, which goes
                return _built_only(report, engine, str(e).split(";")[0] + "; the package built and validated "
                                   "here and is not kept: build one with `alignvar-edge build "
                                   f"{shell_word(model)} --target coreml --out DIR`, then run "
                                   "`alignvar-edge selftest --engine DIR` on a Mac")

            _check_and_time(engine, lr, sr, tok, golden_sr, golden_tok, runs, report)
        return report
    finally:
        tmp.cleanup()


def _quantized(export: Path, r: Recipe, out: Path, log: Log) -> tuple[Path, Any]:
    """What the build of recipe `r` starts from: (the artifact, its calibration set or None).
    Both ways an int8 is calibrated, on the builtin photographs with quantize's defaults (selftest
    takes no --calib): our ONNX pass quantizes the export first (ONNX Runtime), or the build takes the
    set and quantizes itself (OpenVINO's NNCF)."""
    if not (r.needs_quantize or r.calibration):
        return export, None
    from alignvar_edge.quantize.artifact import QuantizeOptions, calibration_for, quantize_artifact
    opts = QuantizeOptions(precision=r.precision, target=r.backend)
    if r.needs_quantize:
        log(f"quantizing the export for {r.backend} {r.precision} (builtin calibration photos)")
        return quantize_artifact(export, out, opts, log=log), None
    log(f"calibrating the {r.backend} {r.precision} build (builtin calibration photos)")
    return export, calibration_for(export, opts, log)


def _require_pytorch() -> None:
    """--backend builds its engine from the package's model, which needs PyTorch (the host tools); a
    device install checks an engine built on the host instead, with `--engine`, which needs neither."""
    try:
        import_host("alignvar_edge.model.alignvar", "--backend (it builds an engine from the package's model here)")
    except HostToolsError as e:
        raise HostToolsError(f"{e}; on a device, check an engine built on the host instead: "
                             "alignvar-edge selftest --engine ENGINE_DIR", name=e.name) from e


def _load_options(report: dict[str, Any], cuda_graphs: bool | None, threads: int | None,
                  cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The load options `cuda_graphs` (torch), `threads` and `cache_dir` (OpenVINO) that are set, the
    first two also recorded in the report: a latency means little without the threads it ran on. The
    cache the engine used is recorded once it is open (`cache_record`: the variable may set it)."""
    opts = {k: v for k, v in (("cuda_graphs", cuda_graphs), ("threads", threads)) if v is not None}
    report.update(opts)
    return {**opts, **({"cache_dir": cache_dir} if cache_dir is not None else {})}


def cache_record(engine: Any) -> dict[str, Any]:
    """A report's record of the compiled-model cache an engine loaded with (OpenVINO's; nothing for
    an engine without one): `loaded_from_cache` says that a load time timed reading the compiled model,
    not compiling it. `cache_dir` is the folder's name alone: reports (selftest's, bench's) are shared,
    and ALIGNVAR_EDGE_CACHE_DIR's folder is usually in the home folder."""
    folder = getattr(engine, "cache_dir", None)
    if folder is None:
        return {}
    return {"cache_dir": Path(folder).resolve().name, "loaded_from_cache": getattr(engine, "loaded_from_cache", None)}


def _runtime_versions(backend: Any, m: Manifest) -> dict[str, Any]:
    """A report's record of the runtime version that built the engine of `m` and checked it
    (`backend_version_built`), beside the one running it (`backend_version`), and `runtime_note`
    where they differ: what this selftest measures is the runtime here, not the build's checks."""
    other = backend.other_version(m)
    return {"backend_version_built": backend.built_version(m), **({"runtime_note": other} if other else {})}


def _check_and_time(engine: Any, lr: np.ndarray, sr: np.ndarray, tok: list[np.ndarray],
                    golden_sr: np.ndarray, golden_tok: list[np.ndarray], runs: int,
                    report: dict[str, Any]) -> None:
    """Tokens and PSNR of (sr, tok) against golden, the verdict, and the per-tile latency."""
    from alignvar_edge.export.parity import psnr, token_agreement
    agree = token_agreement(golden_tok, tok)
    p = psnr(golden_sr, sr)
    report["tokens"] = agree
    report["psnr_vs_golden_db"] = round(p, 2)
    one = lr[:engine.batch] if engine.batch <= len(lr) else np.repeat(lr[:1], engine.batch, 0)
    engine.run(one)                                 # warm-up
    times = []
    for _ in range(max(1, runs)):
        t1 = time.perf_counter()
        engine.run(one)
        times.append((time.perf_counter() - t1) * 1e3 / len(one))
    report["ms_per_tile_p50"] = round(statistics.median(times), 3)
    report["ms_per_tile_min"] = round(min(times), 3)
    r = recipe(report["backend"], report["precision"])
    report["thresholds"] = {"token_agreement": r.tokens, "psnr_db": r.psnr_db}
    missed = r.misses(agree["overall"], p)
    report["result"] = "FAIL" if missed else "PASS"
    if missed:          # a bare FAIL leaves the user guessing which gate, and by how much
        report["reason"] = (f"{' and '.join(missed)}, the gate for {report['backend']} {report['precision']}; "
                            + (_int8_fix(engine.metadata, r) if report["precision"] == "int8" else
                               "rebuild the engine (at a higher precision if it is a half or weight-compressed "
                               "one), or report it with this output"))


def _int8_fix(m: Manifest, r: Recipe) -> str:
    """What to do about an int8 engine short of its gate, by who quantized it (the recipe table):
    an ONNX Q/DQ graph's quantize step without the fidelity search (`--no-search`) first, else a
    stricter search; an engine the build calibrated itself (OpenVINO's NNCF), whose build takes
    none of the search's flags, a build on more calibration tiles."""
    if r.quantizer == BACKEND:
        tiles = (m.calibration or {}).get("tiles")
        on = f" on {tiles} tiles" if tiles else ""
        return (f"its int8 was calibrated by the {r.backend} build{on}: build it again on the host with more "
                f"--calib-tiles (default {CALIB_TILES}) or --calib FOLDER of images like yours, or build fp16 / fp32")
    q = m.quantization
    if isinstance(q, dict) and "search" in q and q["search"] is None:
        return "its int8 graph was quantized with --no-search: quantize again without it, or build fp16 / fp32"
    return ("an engine quantized beyond what the golden tiles hold: quantize again with a higher "
            "--min-token-agreement or more --val-tiles, or build fp16 / fp32")


def selftest_engine(engine_dir: str | os.PathLike[str], device: str | None = None, runs: int = 10,
                    log: Log = lambda _m: None, cuda_graphs: bool | None = None,
                    threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Check a built engine directory against the golden outputs it carries, and time it.
    `cache_dir`: where an OpenVINO engine keeps its compiled model (the load option).

    Needs only the engine's runtime (no PyTorch, no bundled model): what a device runs first."""
    from alignvar_edge import __version__, runtimes
    from alignvar_edge.fsmodes import not_a_folder
    root = Path(engine_dir)
    if (why := not_a_folder(root)) is not None:
        raise InputError(f"--engine {root} {why}; pass the engine directory `alignvar-edge build` (or `adopt`) wrote")
    with readable(root):
        if not (root / GOLDEN_FILE).is_file():
            # a folder that is no engine says so (a deploy output names its engines, as `load` does), and a
            # checkpoint how to make its golden file, before "no golden file" sends the user off to rebuild
            # (a torch engine holds weights and config too, but its manifest lists its files: not a checkpoint)
            if is_checkpoint(root):
                load_golden(root)
            runtimes.detect_backend(root)
    recorded: dict[str, Any] = {}
    opts = _load_options(recorded, cuda_graphs, threads, cache_dir)
    # loaded, so verified, before its golden file is read: safetensors says a file it may not read is missing
    with warnings_changed(_VERSION_IN_REPORT), runtimes.load(root, device=device, **opts) as engine:
        f = engine_golden(root, lambda: _without_golden(root))
        if f.parent != root:
            log(f"{root} carries no {GOLDEN_FILE}; its weights are the bundled model's: checking it against {f}")
        lr, golden_sr, golden_tok, meta = read_golden(f)
        b = runtimes.get_backend(engine.backend)
        m = engine.metadata
        report: dict[str, Any] = {
            "alignvar_edge": __version__, "backend": b.name, "backend_version": b.version(),
            "host": host_info(), "model": f"{m.model.name} engine {root}",
            "weights_sha256": (m.model.weights_sha256 or "-")[:16],
            # which engine file gave these figures (the manifest's hash of it, verified on load)
            "engine_sha256": m.engine_sha256,
            "precision": m.precision or "fp32", "golden_tiles": int(lr.shape[0]),
            "golden_reference": meta.get("reference", "PyTorch"), "device": engine.device,
            # an older engine without its own: the bundled model's, which its weights are
            **({"golden_file": str(f)} if f.parent != root else {}),
            # what the runtime computed (OpenVINO says), beside what the engine was built and checked for
            "compute_precision": getattr(engine, "compute_precision", None),
            "expected_precision": getattr(engine, "expected_precision", None)}
        report.update(recorded)
        report.update(cache_record(engine))
        report.update(_runtime_versions(b, m))
        caution = unverified_caution(root)
        if caution:             # the precision and model above are the manifest's word only
            report["manifest_unverified"] = caution
        if m.tensorrt_kit:      # it runs as upscale runs a kit: its ONNX in ONNX Runtime, which no PASS may hide
            from alignvar_edge.runtimes.tensorrt.kit import not_an_engine
            report["checked"] = (f"the kit's ONNX in {b.name}, not a TensorRT engine: {root} is " + not_an_engine(
                root, "check the engine directory it writes with `alignvar-edge selftest --engine`"))
        _threads_ran_on(report, engine)
        runs_here, why = b.is_available()
        log(f"running {len(lr)} golden tiles on {engine!r}" if runs_here else f"not running {root} here: {why}")
        try:
            sr, tok = engine.run(lr)
        except BackendUnavailableError as e:              # Core ML off macOS, as with --backend
            return _built_only(report, engine, str(e))
        _check_and_time(engine, lr, sr, tok, golden_sr, golden_tok, runs, report)
    return report


def _without_golden(root: Path) -> str:
    """The other check of an engine without golden outputs, for `engine_golden`: the host's own
    selftest, with the install line only where the host tools are missing. A torch engine is PyTorch
    itself: its rebuild is the way."""
    from alignvar_edge.errors import AlignVAREdgeError
    from alignvar_edge.extras import is_installed
    from alignvar_edge.lazy import HOST_ONLY
    from alignvar_edge.manifest import read_manifest
    try:
        if read_manifest(root).backend == "torch":
            return ""
    except AlignVAREdgeError:
        pass
    if all(is_installed(p) for p in HOST_ONLY):
        return ", or check this host's tools with `alignvar-edge selftest --backend onnxruntime`"
    return (", or run `alignvar-edge selftest --backend onnxruntime` where PyTorch is installed (the host "
            f"tools: {install_command('host')})")


def _threads_ran_on(report: dict[str, Any], engine: Any) -> None:
    """An engine recording its threads (`build --threads N`) runs on them where none are given, capped
    at the cores here (`base.threads_here`): `threads` is the count it ran on, and `threads_recorded`
    the engine's own where that differs."""
    recorded = (engine.metadata.extra.get("session") or {}).get("threads")
    if not recorded:
        return
    report["threads"] = ran_on = engine.options["threads"]
    if recorded != ran_on:
        report["threads_recorded"] = recorded


def _built_only(report: dict[str, Any], engine: Any, reason: str) -> dict[str, Any]:
    """The verdict for an engine that exists and was validated but cannot run on this host."""
    ex = engine.metadata.extra
    spec = ex.get("spec") or {}
    report.update(result="BUILT-ONLY", reason=reason,
                  validation={"valid": spec.get("valid"), "ops": spec.get("ops"),
                              "ane_lint": [f"{f['level']}: {f['rule']} x{f['count']}" for f in ex.get("ane_lint", [])]})
    return report


def _runtime_lines(r: dict[str, Any]) -> list[str]:
    """The runtime version that built and checked the engine, and the note where it is not this one."""
    if "backend_version_built" not in r:       # no engine was opened (BUILT-ONLY before loading)
        return []
    built = r["backend_version_built"]
    lines = [f"runtime   engine built and checked with {r['backend']} {built}" if built else
             "runtime   the engine does not record the runtime version that built it"]
    if r.get("runtime_note"):
        lines.append(f"note      {r['runtime_note']}")
    return lines


def format_report(r: dict[str, Any]) -> str:
    """The shareable text form."""
    h = r["host"]
    lines = [f"alignvar-edge {r['alignvar_edge']} selftest: {r['backend']} "
             f"{r.get('backend_version') or '(not installed)'} on {r.get('device', 'no device')}",
             f"host      {host_line(h)}",
             *_runtime_lines(r),
             f"model     {r['model']} (weights {r['weights_sha256']}), precision "
             f"{precision_label(r['precision'], r.get('compute_precision'), r.get('expected_precision'))}, "
             f"{r['golden_tiles']} golden tiles"]
    if "export_s" in r:
        lines.append(f"export    reused from the cache ({r['export_dir']}), made earlier by this same code"
                     if r.get("export_cached") else f"export    {r['export_s']} s")
    if "build_s" in r:
        lines.append(f"build     {r['build_s']} s" + (f", load {r['load_s']} s" if "load_s" in r else ""))
    if r.get("cache_dir"):
        loaded = r.get("loaded_from_cache")
        state = ("compiled model read from" if loaded else "compiled here, kept in" if loaded is False
                 else "compiled model cached in")
        lines.append(f"cache     {state} {r['cache_dir']}")
    if r.get("engine_sha256"):
        lines.append(f"engine    {r['engine_sha256']} (SHA-256)")
    if r.get("golden_reference"):
        where = (f"the bundled model's ({r['golden_file']}), whose weights the engine holds" if r.get("golden_file")
                 else "shipped in the engine directory")
        lines.append(f"golden    {where}; reference: {r['golden_reference']}")
    if "tokens" in r:
        t = r["tokens"]
        scales = "/".join(token_share(a) for a in t["per_scale"])
        lines.append(f"tokens    {t['overall']:.2%} agree with golden (per scale {scales}); "
                     f"tiles identical {t['identical_samples']:.0%}")
        lines.append(f"image     SR PSNR vs golden {r['psnr_vs_golden_db']} dB")
        n, recorded = r.get("threads"), r.get("threads_recorded")
        threads = (f"{n} thread{'s' if n > 1 else ''}" + (f" (the engine records {recorded})" if recorded else "")
                   if n else "the runtime's default threads")
        lines.append(f"latency   {r['ms_per_tile_p50']} ms per tile (median), {r['ms_per_tile_min']} ms best, "
                     f"{threads}" + (", CUDA graphs off" if r.get("cuda_graphs") is False else ""))
    if r.get("validation"):
        v = r["validation"]
        lines.append(f"package   spec valid: {v['valid']}, {v['ops']} ops; ANE lint: "
                     f"{', '.join(v['ane_lint']) or 'no findings'}")
    if r.get("manifest_unverified"):
        lines.append(f"caution   {r['manifest_unverified']}")
    lines.append(f"RESULT    {r['result']}" + (" (manifest unverified)" if r.get("manifest_unverified") else "")
                 + (f": {r['reason']}" if r.get("reason") else "")
                 + (f" for {r['checked']}" if r.get("checked") else ""))
    return "\n".join(lines)


__all__ = ["cache_dir", "cache_record", "cached_export", "export_cache_key", "format_report", "selftest",
           "selftest_engine"]


if __name__ == "__main__":     # older docs made golden outputs here: say where, rather than do nothing
    from alignvar_edge.runtimes.golden import GOLDEN_COMMAND
    raise SystemExit(f"golden outputs are made by `{GOLDEN_COMMAND} CHECKPOINT_DIR`; "
                     "`alignvar-edge selftest --help` runs the checks")
