"""torch -> ONNX for the whole AlignVAR rollout, validated against PyTorch before it is kept.

export_onnx(model, out, graph="single"|"staged") traces the model's own inference modules with
the dynamo exporter (static shapes, batch fixed), then, inside a temporary artifact directory:
  1. optional onnxslim simplification;
  2. onnx.checker full check (path form, so >2 GB models with external data work);
  3. a scan for forbidden constructs (Loop/If/Scan, random ops, complex dtypes, -inf/NaN constants);
  4. ONNX Runtime on deterministic real-image LR tiles vs PyTorch: 100% tokens at every scale and
     >= 60 dB SR PSNR, else ParityError and nothing is left at `out`;
  5. manifest.json (I/O, tools, hashes, parity) written last, then the directory is renamed in.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch

from alignvar_edge.caller import option, python_call, warn_caller
from alignvar_edge.errors import (ArtifactError, ConfigError, InputError, OutOfMemoryError, host_tools_error,
                                  out_of_memory)
from alignvar_edge.export import onnx_io
from alignvar_edge.export.batch import default_batch
from alignvar_edge.extras import older_than_required
from alignvar_edge.fsmodes import check_room
from alignvar_edge.export.graphs import GraphSpec, graph_noise, specs_for
from alignvar_edge.export.lint import forbidden_constructs
from alignvar_edge.graph_names import GRAPH_FORMS, INPUT, NOISE, STACK_TRACE
from alignvar_edge.manifest import (GRAPH_TOOLS, ModelInfo, ModelSource, listed_file, load_verified, new_manifest,
                                    shown_name, tools_here, write_manifest)
from alignvar_edge.outputs import artifact_dir, check_out
from alignvar_edge.export.parity import ParityReport, check_parity, compare
from alignvar_edge.export.staged import StagedRunner
from alignvar_edge.name_text import PathArg, path_text
from alignvar_edge.native_paths import native_path
from alignvar_edge.onnx_session import open_session
from alignvar_edge.model.alignvar import AlignVAR, load_pretrained
from alignvar_edge.model.checkpoint import checkpoint_source, training_stage, weights_sha256
from alignvar_edge.model.config import ATTENTION_FORMS
from alignvar_edge.model.pruning import effective_prune, pruning
from alignvar_edge.model.transformer import attention_form
from alignvar_edge.muted import quieted
from alignvar_edge.quantize.calibration.sets import whole_calls
from alignvar_edge.quantize.calibration.tiles import lr_tiles, tiles_hash

__all__ = ["FUSED_ATTENTION_OPSET", "SUPPORTED_OPSETS", "attention_nodes", "attention_scope", "export_onnx",
           "graph_io", "load_onnx_models", "run_single"]

SUPPORTED_OPSETS = (18, 19, 20, 21, 22, 23)   # dynamo exporter: 17 is raised to 18; 23 is its max
FUSED_ATTENTION_OPSET = 23     # ONNX Attention, RMSNormalization and RotaryEmbedding appear in opset 23
# Above this many bytes of weights, a graph keeps them in `<file>.data`: protobuf's limit is 2 GiB,
# and the graph also holds folded constants (resampling matrices, rotary tables) besides weights.
EXTERNAL_DATA_BYTES = 1_800_000_000
# `log=`: called with each line to say; what it returns is ignored, so any function of a str fits
Log = Callable[[str], object]

_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}


# One export at a time in a process: torch.export traces through process-wide state (dynamo's, and
# the logger levels `_quiet_exporter` sets), and an export changes the model it is given (fp32 on
# the CPU, its attention form, its pruning). Two exports in two threads both failed in torch.export.
_EXPORTING = threading.RLock()
P = ParamSpec("P")
R = TypeVar("R")


def _one_at_a_time(function: Callable[P, R]) -> Callable[P, R]:
    """`function` under `_EXPORTING`: calls from several threads run one after the other."""
    @functools.wraps(function)
    def serialised(*args: P.args, **kwargs: P.kwargs) -> R:
        with _EXPORTING:
            return function(*args, **kwargs)
    return serialised


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's log lines and third-party warnings (torchvision missing, ...) through
    its loggers' levels; its progress lines are off by its own `verbose=False`. sys.stdout is left
    alone: it is every thread's, and redirecting it lost their output. The levels and filters are
    set and put back as every mute's (`muted.quieted`), so an OpenVINO build's at the same time
    cannot leave them changed."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "torch.fx")
    with _EXPORTING, quieted(names, logging.ERROR):
        yield


def _light_optimize(ir_model: Any) -> None:
    """Constant folding + dead-node removal + CSE, without onnxscript's pattern rewriter.

    Measured on the micro preset: the exporter's default optimizer took 20 s of a 41 s export and
    produced the same node count (1199) as these passes do in 3 s; the rewriter found nothing here.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    # the pass class is not re-exported publicly; pinned by constraints.txt (onnxscript 0.7.2)
    from onnxscript.optimizer._constant_folding import FoldConstantsPass

    ir.passes.Sequential(
        FoldConstantsPass(shape_inference=True, input_size_limit=8192, output_size_limit=1 << 20),
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.RemoveUnusedNodesPass(),
        # after CSE each weight view is one node per block, the weight's only reader
        FoldConstantsPass(shape_inference=False, input_size_limit=0, output_size_limit=1 << 62,
                          should_fold=_weight_view),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedOpsetsPass(),
    )(ir_model)


