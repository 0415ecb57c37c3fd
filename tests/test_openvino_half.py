"""OpenVINO half precision: the hint each engine sets, the per-group record, the default's warning."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
from test_quantize import export, int8_ort  # noqa: F401  (the cached lively micro export, its Q/DQ int8)

pytest.importorskip("openvino")

from alignvar_edge import runtimes  # noqa: E402
from alignvar_edge.errors import HalfPrecisionError  # noqa: E402
from alignvar_edge.runtimes.openvino.backend import (PrecisionWarning, compile_config, image_part_precision,  # noqa: E402
                                                     inference_precision)


def test_hint_follows_the_build_precision_and_device() -> None:
    assert compile_config("CPU", True, None, None, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config("CPU", True, None, None, "fp32")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config("GPU.0", True, None, None, "fp16")["INFERENCE_PRECISION_HINT"] == "f16"
    assert compile_config("CPU", True, None, None, "fp16")["INFERENCE_PRECISION_HINT"] == "f32"
    assert "INFERENCE_PRECISION_HINT" not in compile_config("CPU", False, None, None, "fp32")
    assert inference_precision("int8", "CPU") == "f32"
    assert compile_config("CPU", True, None, None, "int8", inference="bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config("CPU", True, None, "throughput")["PERFORMANCE_HINT"] == "THROUGHPUT"
    # AUTO refuses these itself: each hardware device it may pick gets them (else AUTO's CPU computed
    # bf16 with every thread on AVX512-BF16 / AMX hosts, whatever the engine's precision or --threads)
    auto = compile_config("AUTO", True, 1, None, "fp32")
    assert "INFERENCE_PRECISION_HINT" not in auto and "INFERENCE_NUM_THREADS" not in auto
    assert auto["DEVICE_PROPERTIES"] == {"CPU": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"},
                                         "GPU": {"INFERENCE_PRECISION_HINT": "f32"}}
    assert compile_config("AUTO", False, None, None, "fp32") == {"PERFORMANCE_HINT": "LATENCY"}
    from alignvar_edge.errors import InputError
    with pytest.raises(InputError, match="unknown OpenVINO performance hint 'fast'; use one of latency, throughput"):
        compile_config("CPU", True, None, "fast")


def test_split_image_part_precision_rule() -> None:
    from types import SimpleNamespace as Manifest      # the two fields the rule reads

    from alignvar_edge.runtimes.half import host_half
    # bf16 / fp16: the hint the build checked, on its own kind of device; its precision's elsewhere
    bf16 = Manifest(precision="bf16", extra={"device": "CPU", "split": {"image_precision": "bf16"}})
    assert image_part_precision(bf16, "CPU") == "bf16"
    assert image_part_precision(bf16, "GPU.0") == "f32"
    # int8: the image part's float ops take the fast half of wherever the engine runs (they cannot
    # change a token), whatever the build host chose
    int8 = Manifest(precision="int8", extra={"device": "CPU", "split": {"image_precision": "f32"}})
    assert image_part_precision(int8, "CPU") == ("bf16" if host_half("openvino", "CPU") else "f32")
    assert image_part_precision(int8, "GPU.0") == "f16"


def _default_cpu_precision() -> str:
    import openvino as ov
    v = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    return "bf16" if "bfloat16" in v else "f16" if "float16" in v else "f32"


def _as_on_a_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for a CPU with bf16 units (AVX512-BF16) where the toolkit decides what to try
    (`host_half`: the plain build's bf16, the island rung); OpenVINO still computes what this CPU
    can. For tests of the ladder's control flow, manifest and messages, not of bf16 numbers."""
    from alignvar_edge.runtimes import half
    real = half.isa_features
    monkeypatch.setattr(half, "isa_features", lambda *a: {**real(*a), "AVX512-BF16": True})


def test_fp32_engine_records_per_group_precision_and_flags_the_default(export: Path, tmp_path: Path) -> None:  # noqa: F811
    out = runtimes.build(export, "openvino", "fp32", out=tmp_path / "ov")
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["inference_precision_hint"] == "f32"
    cp = m["extra"]["compute_precision"]
    assert {"transformer_matmuls", "decoder_convs", "logits_head"} <= set(cp)
    assert all(set(v) == {"f32"} for v in cp.values())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with runtimes.load(out) as e:
            assert e.compute_precision == "f32"
        assert not [x for x in w if issubclass(x.category, PrecisionWarning)]
        with runtimes.load(out, parity=False) as e:
            assert e.compute_precision == _default_cpu_precision()
        flagged = [x for x in w if issubclass(x.category, PrecisionWarning)]
        assert len(flagged) == (0 if _default_cpu_precision() == "f32" else 1)
        # AUTO (on this host's CPU) computes what the engine was checked in, and says so
        with runtimes.load(out, device="AUTO") as e:
            assert e.compute_precision == "f32"
            assert all(set(v) == {"f32"} for v in e.runtime_precision().values())
        with runtimes.load(out, device="AUTO", parity=False) as e:
            assert e.compute_precision == _default_cpu_precision()
        flagged = [x for x in w if issubclass(x.category, PrecisionWarning)]
        assert len(flagged) == (0 if _default_cpu_precision() == "f32" else 2)


