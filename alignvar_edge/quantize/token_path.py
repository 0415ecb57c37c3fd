"""The token path of an exported graph: every node some `tokens_k` output depends on.

What is off the token path (the VQ decoder, the LR skip, the last scale's latent update) cannot
change a token, so it may compute in half precision while the token path stays f32: OpenVINO gets
that as two compiled models (runtimes/openvino/split.py), TensorRT as per-layer precision
constraints on the token path's float layers (the default of an fp16 build without a searched
half policy).
"""
from __future__ import annotations

import onnx

from alignvar_edge.graph_names import SR

__all__ = ["float_compute_nodes", "token_outputs", "token_path", "token_path_float_nodes"]

# layers whose precision is not a computation's (they read shapes or only change the type)
_NOT_COMPUTE = frozenset({"Shape", "Size", "Cast", "Constant"})


def token_outputs(graph: onnx.GraphProto) -> set[str]:
    return {o.name for o in graph.output if o.name != SR}


def token_path(graph: onnx.GraphProto, outputs: set[str] | None = None) -> set[int]:
    """Indices of the nodes any of `outputs` (default: every token output) depends on."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    needed: set[int] = set()
    todo, seen = list(token_outputs(graph) if outputs is None else outputs), set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        i = producer.get(t)
        if i is not None and i not in needed:
            needed.add(i)
            todo.extend(x for x in graph.node[i].input if x)
    return needed


def float_compute_nodes(model: onnx.ModelProto) -> dict[int, str]:
    """Index -> name of the named nodes that compute on float tensors: the layers an FP16 builder
    flag could move to half."""
    from alignvar_edge.quantize.fp16 import float_tensors
    is_float = float_tensors(model)
    return {i: n.name for i, n in enumerate(model.graph.node)
            if n.name and n.op_type not in _NOT_COMPUTE and any(x in is_float for x in [*n.input, *n.output] if x)}


def token_path_float_nodes(model: onnx.ModelProto, floats: dict[int, str] | None = None) -> set[str]:
    """Names of the token path's float-computing nodes, with the exact-arithmetic scopes that stay
    f32 everywhere. `floats`: float_compute_nodes(model) where the caller has it (shape inference
    is the slow part)."""
    from alignvar_edge.quantize.policy import exact_nodes
    floats = float_compute_nodes(model) if floats is None else floats
    return {floats[i] for i in token_path(model.graph) if i in floats} | exact_nodes(model)