def _weight_view(node: Any) -> bool:
    """A Reshape of a constant that nothing else reads (the fused attention's per-head view of a
    projection weight, once per block after CSE): folded whatever its size, since the folded copy
    replaces the original. Nothing else is folded by the pass that asks this."""
    data = node.inputs[0] if node.op_type == "Reshape" and node.inputs else None
    return data is not None and data.const_value is not None and len(data.uses()) == 1


# the exporter's per-node trace (STACK_TRACE): `File "/abs/path.py", line N, in f` frames
_TRACE_FILE = re.compile(r'File "([^"]+)"')


def _portable_stack_traces(ir_model: Any) -> None:
    """Name each file in the nodes' stack traces by its module (`torch/nn/modules/conv.py`), not by
    its path on this machine: the traces named the build host's venv, project folder and user in
    every graph and every engine built from it. The traces are kept, path-free, because the
    quantization policy reads them (`/sca.py`, `/resample.py` frames; quantize/policy.py)."""
    import onnx_ir as ir

    by_module = _module_files()

    def portable(match: re.Match[str]) -> str:
        path = match.group(1)
        return f'File "{by_module.get(path) or shown_name(path)}"'

    for node in ir.traversal.RecursiveGraphIterator(ir_model.graph):
        trace = node.metadata_props.get(STACK_TRACE)
        if trace:
            node.metadata_props[STACK_TRACE] = _TRACE_FILE.sub(portable, trace)


def _module_files() -> dict[str, str]:
    """Each imported module's source file -> that file named from its import root, as its module
    name spells it (`alignvar_edge.model.sca` -> `alignvar_edge/model/sca.py`)."""
    out = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or name == "__main__":
            continue
        base = shown_name(file)
        out[file] = name.replace(".", "/") + ("/" + base if base.startswith("__init__.") else os.path.splitext(base)[1])
    return out


