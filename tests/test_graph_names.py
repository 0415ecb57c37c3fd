"""The graph's input and output names have one owner (`graph_names.py`): the exporter's graphs,
an engine manifest's graph entry and the manifest's input contract all spell them from it."""
from __future__ import annotations

from alignvar_edge.graph_names import is_token_name, token_name, token_scale


def test_token_scale_reads_back_only_what_token_name_writes() -> None:
    assert [token_scale(token_name(k)) for k in (0, 3, 12)] == [0, 3, 12]
    others = ("sr", "lr", "tokens", "tokens_", "tokens_x", "tokens_\u00b2", "logits_0", "f_hat_out")
    assert [token_scale(n) for n in others] == [None] * len(others)
    assert [is_token_name(n) for n in ("tokens_7", "tokens_x")] == [True, False]


def test_export_engine_manifest_and_contract_name_the_same_inputs_and_outputs() -> None:
    from alignvar_edge.export.graphs import single_spec
    from alignvar_edge.manifest import contract
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import VARSR_SWITCHES, AlignVARConfig
    from alignvar_edge.runtimes.artifacts import single_graph_io
    cfg = AlignVARConfig.from_preset("micro", **{**VARSR_SWITCHES, "lr_encoder_channels": (8, 16, 32)},
                                     refiner_width=16, refiner_depth=1, refiner_steps=2)
    (spec,) = single_spec(AlignVAR(cfg).eval(), 2)
    io = single_graph_io(cfg, 2, noise=True)
    # the names users see in every README and input contract
    tokens = [f"tokens_{k}" for k in range(len(cfg.patch_nums))]
    assert list(spec.inputs) == [i["name"] for i in io["inputs"]] == ["lr", "noise"]
    assert spec.outputs == [o["name"] for o in io["outputs"]] == ["sr", *tokens]
    c = contract(cfg.lr_size, cfg.scale, 2, config=cfg, noise=True)
    assert (c["name"], c["noise"]["name"], c["output"]["name"]) == ("lr", "noise", "sr")


def test_an_unknown_graph_form_is_refused_before_any_model_is_loaded(tmp_path) -> None:
    import pytest

    from alignvar_edge.errors import ConfigError
    from alignvar_edge.export.onnx_export import export_onnx
    with pytest.raises(ConfigError, match=r"^graph must be 'single' or 'staged', got 'tiled'$"):
        export_onnx(str(tmp_path / "no such checkpoint"), tmp_path / "out", graph="tiled")
    assert not (tmp_path / "out").exists()
