"""What a quantized artifact says it computes in, against what its graph holds: float nodes on int8
weights, the PSNR-Y drop judged as printed, the target named wherever "met" is, and fp16 weights
that only f32 nodes read kept in f32."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_quantize import FAST, export, int8_ort  # noqa: F401  (fixtures)
from test_quantize_bundled import tiny_export  # noqa: F401  (fixture)

from alignvar_edge.manifest import load_verified
from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
from alignvar_edge.quantize.fp16 import to_fp16
from alignvar_edge.quantize.half_policy import HalfPolicy, node_groups
from alignvar_edge.quantize.records import float_lines
from alignvar_edge.quantize.sensitivity import Fidelity, FidelityTarget, search
from alignvar_edge.recipes import recipe


def _float_nodes_on_int8_weights(model: onnx.ModelProto) -> int:
    """MatMul/Gemm/Conv nodes whose activation is float (no DequantizeLinear in front) but whose
    weight is DequantizeLinear of a stored int8 tensor: f32 compute on int8-rounded weights."""
    g = model.graph
    int8 = {i.name for i in g.initializer if i.data_type == TensorProto.INT8}
    producer = {o: n for n in g.node for o in n.output}

    def dequantized(x: str) -> onnx.NodeProto | None:
        p = producer.get(x)
        return p if p is not None and p.op_type == "DequantizeLinear" else None

    count = 0
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm", "Conv"):
            act, weight = dequantized(n.input[0]), dequantized(n.input[1])
            count += act is None and weight is not None and weight.input[0] in int8
    return count


def test_float_nodes_that_read_int8_weights_are_counted_and_said(export: Path, tmp_path: Path) -> None:  # noqa: F811
    """By default the coarse-scale copies kept float by policy read the int8 weight their finer
    copies share: the record counts them as the graph has them, and the words say so; with
    --float-copy-weights fp32 none does, and the words claim nothing."""
    plain = quantize_artifact(export, tmp_path / "int8", QuantizeOptions(search=False, **FAST))
    m = load_verified(plain)
    on_int8 = _float_nodes_on_int8_weights(onnx.load(str(plain / "model.onnx")))
    coarse = m.quantization["float_by_policy"]["coarse_scales"]
    assert on_int8 > 0 and sum(v["int8_weights"] for v in m.quantization["float_by_policy"].values()) == on_int8
    words = "all" if coarse["int8_weights"] == coarse["nodes"] else coarse["int8_weights"]
    assert f"coarse_scales ({coarse['nodes']}; {words}: f32 compute, int8 weights)" in float_lines(m.quantization)[0]

    copies = quantize_artifact(export, tmp_path / "fp32-copies",
                               QuantizeOptions(search=False, float_copy_weights="fp32", **FAST))
    q = load_verified(copies).quantization
    assert _float_nodes_on_int8_weights(onnx.load(str(copies / "model.onnx"))) == 0
    assert all(v["int8_weights"] == 0 for v in q["float_by_policy"].values())
    assert "int8 weights" not in float_lines(q)[0]


def test_groups_the_search_returned_to_float_hold_float_weights(int8_ort: Path) -> None:  # noqa: F811
    """A group returned to float takes all its copies with it, so its weight is stored in fp32 again:
    the graph's float nodes on int8 weights are those the policy's record counts, none of the
    search's."""
    q = load_verified(int8_ort).quantization
    assert q["float_by_search"], "the lively micro model's policy graph misses 99%: the search returns groups"
    assert all(s["int8_weights"] == 0 for s in q["float_by_search"])
    on_int8 = _float_nodes_on_int8_weights(onnx.load(str(int8_ort / "model.onnx")))
    assert on_int8 == sum(v["int8_weights"] for v in q["float_by_policy"].values())
    assert "int8 weights" not in float_lines(q)[1]


def _fidelity(drop: float) -> Fidelity:
    return Fidelity(tiles=16, token_agreement=1.0, per_scale=[1.0], identical_samples=1.0, psnr_y_hr=25.0 - drop,
                    psnr_y_hr_fp32=25.0, psnr_y_vs_fp32=60.0, mse_vs_fp32=0.0, mse_hr_fp32=0.003)


class _Fixed:
    """A validation split whose every candidate has one fidelity."""

    def __init__(self, f: Fidelity) -> None:
        self.f = f

    def evaluate(self, _model: object) -> Fidelity:
        return self.f


def _verdict_line(drop: float, max_drop: float) -> str:
    lines: list[str] = []
    search(lambda _groups: onnx.ModelProto(), [], _Fixed(_fidelity(drop)), _Fixed(_fidelity(drop)),  # type: ignore[arg-type]
           FidelityTarget(0.0, max_drop), log=lines.append)
    return lines[0]