def attention_scope(model: Any) -> list[Any]:
    """The graph nodes traced from the transformer's attention modules (torch name scope a block's
    `.attn`), in graph order: from the q/k/v projection to the output projection, every call."""
    found = []
    scope_of: dict[str, str] = {}                  # tensor -> scope of the node that makes it
    for n in model.graph.node:
        scopes = next((p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is None:                        # the exporter leaves some Splits unscoped
            scopes = scope_of.get(n.input[0], "") if n.input else ""
        scope_of.update((o, scopes) for o in n.output)
        if "blocks." in scopes and ".attn" in scopes:
            found.append(n)
    return found


def attention_nodes(model: Any) -> dict[str, Any]:
    """Attention calls and nodes per call (`attention_scope`). A call normalises q and k together,
    once (`ReduceL2` explicit, `RMSNormalization` fused); the prefix's pass counts too, although
    only its keys and values are used."""
    nodes = attention_scope(model)
    calls = sum(n.op_type in ("ReduceL2", "RMSNormalization") for n in nodes)
    return {"calls": calls, "nodes_per_call": round(len(nodes) / calls, 1) if calls else None}


def _param_bytes(model: AlignVAR) -> int:
    """Bytes of the weights the inference graphs hold (the VQ encoder is not part of them)."""
    return model.parameter_report()["inference"] * next(model.parameters()).element_size()


def output_bytes(model: AlignVAR, graph: str, refine: bool = True) -> int:
    """A low estimate of what an export's graphs take on disk: every graph holds the weights it uses,
    so the staged form's step graphs (one per scale) each hold the transformer's blocks and head;
    without `refine` no graph holds the diffusion refiner. Measured against what exports wrote: the
    bundled default 1.27x this (single) and 1.19x (staged), the d16 preset 1.01x (single): the
    graphs' constants come on top."""
    report = model.parameter_report()
    repeated = (report["transformer_blocks"] + report["head"]) * (model.config.num_scales - 1)
    left_out = 0 if refine else report["refiner"]
    return (_param_bytes(model) + ((repeated if graph == "staged" else 0) - left_out)
            * next(model.parameters()).element_size())


def export_graph(spec: GraphSpec, path: Path, opset: int, external_data: bool, weight_bytes: int | None = None) -> None:
    """Trace one graph and save it (`path`, plus `path.data` with external data); `weight_bytes`:
    what its weights take at most, which tells protobuf's size limit from memory running out."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # the math kernel: the flash kernel's traced output strides differ from its decomposition's
    with _quiet_exporter(), sdpa_kernel(SDPBackend.MATH):
        prog = torch.onnx.export(spec.module, tuple(spec.inputs.values()), None, dynamo=True,
                                 opset_version=opset, input_names=list(spec.inputs),
                                 output_names=spec.outputs, optimize=False, verbose=False)
        assert prog is not None                       # dynamo=True always returns the program
        _light_optimize(prog.model)
        _portable_stack_traces(prog.model)
        try:
            prog.save(str(path), external_data=external_data)
        except Exception as e:      # protobuf's EncodeError where serialising the graph ran out of memory
            memory = out_of_memory(e, f"saving {path.name}", message_bytes=0 if external_data else weight_bytes)
            if memory is None:
                raise
            raise memory from e


def _onnxslim() -> Any:
    """onnxslim, imported; a missing one, or one older than alignvar-edge asks (0.1.26 and older lack
    `slim` or import onnx.mapping, which onnx 1.19 dropped), is one HostToolsError naming onnxslim."""
    try:
        import onnxslim
    except ImportError as e:
        raise host_tools_error(option("simplify", True), "onnxslim") from e
    if older_than_required("onnxslim"):
        raise host_tools_error(option("simplify", True), "onnxslim")
    return onnxslim


def simplify_graph(path: Path, external_data: bool) -> None:
    """onnxslim in place (re-validated afterwards like every graph). A module onnxslim fails to
    import while it works is its fault, not onnx's: a HostToolsError naming onnxslim too."""
    simplify = option("simplify", True)
    onnxslim = _onnxslim()
    with _quiet_exporter(), native_path(path) as at:
        try:
            slim = onnxslim.slim(at)
        except ModuleNotFoundError as e:       # onnxslim's own import of what it needs failed
            raise host_tools_error(simplify, "onnxslim") from e
    if slim is None:
        raise ArtifactError(f"onnxslim could not simplify {path.name}; export without {option('simplify', True)}")
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx_io.save(slim, path, large=external_data, keep=False)


def check_graph(path: Path) -> None:
    import onnx


    with native_path(path) as where:       # the checker and the weights' reader open files in C++
        try:
            onnx.checker.check_model(where, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ArtifactError(f"onnx.checker rejects {path.name}: {str(e).splitlines()[0]}") from e
        bad = forbidden_constructs(onnx.load(where, load_external_data=False), os.path.dirname(where))
    if bad:
        raise ArtifactError(f"{path.name} contains constructs edge runtimes cannot run: {'; '.join(bad)}")


def graph_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Names, static shapes and dtypes of a graph's inputs and outputs."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def io(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type))}

    return {"inputs": [io(v) for v in g.input], "outputs": [io(v) for v in g.output]}


def run_single(session: Any, lr: np.ndarray, noise: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    feeds = {INPUT: np.ascontiguousarray(lr, dtype=np.float32)}
    if noise is not None:
        feeds[NOISE] = noise
    out = session.run(None, feeds)
    return out[0], list(out[1:])


@torch.no_grad()
def _reference(model: AlignVAR, lr: np.ndarray, noise: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    sr, tokens, _ = model.rollout(torch.from_numpy(lr), None if noise is None else torch.from_numpy(noise))
    return sr.numpy(), [t.numpy() for t in tokens]


def validate(model: AlignVAR, root: Path, graph: str, batches: list[np.ndarray], refine: bool = True) -> ParityReport:
    """ONNX Runtime on `root`'s graphs vs PyTorch, tile batch by tile batch."""

    t0 = time.perf_counter()
    if graph == "single":
        sess = open_session(root / "model.onnx")
        run = lambda lr, noise: run_single(sess, lr, noise)  # noqa: E731
    else:
        runner = StagedRunner(root, model.config.num_scales)
        run = runner.run
    load_s = time.perf_counter() - t0
    ref_sr, ref_tok, sr, tok = [], [], [], []
    for lr in batches:
        noise = graph_noise(model, lr.shape[0], refine)
        a, ta = _reference(model, lr, noise)
        b, tb = run(lr, noise)
        ref_sr.append(a)
        ref_tok.append(ta)
        sr.append(b)
        tok.append(tb)
    K = model.config.num_scales
    cat = lambda ts: [np.concatenate([t[k] for t in ts]) for k in range(K)]  # noqa: E731
    return compare(np.concatenate(ref_sr), cat(ref_tok), np.concatenate(sr), cat(tok),
                   scale=model.config.scale, session_load_s=round(load_s, 3))


def _runtime_refused(e: Exception, graph: str, opset: int) -> ArtifactError | OutOfMemoryError | None:
    """ONNX Runtime refusing to load or run a graph that passed onnx.checker, as one line naming
    what the user can change (its version, the opset), or running out of memory doing it; None for
    any other error. The loader's own message names the temporary folder, which is gone, and says
    to re-export."""
    during = f"checking the exported {graph} graph in ONNX Runtime"
    if isinstance(e, MemoryError):     # open_session's line names the temporary file, which is gone
        return out_of_memory(e.__cause__ or e, during)
    loading = isinstance(e, ArtifactError) and e.__cause__ is not None
    if not loading and not type(e).__module__.startswith("onnxruntime"):
        return None
    if not loading and (memory := out_of_memory(e, during)) is not None:
        return memory
    reason = (e.__cause__ or e) if loading else e
    import onnxruntime

    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    portable = option("opset", 18)
    what, fix = (("load", f"export with {portable} (every runtime reads it) or upgrade onnxruntime") if loading else
                 ("run", f"{portable} or another onnxruntime"))
    return ArtifactError(f"ONNX Runtime {onnxruntime.__version__} could not {what} the exported {graph} graph "
                         f"(opset {opset}) to check it against PyTorch: {first}; nothing was written: {fix}")


def _model_info(model: AlignVAR, name: str | None, source: ModelSource | str | None,
                checkpoint: str | os.PathLike[str] | None = None) -> ModelInfo:
    c = model.config
    weights = weights_sha256(model)
    if checkpoint is None and source is None and (loaded := model.pretrained_checkpoint(weights)):
        given, checkpoint = loaded                 # from_pretrained's, as the CLI's export records it
        name = name or given
    if checkpoint is not None:
        source = checkpoint_source(checkpoint)
    elif not isinstance(source, ModelSource):
        source = ModelSource.other(source) if source else ModelSource.memory(name)
    return ModelInfo(name=name or c.name, source=source, config=c.to_dict(), scale_schedule=tuple(c.patch_nums),
                     parameters=model.parameter_report(), weights_sha256=weights)


def _as_model(model: object) -> tuple[AlignVAR, str | None]:
    """(`export`'s model, the checkpoint it was loaded from here): an AlignVAR (None), or a bundled
    name or checkpoint directory loaded as the CLI's export loads it (that name or directory);
    anything else is one InputError."""
    if isinstance(model, AlignVAR):
        return model, None
    if isinstance(model, (str, bytes, os.PathLike)):
        return load_pretrained(model), path_text(model)
    raise InputError(f"export takes an AlignVAR model (AlignVAR.from_pretrained('alignvar-tiny')) or a bundled "
                     f"name or checkpoint directory, got {type(model).__name__}")


@python_call(out="out_dir", tiles="n_tiles")
@_one_at_a_time
def export_onnx(model: AlignVAR | PathArg, out_dir: PathArg, graph: str = "single", batch: int | None = None,
                opset: int = 18, n_tiles: int = 4, seed: int = 0, simplify: bool = False,
                force: bool = False, external_data: bool | None = None, *, refine: bool = True,
                model_name: str | None = None, attention: str = "explicit", prune: tuple[float, ...] = (),
                source: ModelSource | str | None = None, tile_images: str | os.PathLike[str] | None = None,
                log: Log | None = None, checkpoint: str | os.PathLike[str] | None = None,
                room: tuple[str | os.PathLike[str], str] | None = None) -> Path:
    """Export, validate and publish an ONNX artifact directory; returns its path (see module doc).

    `model`: an AlignVAR, or a bundled name or checkpoint directory (loaded, and recorded as
    `checkpoint=` records one). A model from `from_pretrained` whose weights are still that
    checkpoint's (loaded again here to compare) is recorded as that checkpoint (its files' SHA-256s):
    torch and Core ML builds then find it, and engines carry golden outputs of PyTorch.
    The model is moved to the CPU in fp32 eval mode (in place, as nn.Module.float() does): the
    graphs are fp32 and the reference rollout runs on the CPU next to ONNX Runtime.
    `batch`: the graphs' static batch, tiles per call; None: the model's default (export/batch.py).
    `source`: where the weights came from (a `ModelSource`; a string is kept as the caller's words).
    `checkpoint`: the directory (or bundled name) the model was loaded from; its absolute path and
    file hashes are recorded, so later uses find that checkpoint and refuse a different one.
    `attention`: the attention core's form in the graphs (model/config.ATTENTION_FORMS);
    "fused" is one ONNX RMSNormalization, RotaryEmbedding and Attention per call (opset 23).
    `prune`: token pruning ratios for the last scales, finest last (model/pruning.py); in staged graphs
    the step before a pruned scale hands its hidden states on (`h_out` -> `last_h`).
    `room`: the place a refusal for want of disk room names and what chooses another (default:
    `out_dir` and 'choose another --out'), for a caller that exports into its own folder.
    Exports in one process run one at a time: a call from another thread waits for the one running.
    """

    say = log or (lambda _msg: None)
    out_dir = path_text(out_dir)              # bytes too, as os.listdir(b'...') gives a name
    if graph not in GRAPH_FORMS:
        raise ConfigError(f"graph must be {' or '.join(map(repr, GRAPH_FORMS))}, got {graph!r}")
    if opset not in SUPPORTED_OPSETS:
        raise ConfigError(f"opset {opset} is not supported; choose one of {SUPPORTED_OPSETS} "
                          "(18 is the most portable; TensorRT 10.3 parses up to 20)")
    model, loaded_from = _as_model(model)         # after the checks that need no model: loading takes time
    if loaded_from is not None and checkpoint is None and source is None:
        checkpoint, model_name = loaded_from, model_name or loaded_from     # as the CLI's export records it
    batch = default_batch(model.config) if batch is None else batch
    if batch < 1 or n_tiles < 1:
        raise ConfigError(f"batch and tiles must be >= 1, got {option('batch', batch)}, {option('tiles', n_tiles)}")
    if attention not in ATTENTION_FORMS:
        raise ConfigError(f"attention must be one of {', '.join(ATTENTION_FORMS)}, got {attention!r}")
    if attention == "fused" and opset < FUSED_ATTENTION_OPSET:
        raise ConfigError(f"{option('attention', 'fused')} needs {option('opset', FUSED_ATTENTION_OPSET)} (ONNX "
                          f"Attention, RMSNormalization and RotaryEmbedding); at opset {opset} use "
                          f"{option('attention', 'explicit')}")
    prune = effective_prune(model.config.patch_nums, prune)     # refuses a ratio before any work
    if simplify:
        _onnxslim()                 # before the minutes of tracing that would end in its refusal
    if not refine and not model.config.has_refiner:
        # refused, not dropped: the user would believe they had switched something off
        raise ConfigError(f"{option('refine', False)} applies to models with VARSR's diffusion refiner; "
                          f"'{model_name or model.config.name}' has none, so its graphs never refine: "
                          f"drop {option('refine', False)}")
    model = model.cpu().float().eval()
    info = _model_info(model, model_name, source, checkpoint)
    if info.source.kind == "checkpoint" and info.source.path and training_stage(info.source.path) == "vqvae":
        warn_caller(f"'{info.source.path}' was written by `train vqvae`: its transformer is untrained, so the "
                    "tokens this export computes are noise; export the final checkpoint of `train transformer` "
                    "(or of a later stage) to deploy the model")
    if info.source.path:
        # --force replaces a folder of ours (a training run holds run.json): never the one that
        # holds the checkpoint being exported, nor a folder written into the checkpoint
        check_out(out_dir, force, source=info.source.path)
    weight_bytes = _param_bytes(model)
    ext = external_data if external_data is not None else weight_bytes > EXTERNAL_DATA_BYTES
    needed = output_bytes(model, graph, refine)
    shown, other = room or (out_dir, f"choose another {option('out')}")
    check_room(out_dir, needed, "export", other, shown)          # before the minutes of tracing
    n_eff = whole_calls(n_tiles, batch)               # graphs have a fixed batch: whole batches only
    tiles = lr_tiles(model.config, n_eff, seed=seed, images=tile_images)
    timings: dict[str, float] = {}

    with artifact_dir(out_dir, force=force, needed=needed) as tmp, pruning(model, prune):
        t0 = time.perf_counter()
        specs = specs_for(model, graph, batch, refine)
        with attention_form(model, attention):
            for spec in specs:
                say(f"exporting {spec.file} (opset {opset}, {attention} attention)")
                export_graph(spec, tmp / spec.file, opset, ext, weight_bytes)
        timings["export_s"] = time.perf_counter() - t0
        nodes_before = _node_counts(tmp, specs)
        if simplify:
            t0 = time.perf_counter()
            for spec in specs:
                say(f"simplifying {spec.file} with onnxslim")
                simplify_graph(tmp / spec.file, ext)
            timings["simplify_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for spec in specs:
            check_graph(tmp / spec.file)
        timings["check_s"] = time.perf_counter() - t0
        say(f"validating with ONNX Runtime on {n_eff} held-out tiles")
        t0 = time.perf_counter()
        batches = [tiles[i:i + batch] for i in range(0, n_eff, batch)]
        try:
            report = validate(model, tmp, graph, batches, refine)
        except Exception as e:
            refused = _runtime_refused(e, graph, opset)
            if refused is None:
                raise
            raise refused from e
        timings["validate_s"] = time.perf_counter() - t0
        check_parity(report, f"the exported {graph} graph")
        say(report.summary())
        parity = report.to_json()
        parity.update(tiles_hash=tiles_hash(tiles), tiles_source=str(Path(tile_images).resolve()) if tile_images else "sample:heldout",
                      tiles_seed=seed, runtime="onnxruntime CPUExecutionProvider")
        m = new_manifest(
            "onnx", "onnx", graph, "fp32", info, opset=opset, tools=tools_here(ran=GRAPH_TOOLS if simplify else ()),
            graphs={s.name: {"file": s.file, **graph_io(tmp / s.file)} for s in specs}, parity=parity,
            extra={"batch": batch, "external_data": ext, "simplified": simplify,
                   "attention": {"form": attention, **_attention_nodes(tmp, specs)},
                   "prune": list(prune),
                   "refine": refine and model.diffloss is not None,
                   "stages": [s.name for s in specs], "nodes": _node_counts(tmp, specs),
                   "nodes_before_simplify": nodes_before,
                   "timings_s": {k: round(v, 2) for k, v in timings.items()}})
        write_manifest(tmp, m)
    return Path(out_dir)


def _attention_nodes(root: Path, specs: list[GraphSpec]) -> dict[str, Any]:
    import onnx

    per = [attention_nodes(onnx.load(str(root / s.file), load_external_data=False)) for s in specs]
    calls = sum(p["calls"] for p in per)
    nodes = sum(p["calls"] * (p["nodes_per_call"] or 0) for p in per)
    return {"calls": calls, "nodes_per_call": round(nodes / calls, 1) if calls else None}


def _node_counts(root: Path, specs: list[GraphSpec]) -> dict[str, int]:
    import onnx

    return {s.name: len(onnx.load(str(root / s.file), load_external_data=False).graph.node) for s in specs}


def load_onnx_models(artifact: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify an exported artifact (manifest + SHA-256s) and load its graphs as ModelProtos."""
    root = Path(artifact)
    m = load_verified(root)
    if m.kind != "onnx":
        raise ArtifactError(f"'{root}' is a {m.kind!r} artifact, not exported ONNX graphs")
    out = {}
    for name, g in m.graphs.items():
        try:
            out[name] = onnx_io.load(listed_file(root, m, g["file"]))
        except InputError:                       # a folder name no ONNX library can open
            raise
        except Exception as e:  # protobuf DecodeError and friends
            raise ArtifactError(f"{root / g['file']} cannot be parsed as ONNX ({e}); re-export") from e
    return out
