"""FP16 ONNX: float tensors and weights in half precision, graph I/O and a block list in fp32.

A small pass of our own (onnxconverter-common is not a dependency):

- every node computes in fp16 unless its op type is in `keep_ops` or its name is in
  `keep_nodes`; nodes touching no float tensor are left alone (shape arithmetic);
- a float tensor lives in the precision of its producer; a consumer that needs the other one
  gets a Cast (one per tensor and direction); graph inputs and outputs stay fp32, so callers
  feed and read float32 exactly as with the fp32 graph;
- float initializers (and Constant nodes) become fp16 when every consumer is fp16, stay fp32 when
  none is, and otherwise stay fp32 with a Cast for the fp16 consumers; values beyond the fp16
  range are clipped to +-65504 (counted in the report) rather than becoming inf. An op that only
  moves constant values (a weight's Transpose, say) follows the same rule, so a weight that only
  f32 nodes read (the logits head's, kept f32) stays f32 and is not rounded to half;
- attributes that name a float dtype follow their node (Cast `to`, ConstantOfShape `value`);
  Resize's `roi` / `scales` inputs stay fp32, as the ONNX spec requires.

On CPUs, ONNX Runtime runs fp16 nodes that lack a half kernel through its own inserted Casts (fp16
storage, fp32 arithmetic); accelerators (CUDA, TensorRT, NPUs) compute in half.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from alignvar_edge.export import onnx_io
from alignvar_edge.graph_names import STACK_TRACE
from alignvar_edge.native_paths import native_path

__all__ = ["DEFAULT_KEEP_OPS", "Fp16Report", "float_tensors", "to_fp16"]

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
# Reductions of squares and their roots overflow or lose the small end in half precision; the
# argmax decides the tokens, so its input (the logits) is compared in fp32.
DEFAULT_KEEP_OPS = frozenset({"ReduceL2", "ReduceSumSquare", "Pow", "Sqrt", "Reciprocal", "ArgMax"})
# inputs that must stay float32 whatever T is: (op_type, input index)
_FP32_SLOTS = {("Resize", 1), ("Resize", 2)}
_DROP_METADATA = {STACK_TRACE, "pkg.torch.onnx.fx_node"}
# ops whose float inputs may be of any type (no Cast needed in front of them)
_ANY_INPUT_OPS = {"Cast", "Shape", "Size"}
# ops that move or select values without arithmetic: fed by constants alone, they hold a constant
# (a weight transposed for its MatMul), whose precision is its consumers' (_constants_follow_consumers)
_LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Concat", "Slice",
                         "Gather", "Expand", "Tile", "Split"})


@dataclass
class Fp16Report:
    fp16_nodes: int = 0
    fp32_nodes: list[str] = field(default_factory=list)
    casts: int = 0
    clipped_values: int = 0


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor (shape inference; through a file past protobuf's 2 GB)."""

    if onnx_io.is_large(model):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="alignvar-fp16-") as tmp:
            src, dst = Path(tmp) / "m.onnx", Path(tmp) / "inferred.onnx"
            onnx_io.save(model, src, large=True)
            with native_path(src) as src_at, native_path(dst) as dst_at:     # $TMPDIR may be named in any encoding
                onnx.shape_inference.infer_shapes_path(src_at, dst_at, check_type=False, strict_mode=False)
            inferred = onnx.load(str(dst), load_external_data=False)
    else:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    g = inferred.graph
    t = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    t.update({i.name: i.data_type for i in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    t[n.output[0]] = a.t.data_type
    return t


def float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of `model` (inputs, intermediates, outputs, weights)."""
    return {name for name, t in _types(model).items() if t == FLOAT}


def to_fp16(model: onnx.ModelProto, keep_ops: Iterable[str] = DEFAULT_KEEP_OPS,
            keep_nodes: Iterable[str] = ()) -> tuple[onnx.ModelProto, Fp16Report]:
    """A half-precision copy of `model` (see the module docstring) and what the pass did."""
    keep_ops, keep_nodes = frozenset(keep_ops), frozenset(keep_nodes)
    types = _types(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    report = Fp16Report()
    is_float = lambda name: types.get(name) == FLOAT  # noqa: E731

    consts = {i.name for i in g.initializer}
    const_nodes = {n.output[0]: n for n in g.node if n.op_type == "Constant" and is_float(n.output[0])}
    compute = [n for n in g.node if n.op_type != "Constant"]

    def half(n: onnx.NodeProto) -> bool:
        touches = any(is_float(x) for x in [*n.input, *n.output] if x)
        return touches and n.op_type not in keep_ops and n.name not in keep_nodes

    in_half = {id(n): half(n) for n in compute}
    _constants_follow_consumers(g, compute, in_half, is_float, consts | set(const_nodes))
    for n in compute:
        if any(is_float(x) for x in [*n.input, *n.output] if x):
            if in_half[id(n)]:
                report.fp16_nodes += 1
            else:
                report.fp32_nodes.append(n.name or n.op_type)

    # where each float tensor lives
    home: dict[str, int] = {}
    for v in g.input:
        if is_float(v.name):
            home[v.name] = FLOAT
    for n in compute:
        for o in n.output:
            if is_float(o):
                home[o] = HALF if in_half[id(n)] else FLOAT
    wants: dict[str, set[int]] = {}
    for n in compute:
        for k, i in enumerate(n.input):
            if i and is_float(i) and n.op_type not in _ANY_INPUT_OPS:
                wants.setdefault(i, set()).add(_wanted(n, k, in_half))
    for name in consts | set(const_nodes):
        if is_float(name):
            home[name] = HALF if wants.get(name) == {HALF} else FLOAT

    # constants: convert in place
    for init in g.initializer:
        if home.get(init.name) == HALF:
            init.CopyFrom(_half_tensor(init, report))
    for name, n in const_nodes.items():
        if home[name] == HALF:
            for a in n.attribute:
                if a.name == "value":
                    a.t.CopyFrom(_half_tensor(a.t, report))

    # attributes naming a float dtype follow their node
    for n in compute:
        if not in_half[id(n)]:
            continue
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                a.i = HALF
            if n.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == FLOAT:
                a.t.CopyFrom(_half_tensor(a.t, report))
        if n.op_type == "ConstantOfShape" and not any(a.name == "value" for a in n.attribute):
            # no value attribute means float32 zeros: say fp16 zeros explicitly
            n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))

    # casts where producer and consumer disagree
    new_nodes: list[onnx.NodeProto] = []
    cast_of: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in cast_of:
            out = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"{out}__cast"))
            cast_of[key] = out
            report.casts += 1
        return cast_of[key]

    for n in g.node:
        if n.op_type == "Constant":
            new_nodes.append(n)
            continue
        for k, i in enumerate(n.input):
            if i and is_float(i) and n.op_type not in _ANY_INPUT_OPS:
                need = _wanted(n, k, in_half)
                if home.get(i, FLOAT) != need:
                    n.input[k] = cast(i, need)
        new_nodes.append(n)

    # graph outputs stay fp32: the producer writes '<name>__fp16', a Cast restores the name
    for o in g.output:
        if home.get(o.name) == HALF:
            inner = f"{o.name}__fp16"
            for n in new_nodes:
                for k, x in enumerate(n.output):
                    if x == o.name:
                        n.output[k] = inner
                for k, x in enumerate(n.input):
                    if x == o.name:
                        n.input[k] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [o.name], to=FLOAT, name=f"{o.name}__cast"))
            report.casts += 1

    del g.node[:]
    g.node.extend(_toposort(new_nodes, {i.name for i in g.input} | consts))
    # the exporter's per-node stack traces were ~70% of the micro file (and name local paths);
    # the module scopes, which the quantization policy reads, are kept
    for n in g.node:
        keep = [p for p in n.metadata_props if p.key not in _DROP_METADATA]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
    # intermediate types changed: let consumers re-infer them
    del g.value_info[:]
    return m, report


def _wanted(n: onnx.NodeProto, k: int, in_half: dict[int, bool]) -> int:
    """The precision node n reads its k-th float input in."""
    return FLOAT if (n.op_type, k) in _FP32_SLOTS or not in_half[id(n)] else HALF


def _constants_follow_consumers(g: onnx.GraphProto, compute: list[onnx.NodeProto], in_half: dict[int, bool],
                                is_float: Callable[[str], bool], constants: set[str]) -> None:
    """Layout ops fed by constants alone compute in half only where every consumer of their output
    reads half, as a constant is converted (in_half updated in place): otherwise a weight that only
    f32 nodes read was rounded to half by its Transpose and cast back, and those nodes computed on
    half weights."""
    held = set(constants)                    # tensors that hold constant values
    layout = []
    for n in compute:                        # graph order is topological
        if n.op_type in _LAYOUT_OPS and all(i in held for i in n.input if i and is_float(i)) \
                and any(is_float(i) for i in n.input if i):
            held.update(n.output)
            layout.append(n)
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in compute:
        for k, i in enumerate(n.input):
            if i and n.op_type not in _ANY_INPUT_OPS:
                readers.setdefault(i, []).append((n, k))
    outputs = {o.name for o in g.output}
    for n in reversed(layout):               # consumers first, so a chain of layout ops follows its end
        if in_half[id(n)]:
            in_half[id(n)] = all(o not in outputs and all(_wanted(r, k, in_half) == HALF
                                                          for r, k in readers.get(o, []))
                                 for o in n.output if is_float(o))


def _half_tensor(t: onnx.TensorProto, report: Fp16Report) -> onnx.TensorProto:
    a = numpy_helper.to_array(t).astype(np.float32)
    over = np.abs(a) > FP16_MAX
    report.clipped_values += int(over[np.isfinite(a)].sum())
    out = numpy_helper.from_array(np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), t.name)
    return out


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Order nodes so every input is produced first (inserted Casts go right after producers)."""
    have = set(available) | {""}
    producers: dict[str, int] = {o: k for k, n in enumerate(nodes) for o in n.output}
    done: list[bool] = [False] * len(nodes)
    out: list[onnx.NodeProto] = []

    def visit(k: int) -> None:
        stack = [(k, False)]
        while stack:
            j, expanded = stack.pop()
            if done[j]:
                continue
            if expanded:
                done[j] = True
                out.append(nodes[j])
                have.update(nodes[j].output)
                continue
            stack.append((j, True))
            for i in nodes[j].input:
                if i not in have and i in producers and not done[producers[i]]:
                    stack.append((producers[i], False))

    for k in range(len(nodes)):
        visit(k)
    return out