def test_bf16_build_keeps_the_tokens_or_writes_nothing(export: Path, tmp_path: Path) -> None:  # noqa: F811
    if _default_cpu_precision() != "bf16":
        pytest.skip("this CPU has no bf16 units (needs AVX512-BF16 or AMX)")
    out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "bf16")
    m = json.loads((out / "manifest.json").read_text())
    assert m["parity"]["tokens"]["overall"] >= 0.99
    # model.xml's hint: a split engine's token part is f32, a whole graph is bf16
    assert m["extra"]["inference_precision_hint"] == ("f32" if "split" in m["extra"] else "bf16")
    ladder = m["extra"]["half_ladder"]
    assert ladder[-1]["token_agreement"] >= 0.99 and all(r["token_agreement"] < 0.99 for r in ladder[:-1])
    cp = m["extra"]["compute_precision"]
    assert "bf16" in cp["decoder_convs"]
    if "split" in m["extra"]:          # the whole graph lost tokens: the token path ran f32, or f32
        assert ladder[0]["rung"] == "whole graph"            # with its MLP matmuls bf16
        islands = m["extra"]["split"].get("token_bf16_matmuls", 0)
        assert set(cp["transformer_matmuls"]) == ({"bf16", "f32"} if islands else {"f32"})
        assert set(cp["logits_head"]) == {"f32"}
        with runtimes.load(out) as e:
            assert e.compute_precision == ("bf16 image, f32 tokens with bf16 matmuls" if islands
                                           else "bf16 image, f32 tokens")
        with pytest.warns(PrecisionWarning, match="bf16 image, bf16 tokens"):   # OpenVINO's default: all bf16
            runtimes.load(out, parity=False).close()


def test_bf16_build_tries_bf16_islands_before_an_all_f32_token_path(export: Path, tmp_path: Path,  # noqa: F811
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the split with the token part's MLP matmuls in bf16 comes before the all-f32 token
    path, judged on more tiles than the other rungs; whichever is kept, the manifest says what its
    token path computed in. `token_bf16=False` leaves that rung out: the split's tokens are exact."""
    if _default_cpu_precision() != "bf16":
        pytest.skip("this CPU has no bf16 units (needs AVX512-BF16 or AMX)")
    from alignvar_edge.runtimes.openvino import backend as ovb
    real = ovb._half_problem
    monkeypatch.setattr(ovb, "_half_problem",          # the whole graph is refused whatever it keeps
                        lambda m, *a: real(m, *a) if m.extra.get("split") else "refused by the test")
    out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "islands")
    m = json.loads((out / "manifest.json").read_text())
    rungs = [r["rung"] for r in m["extra"]["half_ladder"]]
    mixed, exact = "image suffix, MLP matmuls bf16 (token path otherwise f32)", "image suffix only (token path f32)"
    assert rungs in (["whole graph", mixed], ["whole graph", mixed, exact])
    split, cp = m["extra"]["split"], m["extra"]["compute_precision"]
    # the island rung is judged on more tiles than the rungs that cannot lose a token
    assert ovb.ISLAND_GATE_TILES > ovb.GATE_TILES
    assert m["parity"]["tiles"] == (ovb.ISLAND_GATE_TILES if rungs[-1] == mixed else ovb.GATE_TILES)
    if rungs[-1] == mixed:                 # kept: the islands held the tokens on the gate's tiles
        assert split["token_precision"] == "f32 + bf16 MLP matmuls" and split["token_bf16_matmuls"] > 0
        # the MLPs ran bf16, the attention projections and AdaLN f32
        assert set(cp["transformer_matmuls"]) == {"bf16", "f32"} and set(cp["logits_head"]) == {"f32"}
        with runtimes.load(out) as e:
            assert e.compute_precision == "bf16 image, f32 tokens with bf16 matmuls"
    else:                                  # refused: the kept split's token path is all f32
        assert m["extra"]["half_ladder"][1]["refused"] and split["token_precision"] == "f32"
        assert set(cp["transformer_matmuls"]) == {"f32"}
    out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "exact", token_bf16=False)
    m = json.loads((out / "manifest.json").read_text())
    assert [r["rung"] for r in m["extra"]["half_ladder"]] == ["whole graph", exact]
    assert m["extra"]["split"]["token_precision"] == "f32" and m["parity"]["tokens"]["overall"] == 1.0


