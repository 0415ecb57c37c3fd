"""INT8 explicit Q/DQ ONNX graphs for ONNX Runtime and TensorRT, calibrated on real rollouts.

Pipeline (one `Int8Builder` per source graph and calibration set):

1. refuse opset >= 23 (its ONNX `Attention` op quantizes into invalid models, measured);
2. classify every MatMul/Gemm/Conv on the exported graph (`quantize_policy`), then run
   `quant_pre_process(skip_symbolic_shape=True)` (symbolic shape inference crashes on dynamo
   graphs); it fuses MatMul+Add into Gemm, and the fused node keeps the MatMul's name before a '/';
3. collect activation ranges once, for every node any policy could quantize, with our own
   statistic (`calibration.ranges`), and hand them to `quantize_static` through its calibration
   cache, so ONNX Runtime's calibrators never run (and never write `augmented_model.onnx`);
4. `build(policy)` makes a Q/DQ model for one policy in seconds, which the fidelity search
   (`sensitivity.py`) calls many times.

Target settings, by the Q/DQ kind the recipe table names for the target (`recipes.qdq_kind`):
`symmetric` (tensorrt) is int8 activations and weights, all zero points 0, as TensorRT requires;
`asymmetric` (onnxruntime) is uint8 asymmetric activations and int8 symmetric per-channel weights,
with `reduce_range` (7-bit weights) on x86 CPUs without VNNI, where the int8 kernels otherwise
saturate (logits error 9.9% vs 1.6%, measured on a toy rollout).
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from alignvar_edge.caller import option
from alignvar_edge.cpuinfo import has_vnni
from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.fsmodes import free_bytes, temp_folder_full
from alignvar_edge.export import onnx_io
from alignvar_edge.lazy import lazy_import
from alignvar_edge.muted import loggers_at
from alignvar_edge.native_paths import native_path
from alignvar_edge.quantize.calibration.ranges import METHODS, Progress, collect_ranges
from alignvar_edge.quantize.policy import QUANT_OP_TYPES, Policy, QuantNode, classify
from alignvar_edge.recipes import qdq_kind, qdq_targets, quantize_targets, quantized_in_build

__all__ = ["MAX_OPSET", "Int8Builder", "Int8Recipe", "check_opset", "check_opset_version", "int8_weight_readers",
           "qdq_kind_of", "target_recipe"]

ortq = lazy_import("onnxruntime.quantization")
ortq_calibrate = lazy_import("onnxruntime.quantization.calibrate")

FLOAT_COPY_WEIGHTS = ("int8", "fp32")
MAX_OPSET = 22          # opset 23 emits ONNX Attention, which ORT 1.32 quantizes into invalid models


@dataclass
class Int8Recipe:
    """Everything that decides the int8 graph; stored in the artifact's manifest."""

    target: str = "onnxruntime"
    method: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: str = "uint8"         # "uint8" (asymmetric) or "int8"
    weight_type: str = "int8"
    symmetric_activations: bool = False
    # Q/DQ on the outputs of int8 matmuls/convs too: onnxruntime's CPU kernels (QLinearMatMul,
    # QLinearConv) are only selected for DQ -> op -> Q; without it the graph is fake-quant, slower
    # than fp32. TensorRT fuses DQ -> op itself and advises against output Q/DQ on weighted ops.
    quantize_outputs: bool = True
    op_types: tuple[str, ...] = QUANT_OP_TYPES
    vnni: bool | None = None
    # A float copy (say a coarse-scale copy kept float by the policy) of a weight that int8 copies
    # also use: "int8" reads the stored int8 weight through DequantizeLinear at run time (stored
    # once: d16 20% of fp32); "fp32" stores an fp32 duplicate (d16 73%) and does no run-time
    # dequantization, which is faster where dequantizing big weights for tiny matmuls dominates.
    float_copy_weights: str = "int8"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown calibration method {self.method!r}; choose {', '.join(METHODS)}")
        if self.activation_type not in ("uint8", "int8") or self.weight_type not in ("uint8", "int8"):
            raise ConfigError("activation_type and weight_type must be 'uint8' or 'int8'")
        if self.float_copy_weights not in FLOAT_COPY_WEIGHTS:
            raise ConfigError(f"float_copy_weights must be one of {', '.join(FLOAT_COPY_WEIGHTS)}, "
                              f"got {self.float_copy_weights!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        if self.method != "percentile":
            d["percentile"] = None          # read by the percentile method only: no figure that played no part
        return d


def target_recipe(target: str, method: str = "minmax", percentile: float = 99.99,
                  vnni: bool | None = None, reduce_range: bool | None = None,
                  float_copy_weights: str = "int8") -> Int8Recipe:
    """The int8 settings a target needs (see the module docstring); `reduce_range` overrides."""
    if qdq_kind_of(target) == "symmetric":
        return Int8Recipe(target, method, percentile, reduce_range=bool(reduce_range),
                          activation_type="int8", symmetric_activations=True, quantize_outputs=False,
                          vnni=None, float_copy_weights=float_copy_weights)
    vnni = has_vnni() if vnni is None else vnni
    rr = (vnni is False) if reduce_range is None else reduce_range
    return Int8Recipe(target, method, percentile, reduce_range=rr, vnni=vnni,
                      float_copy_weights=float_copy_weights)


def qdq_kind_of(target: str) -> str:
    """The Q/DQ kind the recipe table names for `target`; ConfigError naming the targets that have one
    where it names none (before any calibration work: `QuantizeOptions.validate` asks it too)."""
    kind = qdq_kind(target) if target in quantize_targets() else None
    if kind is None:
        own = " and ".join(t for t in quantize_targets() if quantized_in_build(t))
        raise ConfigError(f"ONNX Q/DQ int8 is built for {' or '.join(map(repr, qdq_targets()))}, not {target!r}"
                          + (f" ({own} quantize through their own backends)" if own else ""))
    return kind


def check_opset(model: onnx.ModelProto) -> int:
    return check_opset_version(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def check_opset_version(opset: int) -> int:
    """The opset a graph may have for onnxruntime's int8 quantizer (also read from a manifest, to
    refuse before any calibration work)."""
    if opset > MAX_OPSET:
        raise ConfigError(f"the graph uses opset {opset}; onnxruntime's quantizer turns opset >= 23 graphs "
                          f"(ONNX Attention) into invalid models. Re-export with {option('opset', 18)} or 20 "
                          "and quantize that")
    return opset


@dataclass
class _Prepared:
    path: Path                       # pre-processed model inside the builder's temp dir
    nodes: list[QuantNode]           # MatMul/Gemm/Conv of the pre-processed graph, classified
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


class Int8Builder:
    """Pre-process and calibrate once; `build(policy)` returns a Q/DQ ModelProto per policy."""

    def __init__(self, model_path: str | Path, recipe: Int8Recipe, feeds: Sequence[dict[str, np.ndarray]],
                 candidates: Policy | None = None, progress: Progress = iter) -> None:
        self.recipe = recipe
        self._tmp = tempfile.TemporaryDirectory(prefix="alignvar-quant-")
        self.tmp = Path(self._tmp.name)
        src = onnx.load(str(model_path), load_external_data=False)     # structure and metadata only
        self.opset = check_opset(src)
        by_name = {n.name: n for n in classify(src)}
        # an export with its weights in a .data file (--external-data yes) stays external: saved as
        # one file, ORT's pre-processing leaves the optimized graph pointing at a .data it never wrote
        external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in src.graph.initializer)
        del src
        pre = self.tmp / "pre.onnx"
        on_disk = sum(p.stat().st_size for p in Path(model_path).parent.glob(Path(model_path).name + "*"))
        self.large = external or on_disk > onnx_io.LARGE
        _pre_process(Path(model_path), pre, self.large, on_disk)
        pre_model = _rename_biases(onnx_io.load(pre))
        onnx_io.save(pre_model, pre, self.large)
        nodes = []
        for n in classify(pre_model):
            orig = by_name.get(n.name) or by_name.get(n.name.split("/")[0])
            # the exporter's scope metadata does not survive pre-processing: take the original's
            nodes.append(QuantNode(n.name, n.op_type, orig.component, orig.group, orig.tokens) if orig else n)
        self.prepared = _Prepared(pre, nodes)
        # the float inputs of every candidate node, to restore when a node returns to float
        inits = {i.name: i for i in pre_model.graph.initializer}
        self._float_inputs = {n.name: (list(n.input), [inits[i] for i in n.input if i in inits])
                              for n in pre_model.graph.node if n.op_type in QUANT_OP_TYPES}
        self._widest: onnx.ModelProto | None = None
        self._widest_names: set[str] = set()
        # ranges for every node the widest policy could quantize, so any narrower one reuses them
        widest = candidates or Policy()
        tensors = _activation_inputs(pre_model, [n for n in nodes if widest.selects(n)])
        self.prepared.ranges = collect_ranges(pre_model, tensors, feeds, recipe.method,
                                              recipe.percentile, progress)

    @property
    def nodes(self) -> list[QuantNode]:
        return self.prepared.nodes

    def selected(self, policy: Policy) -> list[QuantNode]:
        return [n for n in self.nodes if policy.selects(n)]

    def build(self, policy: Policy) -> onnx.ModelProto:
        """The Q/DQ model quantizing exactly the nodes `policy` selects (the float graph if none).

        quantize_static runs once, for the widest policy; narrower ones are cut from that model by
        returning nodes to float (`_to_float`), which takes milliseconds instead of seconds and
        leaves every remaining scale exactly as quantize_static chose it.
        """
        keep = {n.name for n in self.selected(policy)}
        if not keep:
            return onnx_io.load(self.prepared.path)
        if self._widest is None:
            self._widest = self._quantize_static(sorted(keep))
            self._widest_names = keep
        extra = keep - self._widest_names
        if extra:     # wider than anything built so far: start again from quantize_static
            self._widest = self._quantize_static(sorted(keep | self._widest_names))
            self._widest_names = keep | self._widest_names
        model = onnx.ModelProto()
        model.CopyFrom(self._widest)
        return self._only(model, keep)

    def _only(self, model: onnx.ModelProto, keep: set[str]) -> onnx.ModelProto:
        """Make `keep` the only int8 nodes: every other MatMul/Gemm/Conv gets its float
        activations and biases back, then float readers read float tensors.

        Weights: the quantizer replaces a weight shared by several nodes (the per-scale copies of
        one linear) for all of them. A float copy of a weight that an int8 node still uses keeps
        reading it dequantized (weight-only int8 for that copy: the weight is stored once, in
        int8; an fp32 duplicate made the d16 artifact 73% of fp32 instead of ~21%); a weight no
        int8 node uses is restored in fp32."""
        dq_of_init = _dequantized_initializers(model)
        int8_weights = ({i for n in model.graph.node if n.name in keep for i in n.input[1:2] if i in dq_of_init}
                        if self.recipe.float_copy_weights == "int8" else set())
        _to_float(model, set(self._float_inputs) - keep, self._float_inputs, int8_weights)
        return _float_consumers_read_float(model, keep, self.recipe.quantize_outputs)

    def _quantize_static(self, names: list[str]) -> onnx.ModelProto:

        r = self.recipe
        method = {"minmax": ortq.CalibrationMethod.MinMax, "entropy": ortq.CalibrationMethod.Entropy,
                  "percentile": ortq.CalibrationMethod.Percentile}[r.method]
        cache = self.tmp / f"ranges-{r.method}.json"
        if not cache.exists():
            data = {k: ortq.TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                    for k, (lo, hi) in self.prepared.ranges.items()}
            ortq_calibrate.save_tensors_data(ortq.TensorsData(method, data), cache)
        qtype = {"uint8": ortq.QuantType.QUInt8, "int8": ortq.QuantType.QInt8}
        out = self.tmp / "qdq.onnx"
        ortq.quantize_static(
            str(self.prepared.path), str(out), calibration_data_reader=None,
            quant_format=ortq.QuantFormat.QDQ, op_types_to_quantize=list(r.op_types),
            per_channel=r.per_channel, reduce_range=r.reduce_range,
            activation_type=qtype[r.activation_type], weight_type=qtype[r.weight_type],
            nodes_to_quantize=names, calibrate_method=method, calibration_cache_path=str(cache),
            use_external_data_format=self.large,
            # KeepRemovableActivations: the quantizer would otherwise delete a Clip/Relu after an int8
            # node (folding it into the output range), and the clip would be lost when that node
            # later returns to float
            extra_options={"ActivationSymmetric": r.symmetric_activations, "WeightSymmetric": True,
                           "QDQKeepRemovableActivations": True,
                           "OpTypesToExcludeOutputQuantization": [] if r.quantize_outputs else list(r.op_types)})
        model = onnx_io.load(out)
        for f in self.tmp.glob("qdq.onnx*"):      # the model and any external-data file
            f.unlink()
        return self._only(model, set(names))

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> Int8Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pre_process(src: Path, dst: Path, large: bool, graph_bytes: int) -> None:
    # measured before: it deletes its scratch when it fails, so the room is back afterwards; it
    # holds two copies of the graph at once (the one it read, the one it writes)
    free = free_bytes(tempfile.gettempdir())
    short_of_room = free is not None and free < 2 * graph_bytes
    try:
        # it logs its progress, and its optimizer's own failure as a traceback (it goes on without
        # it; a failure that counts raises after it, and says it in one line), through its module's logger
        with native_path(src) as src_at, loggers_at(("onnxruntime.quantization.shape_inference",), logging.CRITICAL):
            ortq.quant_pre_process(src_at, str(dst), skip_symbolic_shape=True, save_as_external_data=large,
                                   all_tensors_to_one_file=True, external_data_location=f"{dst.name}.data")
    except Exception as e:  # onnxruntime raises bare Exceptions from its optimizer
        # it writes only scratch copies of the graph, under $TMPDIR: a disk there that is full, or
        # has no room for one copy (its C++ writer truncates a file it cannot finish), is no bad input
        if (full := temp_folder_full(e, short_of_room)) is not None:
            raise full from e
        raise InputError(f"onnxruntime's quantization pre-processing failed on {src}: {e}") from e


def _initializers(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def _dequantized_initializers(model: onnx.ModelProto) -> set[str]:
    """Outputs of the DequantizeLinear nodes that read a stored (int8) initializer: weights."""
    inits = _initializers(model)
    return {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}


def int8_weight_readers(model: onnx.ModelProto) -> set[str]:
    """Names of the MatMul/Gemm/Conv nodes of a Q/DQ model that read a weight dequantized from an
    int8 initializer: the int8 nodes, and the float ones computing on an int8 weight they share
    (Int8Recipe.float_copy_weights "int8")."""
    weights = _dequantized_initializers(model)
    return {n.name for n in model.graph.node
            if n.op_type in QUANT_OP_TYPES and any(i in weights for i in n.input[:2])}


def _to_float(model: onnx.ModelProto, names: set[str],
              float_inputs: dict[str, tuple[list[str], list[onnx.TensorProto]]],
              shared_int8: AbstractSet[str] = frozenset()) -> onnx.ModelProto:
    """Return the named nodes of a Q/DQ model to float: original inputs and float weights
    (except weights in `shared_int8`, the dequantized weights int8 nodes also read).

    Restored weights get a '.fp32' name: the quantizer reuses a bias's own name for the output of
    its DequantizeLinear, so the original name may already be taken in the Q/DQ graph.
    """
    g = model.graph
    have = _initializers(model)
    for n in g.node:
        if n.name in names:
            inputs, inits = float_inputs[n.name]
            consts = {t.name: t for t in inits}
            new_inputs = []
            for k, (i, now) in enumerate(zip(inputs, n.input)):
                if i == now and (i not in consts or i in have):
                    new_inputs.append(i)          # untouched by the quantizer
                    continue
                if k == 1 and now in shared_int8:
                    new_inputs.append(now)        # weight-only int8: see Int8Builder._only
                    continue
                if i in consts:
                    fp = f"{i}.fp32"
                    if fp not in have:
                        t = onnx.TensorProto()
                        t.CopyFrom(consts[i])
                        t.name = fp
                        g.initializer.append(t)
                        have.add(fp)
                    i = fp
                new_inputs.append(i)
            del n.input[:]
            n.input.extend(new_inputs)
    # no pruning yet: _float_consumers_read_float may still route a reader to a Q/DQ pair here
    return model


def _float_consumers_read_float(model: onnx.ModelProto, quantized: set[str],
                                 quantize_outputs: bool) -> onnx.ModelProto:
    """Only the int8 nodes decide which tensors are quantized.

    onnxruntime's quantizer is tensor-centric: once a tensor gets a Q/DQ pair, *every* consumer
    reads the dequantized copy, so a residual Add beside a quantized conv silently sees int8
    noise, and a node's effect depends on its neighbours. Here a float consumer is rewired to the
    float tensor unless that tensor is the output of an int8 node whose output is quantized
    (`quantize_outputs`: then every consumer reads it dequantized, as the fused int8 kernel
    produces it). So a node is int8 exactly when the policy says so, and returning it to float
    (`_to_float`) gives the same graph as never quantizing it.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inputs = _graph_inputs(g)

    def int8_output(x: str) -> bool:
        made_by = producer.get(x)
        return quantize_outputs and made_by is not None and made_by.name in quantized

    source: dict[str, str] = {}                 # DQ output -> float tensor its Q read
    dequantized: dict[str, str] = {}            # float tensor -> its DQ output
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            q = producer.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and (q.input[0] in producer or q.input[0] in inputs):
                dequantized.setdefault(q.input[0], n.output[0])
                if not int8_output(q.input[0]):
                    source[n.output[0]] = q.input[0]
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.name in quantized:
            continue
        for k, i in enumerate(n.input):
            if i in source:                     # float reader of a float tensor's Q/DQ copy
                n.input[k] = source[i]
            elif i in dequantized and int8_output(i):   # an int8 node's output: read as the kernel makes it
                n.input[k] = dequantized[i]
    _prune_qdq(model)
    return model


def _graph_inputs(g: onnx.GraphProto) -> dict[str, None]:
    return {i.name: None for i in g.input}


def _prune_qdq(model: onnx.ModelProto) -> None:
    """Drop Q/DQ nodes (and then initializers) that no longer feed anything."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [k for k, n in enumerate(g.node)
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]
        if not dead:
            break
        for k in reversed(dead):
            del g.node[k]
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _rename_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give Gemm/Conv bias initializers names ending in '.bias'.

    The quantizer copies a bias shared by several nodes under `name + str(k)`, checking only
    initializer names: bias 'cat_1' became 'cat_10', the name of an existing activation, and the
    model was invalid ("Duplicate definition of name"). A '.bias' name cannot collide that way.
    """
    g = model.graph
    taken = {i.name for i in g.initializer} | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    biases = {n.input[2] for n in g.node if n.op_type in ("Gemm", "Conv") and len(n.input) > 2 and n.input[2]}
    rename = {}
    for init in g.initializer:
        if init.name in biases and not init.name.endswith(".bias"):
            new = f"{init.name}.bias"
            while new in taken:
                new = "_" + new
            rename[init.name] = new
            taken.add(new)
            init.name = new
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    return model


def _activation_inputs(model: onnx.ModelProto, nodes: Sequence[QuantNode]) -> list[str]:
    """Non-constant float inputs and the outputs of the given nodes.

    quantize_static wants ranges for outputs too (it may quantize a tensor between two quantized
    nodes once, on the producer's side)."""
    g = model.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    wanted = {n.name for n in nodes}
    out = []
    for n in g.node:
        if n.name in wanted:
            k = 1 if n.op_type != "MatMul" else 2       # Conv/Gemm: data input only; MatMul: both
            out += [i for i in n.input[:k] if i and i not in consts] + list(n.output[:1])
    return list(dict.fromkeys(out))
