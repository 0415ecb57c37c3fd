"""The recipe table is the one owner of what a (backend, precision) pair is built from and who
quantizes it: build, quantize, deploy and selftest follow it."""
from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from _runtime_fixtures import add_backend, cache_root, export_dir, sharp_model
from alignvar_edge import recipes
from alignvar_edge.cli import build_parser, main
from alignvar_edge.errors import InputError
from alignvar_edge.runtimes import get_backend
from alignvar_edge.runtimes.golden import make_golden

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def micro_export(pytestconfig):
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


def _choices(verb: str, dest: str) -> tuple[str, ...]:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return tuple(next(a for a in sub.choices[verb]._actions if a.dest == dest).choices)


def test_every_backend_has_rows_and_a_default_it_can_build():
    for b in recipes.BACKENDS:
        assert recipes.precisions(b), b
        assert recipes.recipe(b).precision == get_backend(b).default_precision
    assert recipes.default_precision("coreml") == "fp16" and recipes.default_precision("ov") == "fp32"


def test_cli_choices_are_the_tables():
    assert _choices("quantize", "precision") == ("fp16", "int8")
    assert set(_choices("quantize", "target")) == {"onnxruntime", "openvino", "tensorrt", "coreml"}
    assert _choices("build", "target") == recipes.BACKENDS


@pytest.mark.parametrize("backend,precision,needs_quantize", [
    ("onnxruntime", "int8", True), ("onnxruntime", "fp16", True), ("tensorrt", "int8", True),
    ("tensorrt", "fp16", False), ("openvino", "int8", False), ("coreml", "int8-weights", False)])
def test_who_quantizes(backend, precision, needs_quantize):
    assert recipes.recipe(backend, precision).needs_quantize is needs_quantize


def test_an_unknown_pair_is_one_line_naming_what_the_backend_takes():
    with pytest.raises(InputError, match=r"^tensorrt has no precision='bf16'; choose one of fp32, fp16, int8$"):
        recipes.recipe("trt", "bf16")
    with pytest.raises(InputError, match="unknown backend 'tflite'"):
        recipes.recipe("tflite")


def test_deploy_plan_reads_the_table():
    from alignvar_edge.deploy import plan
    steps = {(s.target, s.precision): s for s in plan(["coreml", "tensorrt"], ("fp32", "int8"), quick=True)}
    # Core ML: the fp16 package answers fp32, int8 is weight-only; TensorRT int8 needs a Q/DQ pass
    assert [k for k in steps] == [("coreml", "fp16"), ("coreml", "int8"), ("tensorrt", "fp32"), ("tensorrt", "int8")]
    assert steps[("coreml", "int8")].built_precision == "int8-weights"
    assert "--target tensorrt" in (steps[("tensorrt", "int8")].skip or "")


def test_building_int8_from_the_fp32_export_names_the_quantize_command(micro_export, tmp_path, capsys):
    assert main(["build", str(micro_export), "--target", "onnxruntime", "--precision", "int8",
                 "--out", str(tmp_path / "e")]) != 0
    err = capsys.readouterr().err
    assert f"alignvar-edge quantize {micro_export} --precision int8 --target onnxruntime" in err
    assert not (tmp_path / "e").exists()


