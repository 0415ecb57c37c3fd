"""What a quantized artifact says it computes in, against what its graph holds: fp16 weights that
only f32 nodes read kept in f32."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_quantize_bundled import tiny_export  # noqa: F401  (fixture)

from alignvar_edge.manifest import load_verified
from alignvar_edge.quantize.fp16 import to_fp16
from alignvar_edge.quantize.half_policy import HalfPolicy, node_groups


def _transposed_weight_graph(w: np.ndarray) -> onnx.ModelProto:
    """x -> MatMul(x, Transpose(W)) twice: 'f32' (kept f32 by the caller) and 'half'."""
    nodes = [helper.make_node("Transpose", ["W"], ["Wt"], name="t", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "Wt"], ["y32"], name="f32"),
             helper.make_node("MatMul", ["x", "Wt"], ["y16"], name="half")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in
          (("x", [1, 4]), ("y32", [1, 3]), ("y16", [1, 3]))]
    g = helper.make_graph(nodes, "g", io[:1], io[1:], [numpy_helper.from_array(w, "W")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


@pytest.mark.parametrize("also_half", [False, True])
def test_a_weight_only_f32_nodes_read_stays_f32_through_its_transpose(also_half: bool) -> None:
    """The logits head (f32) read `head.weight` through a Transpose, which computed in half: the
    weight was stored in fp16 and the 'f32' head multiplied half-rounded weights. A weight (and its
    transpose) that only f32 nodes read stays f32; one that half nodes read too is stored f32 and
    cast for them."""
    w = (1.0 + np.arange(12, dtype=np.float32).reshape(3, 4) * 2.0 ** -13).astype(np.float32)  # not f16-exact
    x = np.ones((1, 4), np.float32)
    model = _transposed_weight_graph(w)
    keep = {"f32"} | (set() if also_half else {"half"})
    half, _ = to_fp16(model, keep_ops=(), keep_nodes=keep)
    assert {i.name: i.data_type for i in half.graph.initializer}["W"] == TensorProto.FLOAT
    out = _run(half, x)
    np.testing.assert_array_equal(out["y32"], x @ w.T)          # exactly the f32 product
    if also_half:
        assert not np.array_equal(out["y16"], x @ w.T)          # the half node still rounds


@pytest.mark.slow
def test_the_f32_logits_head_of_an_fp16_graph_reads_f32_weights(tiny_export: Path) -> None:  # noqa: F811
    """`quantize --precision fp16` of the bundled model with logits_head f32 (what its search keeps):
    every head matmul's weight is an f32 initializer with no half step (Cast) on its way, as
    `inspect`'s 'logits_head f32' says. (The bundled export reads `head.weight` through one shared
    Transpose; smaller models' exports fold it into one initializer per call.)"""
    model = onnx.load(str(tiny_export / load_verified(tiny_export).single_graph_entry()["file"]))
    policy = HalfPolicy.of_graph(model, "fp16", frozenset({"logits_head"}))
    half, _ = to_fp16(model, ("ArgMax",), policy.f32_nodes(model))
    g = half.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    head = node_groups(model)["logits_head"]
    assert head
    for n in g.node:
        if n.name in head:
            x = n.input[1]
            while x not in inits:
                p = producer[x]
                assert p.op_type != "Cast", (n.name, p.name)
                x = p.input[0]
            assert inits[x].data_type == TensorProto.FLOAT, (n.name, x)
