"""Run AlignVAR engines from every backend behind one interface.

    >>> from alignvar_edge import runtimes
    >>> eng_dir = runtimes.build("exports/tiny", "openvino")            # -> engine directory
    >>> with runtimes.load(eng_dir) as engine:                          # backend from the manifest
    ...     sr = engine.upscale(image)                                  # any size, exactly 4x

Backends are imported lazily: importing this package never imports onnxruntime, openvino,
tensorrt or coremltools; only the backend module that needs one does, when asked to.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignvar_edge.caller import warn_caller
from alignvar_edge.errors import (AlignVAREdgeError, ArtifactError, BackendUnavailableError, InputError,
                                  OtherVersionWarning, out_of_memory)
from alignvar_edge.fsmodes import not_a_folder
from alignvar_edge.lazy import needs_host
from alignvar_edge.manifest import Manifest, readable, redacting, redacting_now
from alignvar_edge.name_text import PathArg, path_text, shell_word
from alignvar_edge import recipes
from alignvar_edge.recipes import BACKENDS, backend_name, recipe
from alignvar_edge.runtimes.base import Backend, Engine

__all__ = ["BACKENDS", "Backend", "BackendInfo", "Engine", "available_backends", "backends_taking", "build",
           "check_backend", "get_backend", "load"]

# backend name (the recipe table's list) -> module under alignvar_edge.runtimes holding a `BACKEND`
MODULES: dict[str, str] = {"torch": "torch_backend", "onnxruntime": "onnxruntime", "openvino": "openvino.backend",
                           "tensorrt": "tensorrt.backend", "coreml": "coreml.backend"}


@dataclass
class BackendInfo:
    name: str
    available: bool
    reason: str = ""
    version: str | None = None
    devices: list[str] = field(default_factory=list)


def get_backend(name: str) -> Backend:
    """The `Backend` of a name ("torch", "onnxruntime", "openvino", "tensorrt", "coreml", or an alias
    `recipes.backend_name` knows), its module imported, its runtime not: `is_available()` says
    whether it runs here. An unknown name is one InputError naming the known ones."""
    key = backend_name(name)
    if key not in MODULES:          # in the recipe table, without its runtime (doctor raised a bare KeyError)
        raise BackendUnavailableError(f"{key} is not usable here: this alignvar-edge has no runtime module for it "
                                      "(alignvar_edge.runtimes.MODULES names none)")
    module = importlib.import_module(f"alignvar_edge.runtimes.{MODULES[key]}")
    backend: Backend = module.BACKEND
    return backend


def backends_taking(load_option: str) -> tuple[str, ...]:
    """The backends whose engines take `load_option` (threads, hint, ...), as each Backend declares it."""
    return tuple(b for b in recipes.BACKENDS if load_option in get_backend(b).load_options)


def available_backends() -> list[BackendInfo]:
    """Every backend, whether it can run here, and if not, why (one line)."""
    out = []
    for name in BACKENDS:
        b = get_backend(name)
        ok, reason = b.is_available()
        out.append(BackendInfo(name, ok, reason, b.version(), b.devices() if ok else []))
    return out


def detect_backend(path: str | os.PathLike[str]) -> str:
    """Which backend opens `path`: a checkpoint -> torch, an ONNX export -> the first of
    `recipes.EXPORT_READERS` (onnxruntime), an engine dir -> the backend its manifest names."""
    return _backend_of(path, _artifact_manifest(path))


def _artifact_manifest(path: str | os.PathLike[str]) -> Manifest | None:
    """The manifest of the artifact at `path` (None for a checkpoint); ArtifactError where it is none."""
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.checkpoint import is_checkpoint
    if is_checkpoint(path):
        return None
    if (why := not_a_folder(path)) is not None:
        raise ArtifactError(_nothing_to_load(path, why))
    return read_manifest(path)


def _backend_of(path: str | os.PathLike[str], m: Manifest | None) -> str:
    """The backend that opens the artifact at `path` (`m`: its manifest, None for a checkpoint);
    ArtifactError for one that none opens (a `deploy` output: its engines are named)."""
    if m is None:
        return "torch"
    if m.kind == "onnx":
        return recipes.EXPORT_READERS[0]
    backend = m.backend
    engines = Path(path) / "engines"
    if m.kind == "deploy" and engines.is_dir():
        names = sorted(p.name for p in engines.iterdir() if p.is_dir())
        raise ArtifactError(f"'{path}' is the output of `deploy`; its engines are in {engines}: pass one of "
                            f"them ({', '.join(names[:4])}{' ...' if len(names) > 4 else ''})")
    if m.kind != "engine" or backend not in BACKENDS:
        raise ArtifactError(f"'{path}' is a {m.kind!r} artifact for backend {backend!r}, which "
                            "no runtime here loads; build an engine with `alignvar-edge build`")
    return str(backend)


def _nothing_to_load(path: str | os.PathLike[str], why: str) -> str:
    """A path that is no directory (`why`: fsmodes.not_a_folder's words), in the words of what `load`
    opens: a bundled model's name among them (a mistyped one is named)."""
    from difflib import get_close_matches
    from alignvar_edge.model.bundled import BUNDLED
    near = get_close_matches(os.fspath(path), BUNDLED, n=1)
    meant = f"did you mean the bundled model '{near[0]}'? " if near else ""
    return (f"'{path}' {why}; {meant}pass an engine directory (`alignvar-edge build`), an ONNX export "
            f"(`alignvar-edge export`), a checkpoint directory or a bundled model name ({', '.join(BUNDLED)})")


def check_backend(path: str | os.PathLike[str], backend: str) -> None:
    """A backend named (not "auto"; an alias such as "ort" is its backend) against what `path` is: a
    checkpoint runs on torch, an ONNX export on `recipes.EXPORT_READERS`, an engine directory on its own
    backend. One line with the fix, before anything is loaded: the one refusal of an artifact for another
    backend, which `Backend.load` asks here too. A path that is no artifact is left to the loading to
    name; an artifact no backend opens (a `deploy` output) is refused as `load` without a backend
    refuses it. A TensorRT build kit named for tensorrt is a BackendUnavailableError: its engine is what
    is missing, not a fix of ours."""
    if backend == "auto":
        return
    backend = backend_name(backend)
    try:
        m = _artifact_manifest(path)
    except AlignVAREdgeError:
        return
    found = _backend_of(path, m)
    export = m is not None and m.kind == "onnx"
    readers = recipes.EXPORT_READERS            # read here, as the refusal below names them
    if found == backend or (export and backend in readers):
        return
    if export and backend == "tensorrt" and m is not None and m.tensorrt_kit:
        # the kit `build --target tensorrt` wrote where TensorRT is absent: what is missing is the engine
        from alignvar_edge.caller import option
        from alignvar_edge.runtimes.tensorrt.kit import not_an_engine
        raise BackendUnavailableError(f"{path} is {not_an_engine(path, 'use the engine directory it writes')} "
                                      f"(its ONNX runs in ONNX Runtime anywhere: {option('backend', 'onnxruntime')})")
    if found == "torch":
        raise InputError(f"{path} is a model checkpoint, which runs on torch, not on {backend}: use backend torch "
                         f"(or auto), or export it first (`alignvar-edge export {shell_word(path)} --out DIR`) and "
                         "use DIR")
    if export:
        # the engine `build` makes of it: from the export itself, or (Core ML) from the checkpoint it names
        source = "it" if recipe(backend).source == recipes.EXPORT else "the checkpoint it names"
        raise InputError(f"{path} is an ONNX export, which runs on {' or '.join(readers)}, not on {backend}: use "
                         + ("that" if len(readers) == 1 else "one of those") + " (or auto)"
                         + (", or a model checkpoint for torch" if backend == "torch" else
                            f", or build an engine for {backend} from {source} "
                            f"(`alignvar-edge build {shell_word(path)} --target {backend}`)"))
    article = "an" if found[0] in "aeiou" else "a"
    raise InputError(f"{path} is {article} {found} engine, not one for {backend}: use backend {found} (or auto)")


def load(engine_dir: PathArg, backend: str = "auto", device: str | None = None,
         **opts: Any) -> Engine:
    """Open an engine dir, an ONNX export dir or a checkpoint as an `Engine`.

    backend="auto" follows the manifest (ONNX exports run on onnxruntime, checkpoints on torch); a
    backend named must be one that opens `engine_dir` (`check_backend`). A path may be bytes, as
    os.listdir(b'...') gives a name in another encoding (`path_text`).
    Extra keyword options go to the backend (e.g. threads=, batch=, parity=).

    Raises (each importable from `alignvar_edge`, with a one-line message): InputError for an
    option that is wrong (unknown, threads out of range, a backend that cannot open this kind of
    artifact); ArtifactError for a path that is no artifact, one that fails verification, one with
    a file this user may not read, or one the runtime refuses; BackendUnavailableError where the
    backend or device is not usable here, or the runtime cannot compile the engine for this device;
    OutOfMemoryError (a MemoryError) where loading the runtime or compiling the engine ran out of
    memory.
    """
    engine_dir = _checked_path(engine_dir, "load", "an engine directory, an ONNX export or a checkpoint")
    with readable(engine_dir):          # a file of it this user may not read, named as every verb names it
        b = get_backend(detect_backend(engine_dir) if backend == "auto" else backend)
        try:                            # Backend.load checks the backend against the path, then that it runs here
            engine = b.load(_as_path(engine_dir), device=device, **opts)
        except (AlignVAREdgeError, NotImplementedError, RecursionError):    # RuntimeErrors of ours, not the runtime's
            raise
        except RuntimeError as e:     # the runtime could not compile it for this device (OpenVINO's compile_model)
            if (memory := out_of_memory(e, f"compiling {engine_dir} with {b.name}")) is not None:
                raise memory from e           # no other precision or device would help
            raise BackendUnavailableError(_compile_error(b.name, engine_dir, device, e)) from e
    _note_other_version(b, engine_dir, engine.metadata)
    return engine


def _note_other_version(b: Backend, engine_dir: str, m: Manifest) -> None:
    """A warning where this runtime is not the version that built and checked the engine: shown once
    per engine and calling line (warn_caller's filters), not at every load of a service's loop."""
    other = b.other_version(m)
    if other:
        warn_caller(f"{engine_dir}: {other}; `alignvar-edge selftest --engine {shell_word(engine_dir)}` checks it "
                    "with this one", OtherVersionWarning)


def _compile_error(backend: str, engine_dir: str | os.PathLike[str], device: str | None, error: RuntimeError) -> str:
    """One line: the engine, the runtime's own reason (its last line, without the C++ source
    locations OpenVINO puts first) and what to try: an fp32 engine compiles where half ones may not."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and not ln.startswith("Exception from ")]
    reason = (lines[-1] if lines else type(error).__name__).split(". ")[0].rstrip(".")
    try:
        from alignvar_edge.manifest import read_manifest
        precision = read_manifest(engine_dir).precision
    except (AlignVAREdgeError, OSError):
        precision = None
    fix = ("report it with this line and `alignvar-edge doctor`'s output" if precision in (None, "fp32") else
           f"an fp32 engine of the same export compiles where {precision} ones may not: build one on the host "
           f"(`alignvar-edge build EXPORT --target {backend} --precision fp32`) and use it here")
    on = f" for device {device}" if device else ""
    return f"{backend} cannot compile {engine_dir}{on} here ({reason}); {fix}"


def build(artifact_dir: PathArg, target: str, precision: str | None = None,
          calibration: Any = None, out: PathArg | None = None,
          device: str | None = None, force: bool = False, *, redact: bool = False, **opts: Any) -> Path:
    """Build an engine dir for `target` from an export (or, for torch/coreml, a checkpoint).

    precision=None takes the backend's default (fp16 for Core ML, fp32 elsewhere); "auto" does what
    `alignvar-edge build` does without --precision: the half precision this host computes fast
    (bf16 on an OpenVINO CPU with AMX or AVX512-BF16, fp16 on its GPU or NPU) where that build keeps
    the tokens, else fp32; the backend's default where the host has no such half.
    `redact`: as `build --redact`, for engines shipped to others: the checkpoint recorded by its
    folder name and SHA-256s, the calibration set by its hash and counts, no folder of this machine.
    """
    with redacting() if redact else contextlib.nullcontext():
        return _build(artifact_dir, target, precision, calibration, out, device, force, **opts)


def _build(artifact_dir: PathArg, target: str, precision: str | None,
           calibration: Any, out: PathArg | None, device: str | None, force: bool,
           **opts: Any) -> Path:
    from alignvar_edge.outputs import check_out
    from alignvar_edge.runtimes.artifacts import default_out, out_for
    artifact_dir = _checked_path(artifact_dir, "build", "an export directory or a checkpoint")
    out = None if out is None else path_text(out)
    b = get_backend(target)
    if precision == "auto":
        from alignvar_edge.runtimes import half
        if half.host_half(b.name, device):
            return half.build_auto(_as_path(artifact_dir), b.name, out_for(artifact_dir, b.name, out),
                                   device=device, calibration=calibration, force=force, **opts)[0]
        precision = None
    row = recipe(b.name, precision)                      # the default, or one line naming the known ones
    precision = row.precision
    ok, why = b.can_build()
    if not ok:
        raise BackendUnavailableError(f"cannot build {b.name} engines here: {why}")
    row.require_tool()                                  # NNCF for OpenVINO int8: before any work
    if out is None:
        out = default_out(artifact_dir, b.name, precision)
    check_out(out, force, source=artifact_dir)          # never onto or into the input, even with force
    if redacting_now():
        _refuse_host_folders_in_graphs(_as_path(artifact_dir))
    with needs_host(f"building {b.name} engines"):       # e.g. OpenVINO's build reads the graph with onnx
        return b.build(_as_path(artifact_dir), Path(out), precision=precision, calibration=calibration,
                       device=device, force=force, **opts)


def _refuse_host_folders_in_graphs(src: Path) -> None:
    """A redacted build of an export whose graphs name the build host's folders (exported by an
    older alignvar-edge, whose stack traces named absolute paths) would ship them inside its graph."""
    from alignvar_edge.caller import option
    from alignvar_edge.manifest import MANIFEST_FILE, graphs_naming_host_folders, read_manifest
    if not (src / MANIFEST_FILE).is_file():         # a checkpoint: no graph
        return
    if named := graphs_naming_host_folders(src, read_manifest(src)):
        raise InputError(f"{src}: its graph {named[0]} names the folders of the machine that exported it (its "
                         "per-node stack traces, from an older alignvar-edge), which a redacted engine would "
                         f"ship; export it again with this alignvar-edge and build from that with {option('redact')}")


def _checked_path(p: object, where: str, takes: str) -> str:
    """A path argument as text (`path_text`: bytes too, as Python's own `open` takes them), refused
    where it is none (None from an unset config value was a bare TypeError from pathlib), or where it
    names the home folder with a `~` that nothing expanded: like `open`, the API takes paths as they
    are, and said such a path was 'not a directory' where it exists."""
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise InputError(f"{where} takes {takes}: a path or a bundled name such as 'alignvar-tiny', got "
                         f"{type(p).__name__}")
    text = path_text(p)
    if text.startswith("~") and not os.path.lexists(text):
        home = os.path.expanduser(text)
        if home != text and os.path.exists(home):
            raise InputError(f"'{text}': '~' is not expanded here (a shell expands it only at the start of a "
                             f"word); pass '{home}' (os.path.expanduser('{text}') in Python)")
    return text


def _as_path(p: str | os.PathLike[str]) -> Path:
    # a bundled model name ('alignvar-tiny') stays a relative Path of that name; backends
    # resolve it through is_checkpoint / checkpoint_dir, which look names up first
    return Path(str(p))