def test_int8_build_tries_bf16_islands_before_an_all_f32_token_path(export: Path, tmp_path: Path,  # noqa: F811
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An int8 split whose token part stays float gets the same island rung as a bf16 build: after the
    policy rung (token part int8), before the all-f32 token path, judged on more tiles.
    `token_bf16=False` leaves it out."""
    if _default_cpu_precision() != "bf16":
        pytest.skip("this CPU has no bf16 units (needs AVX512-BF16 or AMX)")
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.runtimes.openvino import backend as ovb
    real = ovb.OpenVINOBackend._check

    def check(self, tmp, files, m, *rest):               # the policy rung is refused whatever it keeps
        parity = real(self, tmp, files, m, *rest)
        if m.extra["split"]["token_precision"].startswith("int8"):
            parity = {**parity, "tokens": {**parity["tokens"], "overall": 0.5}}
        return parity
    monkeypatch.setattr(ovb.OpenVINOBackend, "_check", check)
    calib = lr_tiles(runtimes.load(export).config, 8, seed=0)
    out = runtimes.build(export, "openvino", "int8", calibration=calib, out=tmp_path / "islands")
    m = json.loads((out / "manifest.json").read_text())
    rungs = [r["rung"] for r in m["quantization"]["ladder"]]
    mixed = "decoder only, MLP matmuls bf16 (token path otherwise f32, split)"
    exact = "decoder only, token path f32 (split)"
    assert rungs in (["policy", mixed], ["policy", mixed, exact])
    split, cp = m["extra"]["split"], m["extra"]["compute_precision"]
    assert m["parity"]["tiles"] == (ovb.ISLAND_GATE_TILES if rungs[-1] == mixed else ovb.GATE_TILES)
    assert {"u8", "i8"} & set(cp["decoder_convs"])                       # the decoder is int8 either way
    if rungs[-1] == mixed:
        assert split["token_precision"] == "f32 + bf16 MLP matmuls" and split["token_bf16_matmuls"] > 0
        assert set(cp["transformer_matmuls"]) == {"bf16", "f32"} and set(cp["logits_head"]) == {"f32"}
        with runtimes.load(out) as e:
            assert e.compute_precision == "bf16 image, f32 tokens with bf16 matmuls"
    out = runtimes.build(export, "openvino", "int8", calibration=calib, out=tmp_path / "exact", token_bf16=False)
    m = json.loads((out / "manifest.json").read_text())
    assert [r["rung"] for r in m["quantization"]["ladder"]] == ["policy", exact]
    assert m["extra"]["split"]["token_precision"] == "f32" and set(m["extra"]["compute_precision"]["transformer_matmuls"]) == {"f32"}


def test_the_int8_island_rung_is_the_decoder_only_rung_plus_bf16_mlps() -> None:
    from alignvar_edge.runtimes.openvino.backend import OpenVINOBackend
    rungs = OpenVINOBackend._rungs
    for groups in (frozenset(), frozenset({"blocks.0.ffn.fc1"})):
        ladder = rungs("int8", groups, True, False, True, islands=True)
        assert [r.token_bf16 for r in ladder] == [False, True, False]
        island, decoder = ladder[1:]
        assert island.name == "decoder only, MLP matmuls bf16 (token path otherwise f32, split)"
        assert (island.policy, island.split, island.token_int8) == (decoder.policy, decoder.split, decoder.token_int8)
        assert not any(r.token_bf16 for r in rungs("int8", groups, True, False, True))
    assert not any(r.token_bf16 for r in rungs("int8", frozenset(), True, False, False, islands=True))   # no split

def test_token_bf16_is_refused_where_it_cannot_be_checked(export: Path, tmp_path: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from alignvar_edge import cli
    from alignvar_edge.errors import InputError
    from alignvar_edge.recipes import check_options
    from alignvar_edge.runtimes.openvino import backend as ovb
    with pytest.raises(InputError, match="--token-bf16 applies to --target openvino --precision bf16\\|int8 only"):
        check_options("openvino", "fp32", {"token_bf16": True})
    # unchecked (check=False; or a CPU without fast bf16), the islands could not be judged: asked
    # for, one line in the caller's words and nothing written; by default, the split with an all-f32 token path
    with pytest.raises(InputError, match=r"^token_bf16=True needs the build to run on the CPU that will compute bf16 "
                                         r".*this build cannot: drop token_bf16=True$"):
        runtimes.build(export, "openvino", "bf16", out=tmp_path / "never", token_bf16=True, check=False)
    monkeypatch.setattr(ovb, "_int8_image_precision", lambda _device: "f32")     # a CPU without bf16 units
    capsys.readouterr()
    assert cli.main(["build", str(export), "--target", "openvino", "--precision", "bf16", "--token-bf16",
                     "--out", str(tmp_path / "never")]) != 0
    assert re.search(r"--token-bf16 needs the build to run on the CPU that will compute bf16 .*this build cannot: "
                     r"drop --token-bf16$", capsys.readouterr().err.strip())
    assert not (tmp_path / "never").exists()
    out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "unchecked", check=False)
    assert json.loads((out / "manifest.json").read_text())["extra"]["split"]["token_precision"] == "f32"


def test_no_token_bf16_keeps_exact_tokens_and_asks_nothing_where_nothing_is_tried(
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Without --precision the options are checked against the build tried first: bf16 on a CPU
    that computes it, where --no-token-bf16 leaves the island rung out. Where no host's build would try
    islands (another target), the switch turned off is refused as the switch turned on is."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.openvino import backend as ovb
    # --token-bf16 turned on where it cannot apply is still one line naming where it does
    assert main(["build", str(export), "--target", "onnxruntime", "--token-bf16", "--out", str(tmp_path / "x")]) != 0
    assert not (tmp_path / "x").exists()
    assert main(["build", str(export), "--target", "onnxruntime", "--no-token-bf16", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    _as_on_a_bf16_cpu(monkeypatch)
    real = ovb._half_problem
    monkeypatch.setattr(ovb, "_half_problem",          # the whole graph is refused whatever it keeps
                        lambda m, *a: real(m, *a) if m.extra.get("split") else "refused by the test")
    assert main(["build", str(export), "--target", "openvino", "--no-token-bf16", "--out", str(tmp_path / "e")]) == 0
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert m["precision"] == "bf16"
    assert [r["rung"] for r in m["extra"]["half_ladder"]] == ["whole graph", "image suffix only (token path f32)"]

def test_split_parts_compose_to_the_whole_graph(export: Path) -> None:  # noqa: F811
    """The token part then the image part compute what the single graph computes (in ONNX Runtime)."""
    import numpy as np
    import onnxruntime as ort

    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.runtimes.artifacts import validation_tiles
    from alignvar_edge.runtimes.base import config_from_manifest
    from alignvar_edge.runtimes.openvino.split import split_at_tokens

    cut = split_at_tokens(export / "model.onnx")
    assert not [n for n in cut.image_part.graph.node if n.op_type == "ArgMax"]    # no token is made there
    assert [o.name for o in cut.image_part.graph.output] == ["sr"]
    x = validation_tiles(config_from_manifest(read_manifest(export)), n=1)   # static batch 1

    def run(model: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(),  # type: ignore[attr-defined]
                                 providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in s.get_outputs()], s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})))

    whole = run(str(export / "model.onnx"), {"lr": x})
    values = {"lr": x, **run(cut.token_part, {"lr": x})}
    values.update(run(cut.image_part, values))
    assert set(whole) == {"sr"} | {f"tokens_{k}" for k in range(len(whole) - 1)}
    for name, want in whole.items():
        if name == "sr":
            np.testing.assert_allclose(values[name], want, atol=1e-6)
        else:
            np.testing.assert_array_equal(values[name], want)


def test_unchecked_half_build_is_split_and_keeps_every_token(export: Path, tmp_path: Path) -> None:  # noqa: F811
    """Without a build-time check the only safe layout is the split: the token path stays f32."""
    import numpy as np

    from alignvar_edge.runtimes.artifacts import validation_tiles
    out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "split", check=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["files"] == {"engine": "model.xml", "image": "image.xml"}
    assert m["extra"]["split"]["token_precision"] == "f32" and "image.bin" in m["files"]
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    shown = format_inspection(inspect_artifact(out))
    assert "openvino engine, bf16" in shown and "split      token path f32" in shown
    assert "engine     model.xml + image.xml" in shown
    # the half image suffix computes its GroupNorms channels-last; the checks below cover its pixels
    assert m["extra"]["ir_rewrites"]["group_norm"] > 0 and m["extra"]["ir_rewrites"]["argmax"] > 0
    assert "rewrites   argmax as reductions (exact) x" in shown and "GroupNorm channels-last (off the token path) x" in shown
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)     # a CPU without bf16 units computes f32
        with runtimes.load(export, backend="onnxruntime") as ref, runtimes.load(out) as e, \
                runtimes.load(out, hint="throughput") as tp:
            x = validation_tiles(e.config, n=3)
            want_sr, want = ref.run(x)
            got_sr, got = e.run(x)
            for k in range(len(want)):
                np.testing.assert_array_equal(got[k], want[k])
            assert np.abs(got_sr - want_sr).max() < 0.05
            many = tp.infer_many([{"lr": x[i:i + 1]} for i in range(3)])
            for i, r in enumerate(many):
                np.testing.assert_array_equal(r["tokens_0"], got[0][i:i + 1])
            # AUTO picks the CPU here: it computes, and is expected to compute, what the CPU engine
            # does (bf16 image where the CPU has bf16 units, else f32), not the f32 hint meant for the
            # token part, nor a bf16 hint this CPU cannot honour
            with runtimes.load(out, device="AUTO") as auto:
                assert (auto.compute_precision, auto.expected_precision) == (e.compute_precision, e.expected_precision)
                np.testing.assert_array_equal(auto.run(x)[0], got_sr)


def _readme_snippet(engine: Path) -> dict[str, object]:
    """Run the Python block of an engine directory's README.md there, with OpenVINO alone."""
    import os
    import re
    text = (engine / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict[str, object] = {}
    cwd = os.getcwd()
    os.chdir(engine)
    try:
        exec(compile(code, str(engine / "README.md"), "exec"), scope)      # noqa: S102 (our own README)
    finally:
        os.chdir(cwd)
    return scope


def test_engine_readme_tells_plain_openvino_the_hint_each_file_was_checked_with(export: Path,  # noqa: F811
                                                                                 tmp_path: Path) -> None:
    """A user with OpenVINO alone compiles each IR file with the hint the README gives and gets the
    engine's tokens and image; the manifest records model.xml's hint (a split's token part: f32)."""
    import numpy as np
    for precision in ("fp32", "bf16"):
        out = runtimes.build(export, "openvino", precision, out=tmp_path / precision, check=False)
        m = json.loads((out / "manifest.json").read_text())
        assert "README.md" in m["files"] and m["extra"]["host_isa"].keys() >= {"AMX", "AVX512-BF16", "VNNI"}
        from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
        from alignvar_edge.cpuinfo import isa_features
        from alignvar_edge.runtimes.half import isa_phrase
        assert f"built and judged on a CPU with {isa_phrase(isa_features())}" in \
            format_inspection(inspect_artifact(out))
        text = (out / "README.md").read_text()
        if precision == "bf16":                      # unchecked: the split, its token part f32
            assert m["extra"]["inference_precision_hint"] == "f32"
            assert "| `model.xml` | `f32` |" in text and "| `image.xml` | `bf16` |" in text
        else:
            assert "| `model.xml` | `f32` |" in text and "image.xml" not in text
        values = _readme_snippet(out)["values"]
        assert isinstance(values, dict)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PrecisionWarning)     # a CPU without bf16 units computes f32
            with runtimes.load(out) as e:
                want = e.infer({"lr": values["lr"]})
        for name, v in want.items():
            if name == "sr":
                np.testing.assert_allclose(values[name], v, atol=1e-5)
            else:
                np.testing.assert_array_equal(values[name], v)
    # an engine for an NPU (absent here): its snippet compiles there, where no hint applies
    npu = (runtimes.build(export, "openvino", "fp16", out=tmp_path / "npu", device="NPU") / "README.md").read_text()
    assert "built for NPU" in npu and 'core.compile_model("model.xml", "NPU"),' in npu
    assert "The NPU computes in f16 whatever it is told" in npu


def test_build_from_a_quantized_artifact_names_it_and_the_export_to_build_from(  # noqa: F811
        export: Path, int8_ort: Path, tmp_path: Path) -> None:
    """NNCF quantizes in the build, so a Q/DQ artifact is refused in one line that names it, the
    fp32 export it was made from, and the command that builds from that export."""
    from alignvar_edge.errors import InputError
    for precision, flags in (("int8", f"--precision int8 --calib builtin --float-groups-from {int8_ort}"),
                             ("fp32", "--precision fp32")):
        with pytest.raises(InputError) as e:
            runtimes.build(int8_ort, "openvino", precision, out=tmp_path / precision)
        line = str(e.value)
        assert "\n" not in line and f"'{int8_ort}' is quantized (int8)" in line
        assert f"`alignvar-edge build {export} --target openvino {flags}`" in line
        assert not (tmp_path / precision).exists()


def test_a_device_that_ignores_the_hint_is_not_blamed_on_parity_false(  # noqa: F811
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moved to a CPU that does not compute the precision its image part was checked in (simulated:
    the manifest of a GPU fp16 build, whose image part was checked f16, now says CPU; a CPU without
    AVX512-FP16 / AMX-FP16 computes the f16 asked of it in f32, stood in for by what the engine
    measures, so that AMX-FP16 hosts test it too): with the hint set, the warning says so and what
    to run, instead of telling the user to set the hint they set."""
    from alignvar_edge.manifest import MANIFEST_FILE, content_hash
    from alignvar_edge.runtimes.openvino import backend as ovb
    monkeypatch.setattr(ovb.OpenVINOEngine, "_effective_precision", lambda self, core: "f32 image, f32 tokens")
    out = runtimes.build(export, "openvino", "fp16", out=tmp_path / "gpu", device="GPU")
    doc = json.loads((out / MANIFEST_FILE).read_text())
    assert doc["extra"]["split"]["image_precision"] == "f16"
    doc["extra"]["device"] = "CPU"
    doc["content_sha256"] = content_hash(doc)
    (out / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.warns(PrecisionWarning) as w:
        runtimes.load(out, device="CPU").close()
    (line,) = [str(x.message) for x in w if issubclass(x.category, PrecisionWarning)]
    assert "checked for f16 image, f32 tokens" in line and "(its default)" not in line
    assert "parity=True" not in line and "selftest --engine" in line
    with pytest.warns(PrecisionWarning, match=r"\(its default\).*open it with parity=True"):
        runtimes.load(out, device="CPU", parity=False).close()


def test_float_groups_off_int8_are_refused_in_the_callers_words(export: Path, tmp_path: Path) -> None:  # noqa: F811
    from alignvar_edge.errors import InputError
    with pytest.raises(InputError, match=r"^float groups apply to precision='int8' only \(the other precisions"):
        runtimes.build(export, "openvino", "fp32", out=tmp_path / "never", float_groups=frozenset({"logits_head"}))
    assert not (tmp_path / "never").exists()


def test_half_precision_for_a_device_that_does_not_compute_it_is_refused(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """bf16 is the CPU's half: for a GPU it wrote an f32 engine labelled bf16; for AUTO a half
    engine judged on no device (AUTO may pick a CPU or a GPU). The fix in the caller's words."""
    from alignvar_edge import cli
    from alignvar_edge.errors import InputError
    for precision, device, fix, flags in (
            ("bf16", "GPU", "precision='bf16' and device='CPU', or precision='fp16' and device='GPU'",
             "--precision bf16 --device CPU, or --precision fp16 --device GPU"),
            ("bf16", "AUTO", "precision='bf16' and device='CPU' (AUTO then runs it)",
             "--precision bf16 --device CPU (AUTO then runs it)"),
            ("fp16", "AUTO", "precision='fp16' and device='GPU' or 'NPU' (AUTO then runs it)",
             "--precision fp16 --device GPU or NPU (AUTO then runs it)")):
        out = tmp_path / f"{precision}-{device}"
        with pytest.raises(InputError, match=f"OpenVINO computes {precision} on .*, not {device}: build {re.escape(fix)}$"):
            runtimes.build(export, "openvino", precision, out=out, device=device)
        capsys.readouterr()
        assert cli.main(["build", str(export), "--target", "openvino", "--precision", precision, "--device", device,
                         "--out", str(out)]) != 0
        assert re.search(f"OpenVINO computes {precision} on .*, not {device}: build {re.escape(flags)}$",
                         capsys.readouterr().err.strip())
        assert not out.exists()


def test_a_half_whole_graph_computes_half_only_on_the_kind_of_device_it_was_judged_on(  # noqa: F811
        export: Path, tmp_path: Path) -> None:
    """An engine built before the refusal above (simulated: an fp32 engine's manifest says bf16 for
    AUTO, as such a build wrote) is one graph judged in no half: AUTO's CPU computes it f32."""
    from alignvar_edge.manifest import MANIFEST_FILE, content_hash
    out = runtimes.build(export, "openvino", "fp32", out=tmp_path / "auto", device="AUTO", check=False)
    doc = json.loads((out / MANIFEST_FILE).read_text())
    doc["precision"], doc["extra"]["device"] = "bf16", "AUTO"
    doc["content_sha256"] = content_hash(doc)
    (out / MANIFEST_FILE).write_text(json.dumps(doc))
    with runtimes.load(out, device="AUTO") as e:
        assert e.compute_precision == e.expected_precision == "f32"


def test_half_build_that_misses_every_rung_writes_nothing(export: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "never"
    with pytest.raises(HalfPrecisionError, match=r"with the token path in f32; nothing was written"):
        runtimes.build(export, "openvino", "bf16", out=out, min_token_agreement=1.01)
    assert not out.exists()


def test_split_of_a_graph_past_protobufs_limit_is_one_line(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.runtimes.openvino import split
    monkeypatch.setattr(split, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(ArtifactError, match=r"model.onnx: a graph of .* 2 GiB limit.*build --precision fp32$"):
        split.split_at_tokens(export / "model.onnx")


def test_a_device_that_computes_f32_under_the_hint_gets_the_split(export: Path, tmp_path: Path,  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the plugin ignores the bf16 hint (no bf16 units), the whole graph passes its check in f32
    and would lose tokens on a CPU that computes bf16: the build must not ship it."""
    from alignvar_edge.runtimes.openvino import backend as ovb
    real = ovb.OpenVINOEngine.runtime_precision

    def as_on_avx2(self, group_of=None):  # type: ignore[no-untyped-def]
        return {g: {"f32": sum(c.values())} for g, c in real(self, group_of).items()}

    monkeypatch.setattr(ovb.OpenVINOEngine, "runtime_precision", as_on_avx2)
    monkeypatch.setattr(ovb, "_int8_image_precision", lambda device: "f32")    # no bf16 islands either
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        out = runtimes.build(export, "openvino", "bf16", out=tmp_path / "bf16")
    m = json.loads((out / "manifest.json").read_text())
    whole, split = m["extra"]["half_ladder"]
    assert "ran f32 here, not bf16" in whole["refused"] and "refused" not in split
    assert m["extra"]["split"]["token_precision"] == "f32"


def test_a_half_build_on_a_device_that_computes_f32_says_so_once_naming_the_engine(
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """On a CPU without bf16 units the build's own check computes f32. Its load warning named the
    staging folder, gone when the build ends, and said "rebuild it here" to someone building here;
    the build now says once, naming the engine, that it checked f32. Opened where it computes f32
    the engine says it runs as checked; opened where it computes bf16, that bf16 was never checked."""
    from alignvar_edge import cli
    from alignvar_edge.runtimes.openvino import backend as ovb
    real = ovb.OpenVINOEngine.runtime_precision

    def as_on_avx2(self, group_of=None):  # type: ignore[no-untyped-def]
        return {g: {"f32": sum(c.values())} for g, c in real(self, group_of).items()}

    monkeypatch.setattr(ovb.OpenVINOEngine, "runtime_precision", as_on_avx2)
    monkeypatch.setattr(ovb, "_int8_image_precision", lambda device: "f32")
    monkeypatch.setattr(ovb.OpenVINOEngine, "_effective_precision", lambda self, core: "f32 image, f32 tokens")
    out = tmp_path / "bf16"
    # the CLI prints warnings as "warning:" lines on stderr: what the user sees is what is checked
    assert cli.main(["build", str(export), "--target", "openvino", "--precision", "bf16", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ".tmp-" not in err and "built and checked for" not in err, err
    notes = [ln for ln in err.splitlines() if "computed f32 here under the bf16 hint" in ln]
    assert len(notes) == 1 and f"`alignvar-edge selftest --engine {out}`" in notes[0], err
    with pytest.warns(PrecisionWarning) as w:
        runtimes.load(out).close()
    (line,) = [str(x.message) for x in w if issubclass(x.category, PrecisionWarning)]
    assert line.startswith(f"{out}: OpenVINO CPU computes in f32 image, f32 tokens, not the bf16 image, f32 tokens")
    assert "as it did where it was built: it runs as checked" in line and "checked for" not in line
    # no rebuild here would change what this CPU computes; the selftest to run names this engine
    assert "rebuild" not in line and " DIR`" not in line and f"`alignvar-edge selftest --engine {out}`" in line
    # inspect's split line and selftest's report say what ran, not only what the engine asks for
    assert cli.main(["inspect", str(out)]) == 0
    (split,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("split ")]
    assert "image suffix bf16 asked (f32 computed where built)" in split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        assert cli.main(["selftest", "--engine", str(out), "--runs", "1"]) == 0
    assert "precision bf16 (ran f32 image, f32 tokens)" in capsys.readouterr().out
    # moved to a CPU that computes bf16: the label holds there, but its bf16 arithmetic was never checked
    monkeypatch.setattr(ovb.OpenVINOEngine, "_effective_precision", lambda self, core: self.expected_precision)
    with pytest.warns(PrecisionWarning) as w:
        runtimes.load(out).close()
    (line,) = [str(x.message) for x in w if issubclass(x.category, PrecisionWarning)]
    assert "computes bf16 image, f32 tokens, which the build never checked" in line
    assert f"`alignvar-edge selftest --engine {out}`" in line


def test_only_a_half_engine_without_any_half_op_measured_is_called_checked_in_f32() -> None:
    from types import SimpleNamespace

    from alignvar_edge.runtimes.openvino.backend import half_checked_in_f32

    def m(precision, measured, device="CPU"):  # type: ignore[no-untyped-def]
        return SimpleNamespace(precision=precision, extra={"compute_precision": measured, "device": device})

    assert half_checked_in_f32(m("bf16", {"decoder_convs": {"f32": 3}, "attention": {"f32 (bf16 weights)": 2}}))
    assert half_checked_in_f32(m("fp16", {"decoder_convs": {"f32": 3}}, "GPU.0"))
    assert not half_checked_in_f32(m("bf16", {"decoder_convs": {"bf16": 3}, "attention": {"f32": 2}}))
    assert not half_checked_in_f32(m("fp16", {"decoder_convs": {"f16": 1}}, "GPU.0"))
    assert not half_checked_in_f32(m("fp16", {"decoder_convs": {"f32": 3}}))   # CPU fp16 computes f32 by design
    assert not half_checked_in_f32(m("fp32", {"decoder_convs": {"f32": 3}}))
    assert not half_checked_in_f32(m("bf16", None))      # nothing measured (built unchecked): no claim


def test_weights_stored_in_f16_compute_f32_under_the_f32_hint(tmp_path: Path) -> None:
    """An FP16 IR's FullyConnected reports runtimePrecision f16 under the f32 hint, but its kernel
    widens the stored weights and computes f32: its product is the f32 product of the f16-rounded
    weights, to f32 rounding. The engine's record names both, never f16 compute."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from alignvar_edge.runtimes.openvino.backend import op_precision
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 512)).astype(np.float32)
    x = ops.parameter([16, 512], np.float32)
    ov.save_model(ov.Model([ops.matmul(x, ops.constant(w), False, True)], [x]), str(tmp_path / "m.xml"),
                  compress_to_fp16=True)
    compiled = ov.Core().compile_model(str(tmp_path / "m.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"})
    (fc,) = [op for op in compiled.get_runtime_model().get_ordered_ops()
             if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"]
    assert fc.get_rt_info()["runtimePrecision"].astype(str) == "f16"       # the stored weights'
    assert op_precision(fc) == "f32 (f16 weights)"
    inp = rng.standard_normal((16, 512)).astype(np.float32)
    got = compiled({0: inp})[0].astype(np.float64)
    want = inp.astype(np.float64) @ w.astype(np.float16).astype(np.float64).T
    in_f16 = (inp.astype(np.float16) @ w.astype(np.float16).T).astype(np.float64)   # f16 arithmetic
    scale = np.abs(want).max()
    assert np.abs(got - want).max() / scale < 1e-6 < np.abs(in_f16 - want).max() / scale


def test_fp16_engine_on_a_cpu_records_f32_compute_with_f16_weights(export: Path, tmp_path: Path) -> None:  # noqa: F811
    # the CPU has no f16 hint of ours: the FP16 IR runs f32 on its f16-rounded weights, and the
    # manifest and inspect say that, not f16 (OpenVINO's runtimePrecision names the stored weights)
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    out = runtimes.build(export, "openvino", "fp16", out=tmp_path / "fp16")
    m = json.loads((out / "manifest.json").read_text())
    assert m["extra"]["compress_to_fp16"] and m["extra"]["inference_precision_hint"] == "f32"
    cp = m["extra"]["compute_precision"]
    assert set(cp["transformer_matmuls"]) == set(cp["logits_head"]) == {"f32 (f16 weights)"}
    assert {p for counts in cp.values() for p in counts} == {"f32", "f32 (f16 weights)"}
    shown = next(ln for ln in format_inspection(inspect_artifact(out)).splitlines() if ln.startswith("compute "))
    assert "logits_head f32 (f16 weights) " in shown and " f16 " not in shown
    with runtimes.load(out) as e:
        assert e.compute_precision == e.expected_precision == "f32"


def test_whole_graph_judge_reads_compute_not_stored_weights() -> None:
    # a device that widened f16 weights and computed f32 under the f16 hint did not judge the whole
    # graph in f16: the rung is refused, naming what it computed
    from types import SimpleNamespace as Manifest      # the two fields the judge reads

    from alignvar_edge.runtimes.openvino.backend import _half_problem
    parity = {"tokens": {"overall": 1.0}, "psnr_db": 90.0}
    widened = Manifest(parity=parity, extra={"compute_precision": {"transformer_matmuls": {"f32 (f16 weights)": 3},
                                                                   "norms": {"f32": 2}}})
    assert _half_problem(widened, 0.99, 35.0, "f16") == "ran f32 here, not f16, so the whole graph could not be judged"
    half = Manifest(parity=parity, extra={"compute_precision": {"transformer_matmuls": {"f16": 3}, "norms": {"f32": 2}}})
    assert _half_problem(half, 0.99, 35.0, "f16") is None


def test_auto_reports_f32_where_the_device_it_picked_has_no_units_for_the_half_hint() -> None:
    """AUTO does not say what it computes: the device it ran on takes the hint it was given only
    where OpenVINO lists that precision among the device's capabilities (a CPU without AVX512-BF16
    or AMX runs a bf16 hint in f32)."""
    from alignvar_edge.runtimes.openvino.backend import _compiled_precision

    class Auto:                         # what AUTO's compiled model answers
        def get_property(self, name: str) -> object:
            if name == "EXECUTION_DEVICES":
                return ["CPU"]
            raise RuntimeError(f"AUTO has no {name}")

    class Core:
        def __init__(self, capabilities: list[str]) -> None:
            self.capabilities = capabilities

        def get_property(self, device: str, name: str) -> object:
            assert device == "CPU"
            return self.capabilities if name == "OPTIMIZATION_CAPABILITIES" else "<Type: 'float32'>"

    config = {"DEVICE_PROPERTIES": {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}}
    assert _compiled_precision(Auto(), config, Core(["FP32", "INT8"])) == "f32"
    assert _compiled_precision(Auto(), config, Core(["FP32", "BF16", "INT8"])) == "bf16"
    assert _compiled_precision(Auto(), {}, Core(["FP32", "BF16"])) == "f32"      # no hint: the device's default


def test_a_plain_build_says_each_rung_it_checks_and_that_it_fell_back_to_fp32(  # noqa: F811
        export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain `build --target openvino` on a bf16 CPU checks rungs that take minutes on a large model:
    each is named with its tile count before it runs, the island rung with its cost from the checks
    before it and how to skip it; when every half rung misses, the fallback line says that fp32 is
    being built and no longer tells the user to build it."""
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.openvino import backend as ovb
    _as_on_a_bf16_cpu(monkeypatch)
    monkeypatch.setattr(ovb, "_half_problem", lambda *a: "is refused by the test")
    assert main(["build", str(export), "--target", "openvino", "--out", str(tmp_path / "auto")]) == 0
    err = capsys.readouterr().err
    assert f"openvino bf16: checking rung 'whole graph' on {ovb.GATE_TILES} held-out tiles\n" in err
    assert re.search(rf"checking rung 'image suffix, MLP matmuls bf16 [^']*' on {ovb.ISLAND_GATE_TILES} held-out "
                     r"tiles, about \d+ (s|min) here \(--no-token-bf16 skips it\)", err), err
    assert "openvino bf16 missed the target (OpenVINO CPU is refused by the test); nothing of it was kept: " \
           "building fp32 instead" in err and "Build --precision fp32" not in err
    assert json.loads((tmp_path / "auto" / "manifest.json").read_text())["precision"] == "fp32"
