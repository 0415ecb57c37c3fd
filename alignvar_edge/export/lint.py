"""Graph checks: hard invariants of every export, and an advisory capability lint per target.

`forbidden_constructs` is enforced at export: no control flow, no random ops, no complex dtypes, no
non-finite constants (the design promises a static, deterministic, finite graph).

`lint_model` is advice, not proof: it compares a graph with what is published about each target
(alignvar_edge/data/*.json, each naming its sources) and names the offending nodes or tensors.
Targets: TensorRT 10.3 (JetPack 6) ONNX parser, OpenVINO on Intel NPU, Core ML / Apple Neural Engine.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORBIDDEN_OPS", "INT_COMPUTE", "TARGETS", "Finding", "forbidden_constructs", "lint_model",
           "package_finding_text"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TARGETS = ("tensorrt-10.3", "openvino-npu", "coreml-ane")
FORBIDDEN_OPS = frozenset({
    "Loop", "If", "Scan", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Multinomial", "Bernoulli", "SequenceConstruct", "SequenceAt", "SequenceInsert", "SequenceEmpty",
    "ConcatFromSequence", "SplitToSequence", "Optional", "OptionalGetElement", "OptionalHasElement"})
COMPLEX_TYPES = {14: "complex64", 15: "complex128"}
FLOAT_TYPES = {1, 10, 11, 16}                      # float32, float16, float64, bfloat16
INT_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 12: "uint32",
             13: "uint64"}
FP16_MAX = 65504.0
# index of the input that must be a build-time constant for TensorRT 10.3 (data/tensorrt-10.3-onnx-ops.json)
TRT_CONST_INPUT = {**{op: 1 for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                                       "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
                                       "ReduceSumSquare", "Squeeze", "Unsqueeze", "CumSum")},
                   "Pad": 3}
TRT_OPSET_MAX = 20
ANE_MAX_RANK = 5
ANE_MAX_DIM = 16384
NAMES_SHOWN = 6
# integer compute on the ANE (rule, why, ane-notes.json pattern): one wording for this graph lint and
# the Core ML package's own (runtimes/coreml/lint.py), which find the same ops (argmax, casts to int).
# A heuristic: Apple lists no ops for the ANE, so the words say so and point to the real placement.
INT_COMPUTE = ("int-compute", "integer ops (token argmax, casts, index arithmetic) likely run on the CPU: "
               "a heuristic (the ANE is reported to compute fp16 only; Apple lists no ANE ops); Xcode's "
               "Performance report or MLComputePlan on a Mac shows where they run",
               "integer compute (argmax, casts, index arithmetic)")
OPS_NAMED = 2               # ops a Core ML package's finding names in a printed line


def package_finding_text(finding: dict[str, Any]) -> str:
    """A Core ML package's ANE-lint finding as build, quantize and inspect print it: its level,
    rule, count and why, and its first ops as `output = op_type` so a user can find them."""
    ops = ", ".join(f"`{o}`" for o in (finding.get("ops") or [])[:OPS_NAMED])
    return (f"{finding['level']}: ANE lint `{finding['rule']}` x{finding['count']}: {finding['why']}"
            + (f"; e.g. {ops}" if ops else ""))


@dataclass
class Finding:
    target: str          # one of TARGETS
    severity: str        # "error": will not build there; "warning": falls back or may misbehave; "info"
    rule: str
    message: str
    nodes: list[str] = field(default_factory=list)   # offending node (or tensor) names
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        shown = ", ".join(self.nodes[:NAMES_SHOWN])
        more = f" (+{len(self.nodes) - NAMES_SHOWN} more)" if len(self.nodes) > NAMES_SHOWN else ""
        where = f" [{len(self.nodes)}: {shown}{more}]" if self.nodes else ""
        return f"{self.severity.upper():7s} {self.rule}: {self.message}{where}"


@lru_cache(maxsize=None)
def _data(name: str) -> dict[str, Any]:
    return json.loads((DATA_DIR / name).read_text())


# ------------------------------------------------------------------------------------------------
# graph helpers
# ------------------------------------------------------------------------------------------------
def _constants(g: Any) -> dict[str, Any]:
    """Tensor names known at build time: initializers and Constant node outputs (name -> proto)."""
    out = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = a.t
    return out


def _value_types(model: Any) -> dict[str, Any]:
    """name -> TypeProto.tensor_type for inputs, outputs and inferred intermediates."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:   # inference is best effort; fall back to what the file states
        inferred = model
    g = inferred.graph
    return {v.name: v.type.tensor_type for v in [*g.input, *g.output, *g.value_info]}


