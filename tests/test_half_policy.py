"""Half-precision policy per group, searched by the token-fidelity loop (micro export)."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from test_quantize import export  # noqa: F401  (the cached lively micro export)

from alignvar_edge.errors import ConfigError
from alignvar_edge.manifest import read_manifest
from alignvar_edge.quantize.calibration.sets import CalibrationSet
from alignvar_edge.quantize.half_policy import HALF_GROUPS, HalfPolicy, half_candidate, node_groups, search_half
from alignvar_edge.quantize.sensitivity import Evaluator, FidelityTarget
from alignvar_edge.runtimes.base import config_from_manifest


def _model(export: Path) -> onnx.ModelProto:  # noqa: F811
    return onnx.load(str(export / "model.onnx"))


def test_groups_cover_matmuls_norms_and_head_and_are_disjoint(export: Path) -> None:  # noqa: F811
    groups = node_groups(_model(export))
    assert set(groups) == set(HALF_GROUPS)
    for g in ("decoder_convs", "transformer_matmuls", "attention", "norms", "logits_head"):
        assert groups[g], g
    names = [n for nodes in groups.values() for n in nodes]
    assert len(names) == len(set(names))


def test_policy_rows_and_errors() -> None:
    p = HalfPolicy("fp16", frozenset({"logits_head"}))
    assert p.per_group()["logits_head"] == "f32" and p.per_group()["decoder_convs"] == "fp16"
    assert HalfPolicy.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="half precision"):
        HalfPolicy("int8")
    with pytest.raises(ConfigError, match="unknown half groups"):
        HalfPolicy("bf16", frozenset({"everything"}))


def test_f32_groups_stay_f32_in_the_candidate(export: Path) -> None:  # noqa: F811
    m = _model(export)
    keep = node_groups(m)["logits_head"]
    half = half_candidate(m, HalfPolicy("fp16", frozenset({"logits_head"})))
    types = {i.name: i.data_type for i in half.graph.initializer}
    for n in half.graph.node:
        if n.name in keep:     # the head's weight stays f32; other weights are fp16
            assert types.get(n.input[1], onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT


def test_search_meets_the_target_from_all_half(export: Path) -> None:  # noqa: F811
    m = _model(export)
    cfg = config_from_manifest(read_manifest(export))
    cs = CalibrationSet.builtin(cfg, n=4, seed=0, n_val=8)
    val = Evaluator(str(export / "model.onnx"), cs.validation, batch=1, border=cfg.scale)
    policy, result = search_half(m, "fp16", val, lambda: Evaluator(str(export / "model.onnx"), cs.calibration,
                                                                   batch=1, border=cfg.scale), FidelityTarget())
    assert result.met
    assert result.fidelity.token_agreement >= 0.99 and result.fidelity.psnr_drop <= 0.1 + 1e-3
    assert policy.f32_groups == frozenset(result.float_groups)
    assert result.evaluations[0]["float_groups"] == 0      # started from the fastest assignment


def test_the_fused_attention_ops_are_in_groups_and_fp16_of_a_fused_export_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fused form's Attention, RotaryEmbedding, RMSNormalization and projection Einsums belong to
    groups: with every group in f32 they compute in f32 (outside the groups they stayed fp16 under
    every policy). The elementwise ops around them still tip tiny's fused rollout, so the fp16 pass
    refuses a fused export up front instead of searching to a miss."""
    import numpy as np
    import onnxruntime as ort
    from onnx import shape_inference

    from _runtime_fixtures import nano_model
    from alignvar_edge.export import onnx_export as ox
    from alignvar_edge.runtimes.artifacts import validation_tiles
    art = ox.export_onnx(nano_model(), tmp_path / "fused", batch=1, n_tiles=1, opset=23, attention="fused")
    m = _model(art)
    fused = {n.name for n in m.graph.node if n.op_type in ("Attention", "RotaryEmbedding", "RMSNormalization", "Einsum")}
    grouped = set().union(*node_groups(m).values())
    assert fused and fused <= grouped
    half = half_candidate(m, HalfPolicy("fp16", frozenset(HALF_GROUPS)))
    types = {v.name: v.type.tensor_type.elem_type for v in shape_inference.infer_shapes(half).graph.value_info}
    types.update({i.name: i.data_type for i in half.graph.initializer})
    for n in half.graph.node:
        if n.name in fused:
            assert types.get(n.input[0]) == onnx.TensorProto.FLOAT, (n.op_type, n.name)
    x = validation_tiles(nano_model().config, n=1, seed=1)

    def tokens(model: onnx.ModelProto) -> list[np.ndarray]:
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in s.get_outputs() if o.name.startswith("tokens")]
        return s.run(names, {"lr": x})

    assert _same_tokens(tokens(m), tokens(half))

    # quantize --precision fp16 refuses the fused form before any calibration work, in one line
    from alignvar_edge import cli
    out = tmp_path / "fp16"
    assert cli.main(["quantize", str(art), "--precision", "fp16", "--target", "onnxruntime", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fused attention form" in err and "--attention explicit --opset 18" in err
    assert "calibration" not in err and not out.exists()


def _same_tokens(a: list, b: list) -> bool:
    import numpy as np
    return len(a) == len(b) > 0 and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def no_sca_export(pytestconfig: pytest.Config) -> Path:
    """A micro model without SCA (as VARSR has none), exported once and cached."""
    import torch
    from _runtime_fixtures import cache_root, export_dir

    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    torch.manual_seed(0)
    return export_dir(AlignVAR(AlignVARConfig.from_preset("micro", sca=False)).eval(), cache_root(pytestconfig))


def test_fp16_quantize_lists_the_groups_the_graph_has(no_sca_export: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A model without SCA has no SCA bias path: quantize's summary and the manifest's half policy
    name the groups its graph has nodes in, never `sca_bias`; the policy reads back the same."""
    from alignvar_edge.cli import main as cli
    has = [g for g, nodes in node_groups(_model(no_sca_export)).items() if nodes]
    assert "sca_bias" not in has and len(has) == 5
    out = tmp_path / "fp16"
    assert cli(["quantize", str(no_sca_export), "--precision", "fp16", "--no-search", "--tiles", "2",
                "--val-tiles", "2", "--out", str(out)]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("compute precision per group:"))
    listed = line.split(";")[0].removeprefix("compute precision per group: ").split(", ")
    assert sorted(listed) == sorted(f"{g} fp16" for g in has)
    recorded = read_manifest(out).quantization["half_policy"]
    assert sorted(recorded["per_group"]) == sorted(has)
    assert HalfPolicy.from_dict(recorded).per_group() == recorded["per_group"]