def test_selftest_int8_on_onnxruntime_quantizes_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALIGNVAR_EDGE_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "micro"
    sharp_model("micro").save_pretrained(str(ckpt))
    make_golden(ckpt, n=2)
    out = tmp_path / "r.json"
    rc = main(["selftest", "--backend", "onnxruntime", "--precision", "int8", "--model", str(ckpt),
               "--runs", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["precision"] == "int8" and r["thresholds"]["token_agreement"] == 0.99
    assert r["result"] == "PASS" and rc == 0, r.get("tokens")
    assert "quantizing the export for onnxruntime int8" in capsys.readouterr().err


@pytest.mark.parametrize("args,line", [
    (["--target", "onnxruntime", "--kit"], "--kit applies to --target tensorrt only"),
    (["--target", "tensorrt", "--batch", "4"], "--batch applies to --target coreml only"),
    (["--target", "openvino", "--precision", "fp32", "--float-groups-from", "x"],
     "--float-groups-from applies to --target openvino --precision int8 only"),
    (["--target", "tensorrt", "--precision", "int8", "--half-policy-from", "x"],
     "--half-policy-from applies to --target tensorrt --precision fp16, --target coreml --precision fp16 only")])
def test_a_build_flag_the_pair_does_not_take_is_one_line(args, line, micro_export, tmp_path, capsys):
    assert main(["build", str(micro_export), *args, "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"alignvar-edge build: error: {line}" and not (tmp_path / "e").exists()


def test_the_architecture_doc_shows_the_table_the_code_holds():
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    shown = doc.split("<!-- recipe-table -->\n", 1)[1].split("<!-- /recipe-table -->", 1)[0]
    assert shown == recipes.table_markdown()


def test_an_unknown_engine_option_is_refused_in_one_place_naming_the_known(micro_export):
    from alignvar_edge import runtimes
    with pytest.raises(InputError, match=r"unknown onnxruntime engine options \['batch'\]; known: "
                                         r"inter_threads, optimization, spin, threads"):
        runtimes.load(micro_export, backend="onnxruntime", batch=4)
    for b in recipes.BACKENDS:
        assert isinstance(get_backend(b).load_options, frozenset)


def test_a_gate_says_what_it_misses_and_in_which_words():
    fp32, int8 = recipes.recipe("openvino", "fp32"), recipes.recipe("onnxruntime", "int8")
    assert fp32.gate_words == "100% tokens and 50 dB" and int8.gate_words == "99% tokens and 30 dB"
    assert int8.misses(0.99, 30.0) == [] and int8.misses(0.995, None) == []      # None: PSNR not measured
    assert fp32.misses(0.9912, 49.5) == ["tokens 99.12% < 100%", "SR PSNR 49.50 dB < 50 dB"]
    assert int8.misses(0.9712, 31.0) == ["tokens 97.12% < 99%"]


def test_the_lower_precision_token_target_has_one_default():
    # quantize's search, bench's "best engine" and the build gate of every lower precision start from
    # the same share of tokens; fp32 alone asks all of them
    from alignvar_edge.bench.runner import BenchOptions
    from alignvar_edge.quantize.sensitivity import FidelityTarget
    assert FidelityTarget().min_token_agreement == BenchOptions().min_token_agreement == 0.99
    assert {r.tokens for r in recipes.RECIPES.values() if r.precision != "fp32"} == {0.99}
    assert build_parser().parse_args(["bench", "ENGINE"]).min_token_agreement == 0.99


def test_deploy_takes_what_the_rows_serve_but_bf16(monkeypatch):
    from alignvar_edge.deploy import DeployOptions
    served = {p for r in recipes.RECIPES.values() for p in r.serves}
    assert "bf16" in served and recipes.deploy_precisions() == ("fp32", "fp16", "int8")
    with pytest.raises(InputError, match=r"unknown precision\(s\) bf16; choose from fp32, fp16, int8$"):
        DeployOptions(out="x", precisions=("bf16",)).validate()
    args = build_parser().parse_args(["deploy", "--out", "x"])
    assert DeployOptions.from_args(args).requested == DeployOptions(out="x").requested == ("fp32", "int8")
    # a request some row starts to serve is one deploy takes and its help names, with no second list
    extra = recipes._row("onnxruntime", "fp8", recipes.EXPORT, recipes.QUANTIZE)
    monkeypatch.setattr(recipes, "_TABLE", (*recipes._TABLE, extra))
    assert recipes.deploy_precisions() == ("fp32", "fp16", "int8", "fp8")
    deploy_help = next(a for a in build_parser()._actions if a.dest == "verb").choices["deploy"].format_help()
    assert "comma list of fp32,fp16,int8,fp8 (default: fp32,int8)" in " ".join(deploy_help.split())


def test_an_int8_row_of_our_onnx_pass_cannot_leave_out_its_qdq_kind():
    with pytest.raises(ValueError, match=r"the xnnpack int8 row is quantized by `alignvar-edge quantize`: give it "
                                         r"qdq= one of asymmetric, symmetric$"):
        recipes._row("xnnpack", "int8", recipes.EXPORT, recipes.QUANTIZE)
    with pytest.raises(ValueError, match="takes no qdq="):
        recipes._row("xnnpack", "int8", recipes.EXPORT, recipes.BACKEND, qdq="asymmetric")


def test_a_new_qdq_target_is_quantized_planned_and_offered_as_its_row_says(monkeypatch):
    """quantize --target offered a target whose int8 row our pass makes, and quantize/int8.py refused it
    by name once calibration had started; deploy --quick skipped it with that failing command."""
    from alignvar_edge.deploy import plan
    from alignvar_edge.quantize.artifact import QuantizeOptions
    from alignvar_edge.quantize.int8 import target_recipe
    add_backend(monkeypatch, "xnnpack", (recipes._row("xnnpack", "fp32", recipes.EXPORT),
                                         recipes._row("xnnpack", "int8", recipes.EXPORT, recipes.QUANTIZE,
                                                      qdq="asymmetric")))
    QuantizeOptions(precision="int8", target="xnnpack").validate()
    r = target_recipe("xnnpack", vnni=True)
    assert r.target == "xnnpack" and r.to_dict() == {**target_recipe("onnxruntime", vnni=True).to_dict(),
                                                     "target": "xnnpack"}
    steps = {s.name: s for s in plan(["xnnpack", "tensorrt"], ("int8",), quick=True)}
    assert steps["xnnpack-int8"].status == "planned", steps["xnnpack-int8"].detail
    assert steps["tensorrt-int8"].status == "skipped"       # judged as fake-quant only: not in a first look
    target = next(a for a in next(a for a in build_parser()._actions if a.dest == "verb").choices["quantize"]._actions
                  if a.dest == "target")
    assert "xnnpack" in target.choices and "xnnpack: uint8 activations" in target.help


def test_int8_for_a_target_without_a_qdq_kind_is_refused_before_calibrating(monkeypatch):
    from alignvar_edge.errors import ConfigError
    from alignvar_edge.quantize.artifact import QuantizeOptions
    add_backend(monkeypatch, "xnnpack", (recipes._row("xnnpack", "fp32", recipes.EXPORT),
                                         recipes._row("xnnpack", "fp16", recipes.EXPORT, recipes.QUANTIZE)))
    QuantizeOptions(precision="fp16", target="xnnpack").validate()
    with pytest.raises(ConfigError, match=r"^ONNX Q/DQ int8 is built for 'onnxruntime' or 'tensorrt', not 'xnnpack' "
                                          r"\(openvino and coreml quantize through their own backends\)$"):
        QuantizeOptions(precision="int8", target="xnnpack").validate()


def test_a_build_whose_tool_is_missing_is_refused_before_any_work_from_python_and_from_quantize(
        micro_export, tmp_path, monkeypatch, capsys):
    """OpenVINO int8 without NNCF: a Python build raised a bare ModuleNotFoundError once its work had
    begun (only the CLI's error handler read the recipe's tool), and `quantize --target openvino` made
    its calibration set before failing. Both say the recipe's one line first, as an absent backend."""
    pytest.importorskip("openvino")
    from alignvar_edge import build
    from alignvar_edge.errors import BackendUnavailableError
    from alignvar_edge.quantize import QuantizeOptions, calibration_for
    cs = calibration_for(micro_export, QuantizeOptions(target="openvino", tiles=8))
    monkeypatch.setitem(sys.modules, "nncf", None)          # an install without NNCF
    missing = recipes.TOOLS["nncf"].missing()
    with pytest.raises(BackendUnavailableError) as e:
        build(micro_export, "openvino", "int8", calibration=cs, out=tmp_path / "ov8")
    assert str(e.value) == missing and not (tmp_path / "ov8").exists()
    capsys.readouterr()
    assert main(["quantize", str(micro_export), "--target", "openvino", "--precision", "int8",
                 "--out", str(tmp_path / "q")]) == BackendUnavailableError.exit_code
    err = capsys.readouterr().err
    assert err.splitlines() == [f"alignvar-edge quantize: error: {missing}"] and not (tmp_path / "q").exists()


def test_the_qdq_kind_of_a_runtime_decides_its_int8_refusal_and_readme_note(monkeypatch, tmp_path):
    """An int8 graph's "zero points are not 0" refusal was TensorRT's by name, and the README's CPU note
    (VNNI, reduce_range) ONNX Runtime's by name: a new target of either Q/DQ kind got neither."""
    from alignvar_edge.runtimes.artifacts import check_quantized_for
    from alignvar_edge.runtimes.onnxruntime import _int8_note
    add_backend(monkeypatch, "qnn", (recipes._row("qnn", "fp32", recipes.EXPORT),
                                     recipes._row("qnn", "int8", recipes.EXPORT, recipes.QUANTIZE, qdq="symmetric")))
    add_backend(monkeypatch, "xnnpack", (recipes._row("xnnpack", "fp32", recipes.EXPORT),
                                         recipes._row("xnnpack", "int8", recipes.EXPORT, recipes.QUANTIZE,
                                                      qdq="asymmetric")))

    def graph(target: str) -> SimpleNamespace:          # a manifest's fields these two read
        recipe = {"target": target, "symmetric_activations": False, "reduce_range": False, "vnni": True}
        return SimpleNamespace(precision="int8", extra={}, quantization={
            "format": "onnx-qdq", "target_runtime": target, "recipe": recipe, "judged_on": "onnxruntime CPU"})
    with pytest.raises(InputError, match=r"was quantized for xnnpack \(its activation zero points are not 0, and qnn "
                                         r"takes symmetric int8 only\): run `.*target='qnn'"):
        check_quantized_for(graph("xnnpack"), tmp_path, "qnn")      # type: ignore[arg-type]
    note = " ".join(_int8_note(graph("xnnpack")))                   # type: ignore[arg-type]
    assert "`alignvar-edge quantize EXPORT --precision int8 --target xnnpack --reduce-range`" in note, note
    assert _int8_note(graph("qnn")) == []                           # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_which_graph_each_onnx_row_builds_from_is_one_rule_for_both_backends(backend):
    """ONNX Runtime and TensorRT each wrote their own refusal of an int8 build from the fp32 export,
    in other words and order: TensorRT told an fp16 graph built as int8 to quantize it, which quantize
    refuses, where ONNX Runtime said the graph's precision. One rule now: the graph's own precision
    first, then quantize's output for the rows that build from it."""
    step = "STEP"
    for r in (recipes.recipe(backend, p) for p in recipes.precisions(backend)):
        r.check_graph(r.precision, step)                        # the graph it builds from
        if not r.needs_quantize:
            r.check_graph("fp32", step)                         # flags on the fp32 export
            continue
        with pytest.raises(InputError) as e:
            r.check_graph("fp32", step)
        said = str(e.value)
        assert said.startswith(f"{backend} {r.precision} engines build from quantize's output (") and said.endswith(
            "not the fp32 export: build from the output of `STEP`"), said
        assert ("explicit Q/DQ" in said) == (r.precision == "int8"), said
    for graph, asked in (("fp16", "int8"), ("int8", "fp16"), ("int8", "fp32")):
        with pytest.raises(InputError, match=f"this export is {graph} .*build it with --precision {graph}"):
            recipes.recipe(backend, asked).check_graph(graph, step)