def _dims(tt: Any) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _array(t: Any, base_dir: str | os.PathLike[str] | None) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t, base_dir=str(base_dir) if base_dir else "")


def _node_name(n: Any) -> str:
    return n.name or f"{n.op_type}->{n.output[0] if n.output else '?'}"


# ------------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------------
def forbidden_constructs(model: Any, base_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Problems that make an exported graph non-static, non-deterministic or non-finite."""
    g = model.graph
    problems = []
    ops: dict[str, list[str]] = defaultdict(list)
    for n in g.node:
        if n.op_type in FORBIDDEN_OPS:
            ops[n.op_type].append(_node_name(n))
    problems += [f"{op} op(s) {names[:NAMES_SHOWN]}" for op, names in sorted(ops.items())]
    typed = [*g.input, *g.output, *g.value_info]
    cplx = [v.name for v in typed if v.type.tensor_type.elem_type in COMPLEX_TYPES]
    cplx += [t.name for t in g.initializer if t.data_type in COMPLEX_TYPES]
    if cplx:
        problems.append(f"complex tensors {cplx[:NAMES_SHOWN]}")
    bad = []
    for name, t in _constants(g).items():
        if t.data_type in FLOAT_TYPES and not np.isfinite(_array(t, base_dir)).all():
            bad.append(name)
    for n in g.node:
        if n.op_type == "ConstantOfShape":
            for a in n.attribute:
                if a.name == "value" and not np.isfinite(_array(a.t, base_dir)).all():
                    bad.append(_node_name(n))
    if bad:
        problems.append(f"non-finite (inf/NaN) constants {bad[:NAMES_SHOWN]}")
    return problems


# ------------------------------------------------------------------------------------------------
# TensorRT 10.3
# ------------------------------------------------------------------------------------------------
def _lint_tensorrt(model: Any, consts: dict[str, Any], base_dir: Any) -> list[Finding]:
    table = _data("tensorrt-10.3-onnx-ops.json")
    newer = _data("tensorrt-newer-notes.json")["ops"]
    src = f"{table['source']['repo']}:{table['source']['path']} (TensorRT {table['source']['tensorrt_version']})"
    T = "tensorrt-10.3"
    out: list[Finding] = []
    opset = _opset(model)
    if opset > TRT_OPSET_MAX:
        out.append(Finding(T, "error", "opset", f"opset {opset}: the 10.3 parser reads opsets "
                           f"{table['opset_range'].split(' ')[0]}; export with --opset 18 (or 20)", [], src))
    unsupported: dict[str, list[str]] = defaultdict(list)
    const_axes, qdq_zp, topk, resize, groupnorm = [], [], [], [], []
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            unsupported[f"{n.domain}::{n.op_type}"].append(_node_name(n))
            continue
        row = table["ops"].get(n.op_type)
        if row is None or not row["supported"]:
            unsupported[n.op_type].append(_node_name(n))
            continue
        idx = TRT_CONST_INPUT.get(n.op_type)
        if idx is not None and len(n.input) > idx and n.input[idx] and n.input[idx] not in consts:
            const_axes.append(_node_name(n))
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = n.input[2] if len(n.input) > 2 else ""
            if zp and (zp not in consts or np.any(_array(consts[zp], base_dir) != 0)):
                qdq_zp.append(_node_name(n))
        if n.op_type == "TopK":
            k = n.input[1] if len(n.input) > 1 else ""
            sorted_ = next((a.i for a in n.attribute if a.name == "sorted"), 1)
            if k not in consts or int(_array(consts[k], base_dir).max()) >= 3840 or sorted_ != 1:
                topk.append(_node_name(n))
        if n.op_type == "GroupNormalization" and opset >= 21:
            groupnorm.append(_node_name(n))
        if n.op_type == "Resize":
            attrs = {a.name: (a.s.decode() if a.s else a.i) for a in n.attribute}
            if attrs.get("mode") == "cubic" or attrs.get("antialias", 0):
                resize.append(_node_name(n))
    for op, names in sorted(unsupported.items()):
        note = newer.get(op)
        why = (f"needs TensorRT >= {note['supported_since']} ({note['evidence'].split(';')[0]})" if note
               else "not in the 10.3 parser's operator table; needs a plugin or a graph rewrite")
        out.append(Finding(T, "error", f"unsupported-op:{op}", f"{op} {why}", names, src))
    if const_axes:
        out.append(Finding(T, "error", "non-constant-axes", "axes/pads input is computed at run time; "
                           "10.3 needs a constant initializer", const_axes, src))
    if qdq_zp:
        out.append(Finding(T, "error", "qdq-zero-point", "Q/DQ zero point is not a constant 0 "
                           "(TensorRT takes symmetric quantization only)", qdq_zp, src))
    if topk:
        out.append(Finding(T, "error", "topk", "TopK needs a constant K < 3840 and sorted=1", topk, src))
    if resize:
        out.append(Finding(T, "error", "resize-mode", "cubic or antialiased Resize is not parsed",
                           resize, src))
    if groupnorm:
        out.append(Finding(T, "error", "groupnorm-opset21", "opset-21 GroupNormalization (per-channel "
                           "scale/bias) is parsed from TensorRT 10.9 on; export with --opset 18 or 20",
                           groupnorm, src + "; NVIDIA/TensorRT CHANGELOG 10.9.0"))
    return out


# ------------------------------------------------------------------------------------------------
# OpenVINO NPU
# ------------------------------------------------------------------------------------------------
def _lint_npu(model: Any, types: dict[str, Any], consts: dict[str, Any], base_dir: Any) -> list[Finding]:
    notes = _data("openvino-npu-notes.json")
    src = "openvino-npu-notes.json: " + ", ".join(s["id"] for s in notes["sources"][:3])
    T = "openvino-npu"
    out: list[Finding] = []
    dynamic = [n for n, tt in types.items() if any(not isinstance(d, int) or d <= 0 for d in _dims(tt))]
    if dynamic:
        out.append(Finding(T, "error", "dynamic-shape", "tensors without a fixed shape; the NPU "
                           "compiles fully static models only", sorted(dynamic), src))
    big = [name for name, t in consts.items() if t.data_type in FLOAT_TYPES
           and np.abs(_array(t, base_dir)).max(initial=0) > FP16_MAX]
    if big:
        out.append(Finding(T, "warning", "fp16-range", f"constants beyond the FP16 range (|x| > "
                           f"{FP16_MAX:g}); NPU hardware computes in FP16", big, src))
    # every graph here has the batch as axis 0 of its first input (lr or f_hat)
    first = model.graph.input[0].name if model.graph.input else None
    batch = _dims(types[first])[0] if first in types and _dims(types[first]) else None
    if isinstance(batch, int) and batch > 1:
        out.append(Finding(T, "info", "batch", "batch > 1: the NPU plugin replays a batch-1 model per "
                           "item only when every input/output has the batch on axis 0", [], src))
    out.append(Finding(T, "info", "no-op-list", "Intel publishes no per-op NPU list; compile with the "
                       "target driver to be sure", [], src))
    return out


# ------------------------------------------------------------------------------------------------
# Core ML / Apple Neural Engine
# ------------------------------------------------------------------------------------------------
def _lint_ane(model: Any, types: dict[str, Any], consts: dict[str, Any]) -> list[Finding]:
    notes = _data("ane-notes.json")
    by_pattern = {f["pattern"]: f for f in notes["known_fallbacks"]}

    def src(pattern: str) -> str:
        f = by_pattern.get(pattern, {})
        return f"ane-notes.json: {f.get('source', '?')} (confidence {f.get('confidence', '?')})"

    T = "coreml-ane"
    out: list[Finding] = []
    producer = {o: _node_name(n) for n in model.graph.node for o in n.output}
    rank6 = sorted({producer.get(name, name) for name, tt in types.items() if len(tt.shape.dim) > ANE_MAX_RANK}
                   | {t.name for t in consts.values() if len(t.dims) > ANE_MAX_RANK})
    if rank6:
        out.append(Finding(T, "error", "rank>5", f"tensors of rank > {ANE_MAX_RANK}: Core ML rejects "
                           "the model (not only the ANE)", rank6, src("tensor rank > 5")))
    ints = sorted({producer[name] for name, tt in types.items()
                   if tt.elem_type in INT_TYPES and name in producer})
    if ints:
        rule, why, note = INT_COMPUTE
        out.append(Finding(T, "warning", rule, why, ints, src(note)))
    gathers = [_node_name(n) for n in model.graph.node if n.op_type in ("Gather", "GatherElements", "GatherND")]
    if gathers:
        out.append(Finding(T, "warning", "gather", "Gather / embedding lookups were observed on the CPU",
                           gathers, src("Gather / embedding lookups")))
    large = sorted({producer.get(name, name) for name, tt in types.items()
                    if any(isinstance(d, int) and d > ANE_MAX_DIM for d in _dims(tt))})
    if large:
        out.append(Finding(T, "warning", "large-dim", f"an axis longer than {ANE_MAX_DIM}: ANE "
                           "compilation fails above 2^14", large, src("any axis > 16384 (spatial width / reduction depth)")))
    rnn = [_node_name(n) for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if rnn:
        out.append(Finding(T, "error", "recurrent", "recurrent layers do not run on the ANE", rnn,
                           src("RNN / LSTM / GRU")))
    qdq = [_node_name(n) for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if qdq:
        out.append(Finding(T, "warning", "qdq", "Q/DQ int8 compute stays on the CPU (Core ML int8 "
                           "weights are dequantized for execution)", qdq,
                           src("INT8 QDQ ONNX (DequantizeLinear) through ORT CoreML EP")))
    dil = [_node_name(n) for n in model.graph.node if n.op_type == "Conv"
           and any(a.name == "dilations" and any(v > 1 for v in a.ints) for a in n.attribute)]
    if dil:
        out.append(Finding(T, "info", "dilated-conv", "dilated convolutions are reported off the ANE",
                           dil, src("dilated convolutions")))
    # a half graph keeps fp32 I/O behind boundary Casts: only tensors computed by other nodes count
    op_of = {o: n.op_type for n in model.graph.node for o in n.output}
    computed = {name: tt.elem_type for name, tt in types.items() if op_of.get(name, "Cast") != "Cast"}
    fp32 = sorted({producer[name] for name, t in computed.items() if t == 1})
    if fp32 and any(t in (10, 16) for t in computed.values()):
        out.append(Finding(T, "info", "fp32", "nodes computing in FP32 in a half-precision graph (kept f32 "
                           "on purpose: the half policy, exact integer steps); the ANE computes in FP16 "
                           "only, so these run off it", fp32, src("FP32 compute")))
    elif fp32:
        out.append(Finding(T, "info", "fp32", "the graph is FP32; the ANE computes in FP16 (convert "
                           "with FP16 compute precision, and check fidelity)", [], src("FP32 compute")))
    return out


def lint_model(model: Any, base_dir: str | os.PathLike[str] | None = None,
               targets: Iterable[str] = TARGETS) -> list[Finding]:
    """Advisory findings for each target; `model` may be loaded without its external data."""
    targets = list(targets)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown lint targets {sorted(unknown)}; choose from {TARGETS}")
    consts = _constants(model.graph)
    types = _value_types(model)
    out: list[Finding] = []
    if "tensorrt-10.3" in targets:
        out += _lint_tensorrt(model, consts, base_dir)
    if "openvino-npu" in targets:
        out += _lint_npu(model, types, consts, base_dir)
    if "coreml-ane" in targets:
        out += _lint_ane(model, types, consts)
    return out