def test_the_psnr_drop_is_judged_as_printed_and_recorded_without_a_hidden_tolerance() -> None:
    """--max-psnr-drop 0 took drops up to 0.001 dB as met (0.0003 and 0.0008 met, 0.0012 missed,
    all printed +0.001). Now a drop meets the target where its recorded figure does, and two lines
    that print the same figure get the same verdict."""
    assert _verdict_line(0.0008, 0.0).endswith("PSNR-Y drop +0.0008 dB -> misses the target")
    assert _verdict_line(0.0003, 0.0).endswith("-> misses the target")
    assert _verdict_line(-0.0003, 0.0).endswith("PSNR-Y drop -0.0003 dB -> meets the target")
    for max_drop in (0.0, 0.0008, 0.001, 0.1):
        verdicts: dict[str, set[bool]] = {}
        for drop in np.linspace(max_drop - 0.0003, max_drop + 0.0003, 601):
            f = _fidelity(float(drop))
            line = _verdict_line(float(drop), max_drop)
            shown = line.split("PSNR-Y drop ")[1].split(" dB")[0]
            verdicts.setdefault(shown, set()).add(line.endswith("meets the target"))
            recorded = f.to_dict()["psnr_drop"]
            assert f.meets(FidelityTarget(0.0, max_drop)) == (recorded <= max_drop), (drop, recorded)
        assert all(len(v) == 1 for v in verdicts.values()), verdicts


def test_met_names_its_target_and_build_warns_where_it_is_looser_than_selftests_gate(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """A quantize output judged at --min-token-agreement 0 'met' its target; its engine's README,
    `inspect` and the build say which target, and the build warns that selftest's gate for the
    engine (99% tokens) is stricter."""
    from alignvar_edge.cli import main

    src = quantize_artifact(export, tmp_path / "q", QuantizeOptions(
        search=False, fidelity=FidelityTarget(min_token_agreement=0.0), **FAST))
    assert load_verified(src).quantization["target"] == {"min_token_agreement": 0.0, "max_psnr_drop": 0.1}
    assert "target" not in load_verified(src).parity          # recorded once, in quantization
    named = "target: tokens >= 0%, PSNR-Y drop <= 0.1 dB: met"
    eng = tmp_path / "e"
    assert main(["build", str(src), "--target", "onnxruntime", "--precision", "int8", "--out", str(eng)]) == 0
    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if "warning:" in line)
    gate = recipe("onnxruntime", "int8")
    assert "looser target (tokens >= 0%, PSNR-Y drop <= 0.1 dB)" in warning, warning
    assert f"onnxruntime int8 ({gate.gate_words})" in warning and "--min-token-agreement 0.99 or more" in warning, warning
    assert named in (eng / "README.md").read_text()
    assert main(["inspect", str(eng)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("quantize "))
    assert line.endswith(named), line
    # a TensorRT build kit's manifest is its ONNX graph's: the warning takes TensorRT's gate (the
    # check read the 'onnx' backend's and the build exited 2 after writing the kit)
    trt = quantize_artifact(export, tmp_path / "q-trt", QuantizeOptions(
        target="tensorrt", search=False, fidelity=FidelityTarget(min_token_agreement=0.0), **FAST))
    capsys.readouterr()
    assert main(["build", str(trt), "--target", "tensorrt", "--precision", "int8", "--out", str(tmp_path / "k")]) == 0
    kit = next(line for line in capsys.readouterr().err.splitlines() if "warning:" in line)
    assert f"tensorrt int8 ({recipe('tensorrt', 'int8').gate_words})" in kit, kit


def test_an_engine_of_a_default_target_has_no_looser_target_warning(
        int8_ort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from alignvar_edge.cli import main

    assert main(["build", str(int8_ort), "--target", "onnxruntime", "--precision", "int8",
                 "--out", str(tmp_path / "e")]) == 0
    assert "warning:" not in capsys.readouterr().err
    assert "target: tokens >= 99%, PSNR-Y drop <= 0.1 dB: met" in (tmp_path / "e" / "README.md").read_text()


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


def test_a_record_from_before_the_count_does_not_call_its_coarse_copies_plain_float() -> None:
    """An artifact quantized before the count was recorded: its coarse-scale copies read int8
    weights wherever their finer copies were int8 (--float-copy-weights int8, the default), and
    `inspect` must not call them plain float; with fp32 copies they were."""
    old = {"float_by_policy": {"coarse_scales": {"nodes": 49}, "head": {"nodes": 6}},
           "recipe": {"float_copy_weights": "int8"}}
    line = float_lines(old)[0]
    assert "coarse_scales (49; f32 compute, int8 weights where their finer copies are int8 (not counted))" in line
    assert "head (6)" in line
    assert "int8 weights" not in float_lines({**old, "recipe": {"float_copy_weights": "fp32"}})[0]
