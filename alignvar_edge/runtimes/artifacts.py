"""What the backends share about artifact directories: finding the graph, checkpoints, manifests.

An *artifact* is what `export` (or `quantize`) wrote: ONNX graphs plus manifest.json, kind "onnx".
An *engine dir* is what `build` writes: the backend's files plus a manifest of kind "engine"
whose `extra.source` names the artifact it came from. A PyTorch checkpoint (config.json +
model.safetensors, or a bundled name such as 'alignvar-tiny') is the torch backend's engine.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.caller import option, warn_caller
from alignvar_edge.errors import ArtifactError, CheckpointError, InputError, host_tools_error
from alignvar_edge.graph_names import ENGINE_GRAPH, INPUT, NOISE, SR, token_name
from alignvar_edge.manifest import (MANIFEST_FILE, BuiltFrom, Manifest, ModelInfo, ModelSource, graph_files_sha256,
                                    hard_link, listed_file, load_verified, new_manifest, read_manifest, recorded_path,
                                    sha256_file, tools_here)
from alignvar_edge.model.checkpoint import is_checkpoint
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.runtimes.base import checked_lr_tiles, config_from_manifest

__all__ = ["checkpoint_and_export", "checkpoint_dir", "check_same_checkpoint", "checkpoint_difference",
           "gone_checkpoint", "model_name", "model_difference", "named_checkpoint", "redacted_reference",
           "model_weights", "warn_other_weights",
           "source_checkpoint", "default_out", "out_for",
           "engine_manifest", "single_graph_io", "leaves_out_refiner", "check_quantized_for", "single_graph", "check_calibration",
           "link_onnx"]


def model_name(source: str | os.PathLike[str]) -> str:
    """The model's name as `export` gives it, for an engine built from `source`: an export's
    recorded name (not the export's path), else the checkpoint as named (bundled name or path)."""
    if is_checkpoint(source):
        return str(source)
    from alignvar_edge.manifest import read_manifest
    return read_manifest(source).model.display_name


def check_same_checkpoint(found: Path, model: ModelInfo) -> None:
    """Refuse `found` unless it is the checkpoint the manifest's `model` entry was made from: the
    recorded file SHA-256s, or (older manifests) the state-dict hash `weights_sha256`."""
    if model.source.sha256:
        differs = checkpoint_difference(found, model)
        if differs:
            raise CheckpointError(
                f"checkpoint '{found}' is not the one this artifact was made from "
                f"({model.source.path or model.display_name}): {differs}; pass that checkpoint (compare: "
                "--reference) or re-export from this one")
        return
    recorded = model.weights_sha256
    if recorded:
        from alignvar_edge.model.alignvar import load_pretrained
        from alignvar_edge.model.checkpoint import weights_sha256
        got = weights_sha256(load_pretrained(found).float())
        if got != recorded:
            raise CheckpointError(
                f"checkpoint '{found}' is not the one this artifact was made from: its weights hash to "
                f"{got[:12]}, recorded {recorded[:12]}; pass that checkpoint (compare: --reference) or re-export "
                "from this one")


def checkpoint_difference(found: Path, model: ModelInfo) -> str | None:
    """How checkpoint `found` differs from the one `model` records by its files' SHA-256s ("its
    model.safetensors SHA-256 is ..., recorded ..."); None where they match, or none is recorded."""
    for f, digest in sorted(model.source.sha256.items()):
        got = sha256_file(found / f) if (found / f).is_file() else "missing"
        if got != digest:
            return f"its {f} SHA-256 is {got[:12]}, recorded {str(digest)[:12]}"
    return None


def model_weights(model: Any) -> str | None:
    """The state-dict hash an export records for in-memory `model` (AlignVAR), or None where it is
    not in fp32, the dtype exports hash (half weights hash to another value)."""
    import torch

    from alignvar_edge.model.checkpoint import weights_sha256
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return None
    return weights_sha256(model)


def warn_other_weights(reference: str, weights: str | None, engines: Iterable[tuple[str, Manifest]]) -> bool:
    """Warn once, naming `reference` (as the caller gave it), where the reference model's weights
    (`weights`, their state-dict hash; None: not known) are not the ones an engine records: the
    figures would compare other weights. An engine that records no hash (an older one) says nothing.
    Whether it warned."""
    if weights is None:
        return False
    for label, m in engines:
        recorded = m.model.weights_sha256
        if recorded and recorded != weights:
            warn_caller(f"{reference} is not the model {label} was built from ({m.model.display_name}: its "
                        f"weights hash to {weights[:12]}, recorded {recorded[:12]}): its figures compare other "
                        "weights")
            return True
    return False


def redacted_reference(engines: Iterable[tuple[str, Manifest]]) -> str | None:
    """What to pass where no reference is found and an engine was built with --redact (it records its
    checkpoint by its folder name only, no path to find it by): one clause for the caller's error."""
    for label, m in engines:
        if m.redacted:
            return (f"{label} was built with --redact: pass its checkpoint ({m.model.display_name}) as "
                    f"{option('reference')}")
    return None


def model_difference(manifest: Manifest, config: AlignVARConfig, weights: str) -> str | None:
    """What keeps an artifact from being one of the model with `config` and `weights` (its
    `weights_sha256`): "config", "weights" (others, or an older manifest that records none), or
    None where its manifest records that very model."""
    if config_from_manifest(manifest).to_dict() != config.to_dict():
        return "config"
    return None if manifest.model.weights_sha256 == weights else "weights"


def source_checkpoint(manifest: Manifest, depth: int = 2, gone: list[ModelSource] | None = None) -> Path | None:
    """The checkpoint an artifact came from, if its manifest (or its source's) names one; a
    checkpoint found there whose content differs from the recorded one raises CheckpointError. A
    recorded path that is no checkpoint any more is the bundled model where its recorded SHA-256s
    are the bundled model's (an older build recorded its install path), else it is added to `gone`."""
    from alignvar_edge.model.checkpoint import bundled_by_content, resolve_checkpoint_dir
    src = manifest.source
    refs = [src.name if src.kind == "bundled" else src.path if src.kind in ("checkpoint", "upstream") else None]
    if src.kind in ("checkpoint", "upstream") and src.path and not is_checkpoint(src.path):
        refs[0] = bundled_by_content(src.sha256) or refs[0]
    built = manifest.built_from
    refs.append(built.path if built else None)
    for ref in refs:
        if not ref:
            continue
        if is_checkpoint(ref):
            try:
                path = resolve_checkpoint_dir(ref)
            except CheckpointError:
                continue
            check_same_checkpoint(path, manifest.model)
            return path
        if depth > 0 and (Path(ref) / MANIFEST_FILE).is_file():
            try:
                found = source_checkpoint(read_manifest(ref), depth - 1, gone)
            except ArtifactError:
                found = None
            if found is not None:
                return found
        elif gone is not None and ref == src.path and not Path(ref).exists():
            gone.append(src)
    return None


def named_checkpoint(manifest: Manifest, what: str, how: str) -> Path | None:
    """`source_checkpoint`; where it finds none because the checkpoint `what` came from is recorded
    at a path that no longer exists, a CheckpointError that says so, and `how` to go on."""
    gone: list[ModelSource] = []
    found = source_checkpoint(manifest, gone=gone)
    if found is None and gone:
        raise gone_checkpoint(gone[0], what, how)
    return found


def gone_checkpoint(source: ModelSource, what: str, how: str) -> CheckpointError:
    """The error for a checkpoint `source_checkpoint` found recorded at a path that no longer exists."""
    from alignvar_edge.model.checkpoint import WEIGHTS_FILE
    digest = source.sha256.get(WEIGHTS_FILE)
    proof = f" ({WEIGHTS_FILE} SHA-256 {digest[:12]})" if digest else ""
    return CheckpointError(f"the checkpoint {what} came from, '{source.path}'{proof}, no longer exists there "
                           f"(moved, renamed or deleted); {how}")


def checkpoint_dir(source: str | os.PathLike[str], backend: str = "torch") -> Path:
    """The PyTorch checkpoint behind `source` (see `checkpoint_and_export`)."""
    return checkpoint_and_export(source, backend)[0]


def checkpoint_and_export(source: str | os.PathLike[str], backend: str = "torch") -> tuple[Path, Manifest | None]:
    """(The PyTorch checkpoint behind `source`: itself, or the one an fp32 export's manifest names;
    that export's verified manifest, None for a checkpoint), its files hashed once. `backend` builds
    from the checkpoint (torch, coreml): an export whose graph carries another precision (a quantize
    output) is refused, since the build would silently drop that precision."""
    from alignvar_edge.model.checkpoint import resolve_checkpoint_dir
    from alignvar_edge.recipes import engine_precision, recipe
    if is_checkpoint(source):
        return resolve_checkpoint_dir(source), None
    m = load_verified(source)
    instead = "pass the checkpoint directory (or a bundled name such as 'alignvar-tiny') instead"
    found = named_checkpoint(m, f"'{source}'", instead.replace("directory", "directory where it is now"))
    if found is None:
        raise ArtifactError(f"'{source}' does not name the PyTorch checkpoint it came from; {instead}")
    if m.precision and m.precision != "fp32":
        own = engine_precision(backend, m.precision)
        how = f" with --precision {own}" if own else ""
        if own and m.precision == "fp16" and "half_policy" in recipe(backend, own).options:
            how += f" --half-policy-from {source} (to keep the groups its search kept in fp32)"
        ckpt = m.source.name if m.source.kind == "bundled" and m.source.name else found
        raise InputError(f"'{source}' carries {m.precision} in its graph, but {backend} builds from the PyTorch "
                         f"checkpoint, not the graph, so nothing of that {m.precision} graph would carry over: build "
                         f"'{ckpt}' (or its fp32 export){how}")
    return found, m


def single_graph(artifact: str | os.PathLike[str], verified: Manifest | None = None) -> tuple[Manifest, Path]:
    """(verified manifest, path of the single-graph ONNX) of an exported artifact; `verified`: its
    manifest where the caller has already verified the files (they are not hashed again)."""
    root = Path(artifact)
    m = verified or load_verified(root)
    if m.kind != "onnx":
        raise ArtifactError(f"'{root}' is a directory of kind '{m.kind}' ({m.backend}), not an "
                            "ONNX export; build engines from the output of `alignvar-edge export`")
    if m.graph != "single":
        raise ArtifactError(f"'{root}' holds the '{m.graph}' graph form; engines run the "
                            "single graph: re-export with `--graph single`")
    entry = m.single_graph_entry()
    if entry is None:
        files = [f for f in m.files if f.endswith(".onnx")]
        if len(files) != 1:
            raise ArtifactError(f"'{root}' does not say which ONNX file is the single graph")
        entry = {"file": files[0]}
    path = listed_file(root, m, entry.get("file"))
    if not path.is_file():
        raise ArtifactError(f"'{root}' lists {entry['file']} but the file is missing; re-export")
    return m, path


def link_onnx(onnx_path: Path, dest: Path, name: str, source: Manifest) -> list[str]:
    """`onnx_path` as dest/`name`, with its external-data files under their own names: hard links
    where the file system allows (every engine directory holds the ONNX it runs or rebuilds from,
    gigabytes for the large presets, and a Jetson's disk is small), else copies. A file of an
    artifact is never written in place (each is verified against its SHA-256), so sharing one is
    safe; publishing leaves a linked file's mode alone (`fsmodes.publish_mode`). The data file is
    the one the verified manifest of the graph's artifact (`source`) lists, `<graph file>.data` as
    export, quantize and every build name it: the graph itself, up to 2 GiB with its weights
    inside, is never read. Returns the data files' names, as linked."""
    data_file = f"{onnx_path.name}.data"
    data = [data_file] if data_file in source.files else []
    _link_or_copy(onnx_path, dest / name)
    for rel in data:
        _link_or_copy(onnx_path.parent / rel, dest / rel)
    return data


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        hard_link(src, dst)
    except OSError:          # another file system, or one without hard links (FAT on an SD card)
        shutil.copy2(src, dst)


def check_quantized_for(m: Manifest, src_dir: Path, runtime: str) -> None:
    """Refuse an int8 Q/DQ graph quantized for another runtime: TensorRT rejects the asymmetric zero
    points of an onnxruntime-target graph, and a tensorrt-target graph was judged on fake-quant, never
    on ONNX Runtime's int8 kernels. The fix is to quantize for `runtime` (one line naming the command)."""
    q = m.quantization or {}
    if q.get("format") != "onnx-qdq":
        return
    made_for = q.get("target_runtime") or (q.get("recipe") or {}).get("target")
    if made_for in (None, runtime):
        return
    from alignvar_edge.recipes import qdq_kind, recipe
    symmetric = bool((q.get("recipe") or {}).get("symmetric_activations"))
    why = (f"its activation zero points are not 0, and {runtime} takes symmetric int8 only"
           if qdq_kind(runtime) == "symmetric" and not symmetric else
           f"its fidelity was judged on {str(q.get('judged_on') or made_for).split(' (')[0]}, never on "
           f"{runtime}'s int8 kernels")
    export = m.extra.get("source_artifact") or "EXPORT"
    raise InputError(f"'{recorded_path(src_dir)}' was quantized for {made_for} ({why}): run "
                     f"`{recipe(runtime, 'int8').quantize_step(str(export))}` and build from its output")


def single_graph_io(config: AlignVARConfig, batch: int, noise: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The single graph's inputs and outputs as manifest entries; `noise`: the graph takes VARSR's
    refiner noise beside the tiles."""
    t, s = config.lr_size, config.hr_size
    outs = [{"name": SR, "shape": [batch, 3, s, s], "dtype": "float32"}]
    outs += [{"name": token_name(k), "shape": [batch, p * p], "dtype": "int64"}
             for k, p in enumerate(config.patch_nums)]
    ins = [{"name": INPUT, "shape": [batch, 3, t, t], "dtype": "float32"}]
    if noise:
        ins.append({"name": NOISE, "shape": list(config.noise_shape(batch)), "dtype": "float32"})
    return {"inputs": ins, "outputs": outs}


def leaves_out_refiner(manifest: Manifest) -> bool:
    """Whether an artifact computes its model without the model's VARSR refiner: an export made with
    `--no-refine` and a torch engine built from one (their `extra.refine` says so), or an engine or
    quantized graph of such an export (its single graph takes no refiner noise). A manifest that
    records no model config (a stand-in made by hand) names no refiner to leave out."""
    if not manifest.config or not config_from_manifest(manifest).has_refiner:
        return False
    recorded = manifest.extra.get("refine")
    if recorded is not None:
        return recorded is False
    # a torch engine records only the refiner left out: its eager graph never takes the noise
    return manifest.backend != "torch" and not manifest.takes_noise


def engine_manifest(source: Manifest, source_dir: Path, backend: str, precision: str,
                    files: dict[str, str], batch: int, extra: dict[str, Any] | None = None,
                    **fields: Any) -> Manifest:
    """Manifest for an engine dir built from `source` (an export manifest)."""
    config = AlignVARConfig.from_dict(dict(source.config or {}))
    graphs = {ENGINE_GRAPH: {"file": files.get("engine", ""), **single_graph_io(config, batch, source.takes_noise)}}
    built = BuiltFrom(recorded_path(source_dir), source.backend, source.precision,
                      sha256_file(source_dir / MANIFEST_FILE) if (source_dir / MANIFEST_FILE).is_file() else None,
                      graph_files_sha256(source))
    ex = {"source": built.to_json(), "files": files, **source.graph_facts, **(extra or {})}
    fields.setdefault("opset", source.opset)
    fields.setdefault("quantization", source.quantization)
    fields.setdefault("calibration", source.calibration)
    fields.setdefault("tools", tools_here(source))
    return new_manifest("engine", backend, source.graph or "single", precision, source.model,
                        graphs=graphs, extra=ex, **fields)


def default_out(artifact: str | os.PathLike[str], backend: str, precision: str) -> Path:
    p = Path(str(artifact))
    base = p.name if p.is_dir() else str(artifact).replace("/", "_")
    parent = p.parent if p.is_dir() else Path(".")
    return parent / f"{base}-{backend}-{precision}"


def out_for(artifact: str | os.PathLike[str], backend: str, out: str | os.PathLike[str] | None
            ) -> Callable[[str], Path]:
    """Where a build that ends at a precision only known then (half, else fp32) writes: `out` where
    given, else the default directory of the precision it built."""
    return lambda precision: Path(out) if out is not None else default_out(artifact, backend, precision)


def check_calibration(calibration: Any, config: AlignVARConfig, needed: bool
                      ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """(LR tiles (N, 3, h, w) float32, manifest `calibration` entry) from an array or a
    CalibrationSet; (None, None) when not given and not needed."""
    if calibration is None:
        if needed:
            raise InputError("INT8 activation quantization needs calibration data: pass --calib builtin "
                             "(the bundled photographs) or --calib FOLDER (in Python: calibration=LR tiles "
                             f"(N, 3, {config.lr_size}, {config.lr_size}) or a CalibrationSet)")
        return None, None
    if isinstance(calibration, (str, bytes, os.PathLike)):    # the CLI's --calib value, given in Python
        raise InputError(f"calibration={os.fsdecode(calibration)!r}: in Python pass a CalibrationSet "
                         "(from alignvar_edge.quantize.calibration: CalibrationSet.builtin(config) for the bundled "
                         "photographs, CalibrationSet.from_folder(folder, config) for yours) or LR tiles "
                         f"(N, 3, {config.lr_size}, {config.lr_size}); 'builtin' and a folder are the CLI's --calib")
    info: dict[str, Any] = {}
    if hasattr(calibration, "calibration") and hasattr(calibration, "hash"):   # CalibrationSet
        info = {"hash": calibration.hash, **dict(getattr(calibration, "summary", dict)())}
        calibration = calibration.calibration.lr
    x = np.asarray(calibration)
    t = config.lr_size
    if x.ndim != 4 or x.shape[1:] != (3, t, t) or x.shape[0] < 1:
        raise InputError(f"calibration data must be LR tiles (N, 3, {t}, {t}), got shape {x.shape}")
    x = checked_lr_tiles(x, t, what="calibration tiles", name="calibration")
    if not info:
        from alignvar_edge.quantize.calibration.tiles import tiles_hash
        info = {"hash": tiles_hash(x), "tiles": int(x.shape[0]), "source": "array"}
    return x, info


def require_validation_photos() -> None:
    """Refuse, before any work, a build whose parity check needs the bundled held-out photographs
    where they are not installed (a device install)."""
    from alignvar_edge.samples import samples_installed
    if not samples_installed():
        # the tiles come from the bundled photographs, in scikit-image's wheel; --images / --calib
        # (other verbs' way around that) do not replace them: building is a host job
        raise host_tools_error("building an engine (checked on the bundled held-out photographs)", "scikit-image")


def validation_tiles(config: AlignVARConfig, n: int = 4, seed: int = 1) -> np.ndarray:
    """Deterministic held-out LR tiles for the parity check every build records."""
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    require_validation_photos()
    return lr_tiles(config, n, seed=seed, split="heldout")


def parity_vs(reference: Any, engine: Any, tiles: np.ndarray, what: str) -> dict[str, Any]:
    """Token agreement and SR PSNR of `engine` against `reference` (both Engines) on `tiles`."""
    from alignvar_edge.export.parity import compare
    ref_sr, ref_tok = reference.run(tiles)
    sr, tok = engine.run(tiles)
    rep = compare(ref_sr, ref_tok, sr, tok, scale=engine.scale)
    d = rep.to_json()
    d.pop("thresholds", None)
    d.pop("passed", None)
    d["reference"] = what
    return d
