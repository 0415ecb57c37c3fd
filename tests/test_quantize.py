"""INT8 / FP16 quantization of a real exported graph (micro preset), end to end.

The model is a `lively` random micro model: default random weights give the same token at every
position whatever the input (nothing for quantization to break), so the weights are re-drawn at
PyTorch's default scale and every AdaLN gate is opened. Its logit margins are small, which makes
it *more* fragile than a trained model: plain int8 flips ~6% of its tokens, so the fidelity search
has real work to do. The export is cached on disk (the dynamo exporter takes ~45 s).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from _runtime_fixtures import cache_root, cached_export
from torch import nn

from alignvar_edge.caller import command_line
from alignvar_edge.cpuinfo import has_vnni
from alignvar_edge.errors import ConfigError, InputError, OutputExistsError
from alignvar_edge.manifest import load_verified
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.quantize.artifact import QuantizeOptions, calibration_set, quantize_artifact
from alignvar_edge.quantize.int8 import check_opset, target_recipe
from alignvar_edge.quantize.policy import classify
from alignvar_edge.quantize.sensitivity import FidelityTarget

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(tiles=8, val_tiles=8)


def lively_model(seed: int = 0) -> AlignVAR:
    torch.manual_seed(seed)
    m = AlignVAR(AlignVARConfig.from_preset("micro")).eval()
    W = m.config.width
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.reset_parameters()
        m.head.bias.zero_()
        for blk in m.blocks:                      # gates gamma1 = gamma2 = 1, small modulation
            lin = blk.ada_lin[-1]
            lin.weight.mul_(0.01)
            lin.bias.zero_()
            lin.bias[:2 * W] = 1.0
        m.head_nm.ada_lin[-1].weight.mul_(0.01)
        m.head_nm.ada_lin[-1].bias.zero_()
    return m


@pytest.fixture(scope="module")
def export(pytestconfig: pytest.Config) -> Path:
    model = lively_model()
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.numpy().tobytes())
    for p in [*sorted((ROOT / "alignvar_edge/model").glob("*.py")),
              ROOT / "alignvar_edge/export/onnx_export.py", ROOT / "alignvar_edge/export/graphs.py"]:
        h.update(p.read_bytes())
    h.update(torch.__version__.encode())
    return cached_export(cache_root(pytestconfig, "alignvar-quantize"), f"lively-micro-{h.hexdigest()[:16]}",
                         lambda: model)


@pytest.fixture(scope="module")
def int8_ort(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q") / "int8"
    return quantize_artifact(export, out, QuantizeOptions(sensitivity_tiles=4, **FAST))


def _q_nodes(model: onnx.ModelProto) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]]:
    g = model.graph
    return ([n for n in g.node if n.op_type == "QuantizeLinear"], [n for n in g.node if n.op_type == "DequantizeLinear"])


def test_search_reaches_the_target_with_few_groups_in_float(int8_ort: Path, export: Path) -> None:
    m = load_verified(int8_ort)
    q, par = m.quantization, m.parity
    search = q["search"]
    # the plain policy graph misses 99% tokens on this fragile model; the search fixes it
    assert par["initial_validation"]["token_agreement"] < 0.99
    assert par["target_met"] and par["validation"]["token_agreement"] >= 0.99
    assert par["validation"]["psnr_drop"] <= 0.1 + 1e-3
    kept = [s["group"] for s in q["float_by_search"]]
    assert 0 < len(kept) < len(search["sensitivity"]) // 2        # far from "everything float"
    # the decoder cannot flip tokens: it stays int8 and ranks below every transformer group
    assert not any(g.startswith("vae.decoder") for g in kept)
    ranks = search["sensitivity"]
    assert min(r["rank"] for g, r in ranks.items() if g.startswith("vae.decoder")) > \
        max(r["rank"] for g, r in ranks.items() if g.startswith("blocks."))
    # every group returned to float says why (its score and its own token agreement)
    assert all({"score", "token_agreement", "rank", "why"} <= set(s) for s in q["float_by_search"])
    assert q["int8_nodes"] > 0 and m.precision == "int8"


def test_int8_artifact_passes_export_checks_and_records_recipe(int8_ort: Path, export: Path) -> None:
    from alignvar_edge.export.onnx_export import check_graph
    from alignvar_edge.onnx_session import open_session

    m = load_verified(int8_ort)
    path = int8_ort / "model.onnx"
    check_graph(path)                                      # onnx.checker full + forbidden constructs
    sess = open_session(path)
    assert [o.name for o in sess.get_outputs()][0] == "sr"
    src = load_verified(export)
    cs = calibration_set("builtin", src.config, 8, 8, 0)
    assert m.calibration["hash"] == cs.hash             # the set can be rebuilt from the manifest
    r = m.quantization["recipe"]
    assert r["method"] == "minmax" and r["per_channel"] and r["weight_type"] == "int8"
    assert r["percentile"] is None                      # minmax reads none: no 99.99 recorded as if it did
    assert target_recipe("onnxruntime", "percentile", 99.9).to_dict()["percentile"] == 99.9
    assert r["reduce_range"] == (has_vnni() is False)
    assert m.extra["bytes"]["int8"] < m.extra["bytes"]["fp32"]
    assert m.graphs["model"]["inputs"][0] == {"name": "lr", "shape": [1, 3, 8, 8], "dtype": "float32"}


def test_build_of_an_int8_export_without_its_precision_says_which_precision_in_one_line(
        int8_ort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `build INT8 --target onnxruntime` (default fp32) told the user to run `quantize --precision
    # fp32`, which quantize refuses: the fix is --precision int8, or building from the fp32 export
    from alignvar_edge import cli
    rc = cli.main(["build", str(int8_ort), "--target", "onnxruntime", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "this export is int8" in err and "--precision int8" in err and "fp32 export" in err, err
    assert "quantize" not in err and not (tmp_path / "e").exists()


def test_an_engine_of_an_int8_artifact_that_missed_its_target_says_so_against_fp32(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine's own parity compares it with the int8 graph it copies (100%): `build` warns that
    the quantize step missed its target vs fp32 and names --no-search, and the engine's manifest and
    `inspect` carry that step's figures."""
    from alignvar_edge.cli import main

    src = quantize_artifact(export, tmp_path / "q", QuantizeOptions(search=False, **FAST))
    val = load_verified(src).parity
    assert val is not None and val["target_met"] is False      # the lively micro model's plain int8 misses 99%
    eng = tmp_path / "e"
    assert main(["build", str(src), "--target", "onnxruntime", "--precision", "int8", "--out", str(eng)]) == 0
    err = capsys.readouterr().err
    tokens = f"tokens {val['validation']['token_agreement']:.2%}"
    warning = next(line for line in err.splitlines() if "warning:" in line)
    assert "missed the quantize step's fidelity target" in warning and tokens in warning, warning
    assert "--no-search" in warning
    m = load_verified(eng)
    assert m.parity["quantize"] == val and m.parity["target_met"] is False
    assert main(["inspect", str(eng)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("quantize "))
    assert tokens in line and "target: tokens >= 99%, PSNR-Y drop <= 0.1 dB: NOT met" in line and "fp32 engine" in line, line


@pytest.fixture(scope="module")
def int8_trt_missed(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tensorrt-target int8 artifact of the policy alone (--no-search), which misses its target."""
    out = tmp_path_factory.mktemp("qt") / "int8-trt"
    return quantize_artifact(export, out, QuantizeOptions(target="tensorrt", search=False, **FAST))


def test_an_int8_graph_builds_only_for_the_runtime_it_was_quantized_for(
        export: Path, int8_ort: Path, int8_trt_missed: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A TensorRT kit of an onnxruntime-target graph (asymmetric zero points, which TensorRT
    rejects) and an onnxruntime engine of a tensorrt-target graph (judged on fake-quant, never on
    ONNX Runtime's int8 kernels) are refused in one line naming the quantize command that fits."""
    from alignvar_edge.cli import main
    for src, target, why in ((int8_ort, "tensorrt", "zero points are not 0"),
                             (int8_trt_missed, "onnxruntime", "never on onnxruntime's int8 kernels")):
        out = tmp_path / target
        assert main(["build", str(src), "--target", target, "--precision", "int8", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"'{src}' was quantized for " in err[0] and why in err[0], err
        assert f"`alignvar-edge quantize {export} --precision int8 --target {target}`" in err[0], err
        assert not out.exists()
    assert main(["build", str(int8_trt_missed), "--target", "tensorrt", "--precision", "int8", "--kit",
                 "--out", str(tmp_path / "kit")]) == 0        # its own runtime takes it
    # from Python, the call that fits, not the command
    from alignvar_edge import build
    with pytest.raises(InputError, match=r"never on onnxruntime's int8 kernels\): run `from alignvar_edge\.quantize "
                                         r"import QuantizeOptions, quantize_artifact; quantize_artifact\("):
        build(int8_trt_missed, "onnxruntime", precision="int8", out=tmp_path / "py")


def test_a_tensorrt_kit_of_an_int8_artifact_that_missed_its_target_says_so(
        int8_trt_missed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The kit's user cannot check the engine before the device: `build` warns there as it does
    for an onnxruntime engine (one rule: engine_warnings), naming --no-search."""
    from alignvar_edge.cli import main
    val = load_verified(int8_trt_missed).parity
    assert val is not None and val["target_met"] is False
    kit = tmp_path / "kit"
    assert main(["build", str(int8_trt_missed), "--target", "tensorrt", "--precision", "int8", "--kit",
                 "--out", str(kit)]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warning) == 1 and "the int8 build kit: its source missed the quantize step's fidelity target" \
        in warning[0], warning
    assert f"tokens {val['validation']['token_agreement']:.2%}" in warning[0] and "--no-search" in warning[0]


def test_float_groups_from_another_export_or_other_weights_are_refused_and_the_source_is_recorded(
        export: Path, int8_ort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`build --float-groups-from` takes the search result of an int8 artifact quantized from this
    very export only; another export (same weights) or other weights get one line naming the flag,
    and an accepted build records the artifact's path and manifest hash."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import read_manifest, write_manifest

    def variant(name: str, weights: str | None) -> Path:
        d = tmp_path / name
        shutil.copytree(export, d)
        g = onnx.load(str(d / "model.onnx"))
        g.doc_string = name                      # another export: its graph's bytes differ
        onnx.save(g, str(d / "model.onnx"))
        m = read_manifest(d)
        if weights:
            m.model = dataclasses.replace(m.model, weights_sha256=weights)
        write_manifest(d, m)
        return d

    build = ["--target", "openvino", "--precision", "int8", "--calib", "builtin", "--calib-tiles", "4",
             "--float-groups-from", str(int8_ort)]
    for src, what in ((variant("re-export", None), "another export"), (variant("other", "0" * 64), "other weights")):
        assert main(["build", str(src), *build, "--out", str(tmp_path / f"e-{src.name}")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--float-groups-from {int8_ort} was quantized from {what}" in err[0], err
        assert not (tmp_path / f"e-{src.name}").exists()
    eng = tmp_path / "ok"
    assert main(["build", str(export), *build, "--out", str(eng)]) == 0
    origin = load_verified(eng).extra["float_groups_from"]
    assert origin["path"] == str(int8_ort)
    assert origin["manifest_sha256"] == hashlib.sha256((int8_ort / "manifest.json").read_bytes()).hexdigest()


def test_float_groups_from_an_engine_are_its_quantize_outputs_or_refused_naming_it(
        export: Path, int8_ort: Path, tmp_path: Path) -> None:
    """An onnxruntime engine of the quantize output copies its groups but not the export it came
    from: its groups are read from that output (accepted for this export), and where that output
    is gone the refusal asks for it, with no `None` for an unknown export."""
    from alignvar_edge import runtimes
    from alignvar_edge.quantize.artifact import check_float_groups_source, searched_float_groups
    src = tmp_path / "q"
    shutil.copytree(int8_ort, src)
    eng = runtimes.build(src, "onnxruntime", "int8", out=tmp_path / "e")
    groups, direct = searched_float_groups(eng), searched_float_groups(src)
    assert list(groups) == list(direct) and groups.origin == direct.origin and groups.origin["path"] == str(src)
    check_float_groups_source(groups, load_verified(export), export, "model.onnx")        # this very export
    shutil.rmtree(src)
    with pytest.raises(InputError) as e:
        searched_float_groups(eng)
    assert f"--float-groups-from {eng} is an engine (onnxruntime int8)" in str(e.value)
    assert f"({src}) is not found here: pass the `alignvar-edge quantize` output" in str(e.value)


def test_inspect_shows_the_calibration_set_and_what_stayed_float(int8_ort: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`inspect` of a quantized artifact names its calibration set (hash, source, images) and the
    groups kept in float by policy and by the search, as its manifest records them."""
    from alignvar_edge.cli import main

    assert main(["inspect", str(int8_ort)]) == 0
    lines = capsys.readouterr().out.splitlines()
    m = load_verified(int8_ort)
    cal, q = m.calibration or {}, m.quantization or {}
    calib = next(line for line in lines if line.startswith("calib "))
    assert calib.startswith(f"calib      {cal['hash'][:12]} from builtin:train: {cal['tiles']} tiles from "
                            f"{cal['calibration_images']} image(s)")
    assert f"{len(cal['files'])} file(s) named in manifest.json" in calib
    by_policy = next(line for line in lines if line.startswith("float      by policy:"))
    assert all(f"{c} ({v['nodes']}" in by_policy for c, v in q["float_by_policy"].items())
    by_search = next(line for line in lines if line.startswith("float      by search:"))
    groups = [s["group"] for s in q["float_by_search"]]
    assert groups and all(f"{g} (score" in by_search for g in groups)


def test_policy_keeps_softmax_norms_head_and_argmax_in_float(int8_ort: Path, export: Path) -> None:
    model = onnx.load(str(int8_ort / "model.onnx"))
    _, dqs = _q_nodes(model)
    dq_out = {n.output[0] for n in dqs}
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm", "Conv", "QuantizeLinear", "DequantizeLinear"):
            continue
        for i in n.input:
            if i in dq_out:
                # a float op may read an int8 matmul/conv's quantized output (as ORT's QLinear
                # kernels produce it), never a quantized copy of a float op's tensor
                made_by = producer[producer[producer[i].input[0]].input[0]]
                assert made_by.op_type in ("MatMul", "Gemm", "Conv"), (n.name, i)
    readers = {n.op_type for n in model.graph.node if any(i in dq_out for i in n.input)}
    assert not readers & {"Softmax", "LayerNormalization", "InstanceNormalization", "ArgMax", "ReduceL2"}
    # the exporter's scope metadata lives in the source graph; fused nodes keep its names before '/'
    src = {n.name: n for n in classify(onnx.load(str(export / "model.onnx")))}
    for n in model.graph.node:
        c = src.get(n.name.split("/")[0])
        if c is not None and c.component in ("head", "attn_product", "sca", "resample", "structural"):
            assert not any(i in dq_out for i in n.input), f"{n.name} ({c.component}) was quantized"
    # a float copy of a weight that int8 copies also use reads it dequantized (weight-only int8,
    # stored once), and never reads a quantized activation
    weighted = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    int8_weights = {n.input[1] for n in weighted if n.input[0] in dq_out}
    for n in weighted:
        if n.input[0] not in dq_out and len(n.input) > 1 and n.input[1] in dq_out:
            assert n.input[1] in int8_weights, f"float {n.name} reads an int8 weight no int8 node uses"
    coarse = [n for n in weighted if n.name.split("/")[0] in src
              and src[n.name.split("/")[0]].component in ("attn_linear", "ffn")
              and (src[n.name.split("/")[0]].tokens or 99) <= 9]
    assert coarse and not any(n.input[0] in dq_out for n in coarse)


def test_tensorrt_target_is_symmetric_with_zero_points_zero(export: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # also: pretend 100 kB is past protobuf's limit, so every model takes the external-data path
    from alignvar_edge.export import onnx_io
    monkeypatch.setattr(onnx_io, "LARGE", 100_000)
    out = quantize_artifact(export, tmp_path / "trt", QuantizeOptions(target="tensorrt", search=False, **FAST))
    m = load_verified(out)
    assert m.extra["external_data"] and (out / "model.onnx.data").is_file()
    model = onnx.load(str(out / "model.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    qs, dqs = _q_nodes(model)
    assert qs and dqs
    for n in qs + dqs:
        zp = inits[n.input[2]]
        assert not zp.any(), n.name
        assert zp.dtype == (np.int32 if n.input[0].endswith("_quantized") and "bias" in n.input[0] else np.int8)
    r = m.quantization["recipe"]
    assert r["activation_type"] == "int8" and r["symmetric_activations"] and not r["reduce_range"]
    assert not r["quantize_outputs"]          # TensorRT fuses DQ -> op; no Q/DQ after weighted ops
    # a weighted op's output is quantized only as the input of the next int8 op; float ops read float
    dq_out = {n.output[0] for n in dqs}
    readers = {n.op_type for n in model.graph.node if any(i in dq_out for i in n.input)}
    assert readers <= {"MatMul", "Gemm", "Conv"}


def test_entropy_and_percentile_give_their_own_ranges(export: Path) -> None:
    from alignvar_edge.quantize.calibration.ranges import collect_ranges
    from alignvar_edge.quantize.int8 import Int8Builder
    from alignvar_edge.quantize.policy import Policy

    feeds = calibration_set("builtin", load_verified(export).config, 3, 1, 0).feeds()
    with Int8Builder(export / "model.onnx", target_recipe("onnxruntime", "minmax"), feeds) as b:
        minmax = b.prepared.ranges
        pre = onnx.load(str(b.prepared.path))
        model = b.build(Policy())
    # the ranges are what the Q/DQ scales are made of (uint8 asymmetric: (hi - lo) / 255)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    q = next(n for n in _q_nodes(model)[0] if n.input[0] in minmax)
    lo, hi = minmax[q.input[0]]
    assert float(inits[q.input[1]]) == pytest.approx((max(hi, 0) - min(lo, 0)) / 255, rel=1e-5)
    names = sorted(minmax)
    for method in ("entropy", "percentile"):
        r = collect_ranges(pre, names, feeds, method, percentile=99.9)
        clipped = [t for t in names if not np.allclose(r[t], minmax[t])]
        assert len(clipped) > len(names) // 4, f"{method} ranges are (nearly) the same as minmax"
        assert all(minmax[t][0] - 1e-6 <= r[t][0] and r[t][1] <= minmax[t][1] + 1e-6 for t in names)


def test_fp16_keeps_fp32_io_and_meets_the_target(export: Path, tmp_path: Path) -> None:
    out = quantize_artifact(export, tmp_path / "fp16", QuantizeOptions(precision="fp16", **FAST))
    m = load_verified(out)
    assert m.precision == "fp16" and m.parity["target_met"]
    assert m.parity["validation"]["token_agreement"] >= 0.99
    io = m.graphs["model"]
    assert {x["dtype"] for x in io["inputs"] + io["outputs"] if x["name"] == "lr" or x["name"] == "sr"} == {"float32"}
    model = onnx.load(str(out / "model.onnx"))
    halves = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert halves > len(model.graph.initializer) // 2
    assert m.extra["bytes"]["fp16"] < 0.75 * m.extra["bytes"]["fp32"]
    assert "ArgMax" in m.quantization["keep_fp32_ops"]
    # the searched half policy: the compute precision of every group, f32 only where the search put it
    hp = m.quantization["half_policy"]
    assert set(hp["per_group"]) == {"decoder_convs", "transformer_matmuls", "attention", "norms", "logits_head",
                                    "sca_bias"}
    assert {g for g, v in hp["per_group"].items() if v == "f32"} == set(hp["f32_groups"])
    assert m.quantization["search"]["steps"][0]["float_groups"] == 0     # started all-fp16


def test_fp16_table_shows_the_all_half_start_when_the_search_kept_groups_f32(export: Path, tmp_path: Path) -> None:
    """As int8 shows its policy-only graph, fp16 shows the all-half graph the search started from
    when it returned groups to f32 (a strict target makes it), so the table says what f32 bought."""
    from alignvar_edge.quantize.commands import fidelity_table

    out = quantize_artifact(export, tmp_path / "fp16", QuantizeOptions(
        precision="fp16", fidelity=FidelityTarget(min_token_agreement=0.9999), **FAST))
    m = load_verified(out)
    assert m.quantization["half_policy"]["f32_groups"]                    # the search did return groups
    init = m.parity["initial_validation"]
    assert init["token_agreement"] < m.parity["validation"]["token_agreement"]
    row = next(line for line in fidelity_table(m).splitlines() if line.startswith("fp16, every group half"))
    assert row.split()[4:6] == [f"{init['token_agreement']:.2%}", f"{init['identical_samples']:.0%}"]


def test_cli_prints_the_fidelity_table_and_refuses_to_clobber(export: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from alignvar_edge.cli import main

    out = tmp_path / "cli"
    args = ["quantize", str(export), "--out", str(out), "--tiles", "4", "--val-tiles", "4", "--no-search"]
    assert main(args) == 0
    text, err = capsys.readouterr()
    assert "fp32 engine" in text and "int8 (written)" in text and "float by policy" in text
    assert f"recorded in {out}/manifest.json (quantization, calibration, parity); `alignvar-edge inspect {out}`" in err
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"
    assert main(args) == 2                                  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    assert main(args[:-1] + ["--calib", str(tmp_path / "missing"), "--force"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_a_target_the_search_cannot_reach_and_writes_nothing(export: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A target that no candidate meets, every group returned to f32 included: the run says which
    target in one line, exits 2 and leaves no artifact that a build would take for one that met it.
    The miss is forced: this strict target's real margins are fp16 rounding noise (PSNR-Y drops of
    -0.001..+0.001 dB), whose sign another CPU or ONNX Runtime may flip."""
    from alignvar_edge.cli import main
    from alignvar_edge.quantize.sensitivity import Fidelity

    monkeypatch.setattr(Fidelity, "meets", lambda self, target: False)
    out = tmp_path / "q16"
    code = main(["quantize", str(export), "--precision", "fp16", "--min-token-agreement", "1.0",
                 "--max-psnr-drop", "0", "--tiles", "4", "--val-tiles", "4", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if ": error: " in line]
    assert code == 2 and len(errors) == 1 and errors[0] == err[-1], err
    assert errors[0].startswith("alignvar-edge quantize: error: fp16 for onnxruntime misses the target "
                                "(tokens >= 100%, PSNR-Y drop <= 0 dB) even with "), errors[0]
    assert "Nothing was written" in errors[0]
    assert list(tmp_path.iterdir()) == []                       # nor a hidden half-written folder


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_cli_refuses_a_bad_out_or_opset_in_one_line_before_any_calibration_work(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    """An existing --out, a foreign folder under --force, --out = the input and an opset-23 export
    for int8 are each one stderr line, before the calibration set is made (and logged)."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import read_manifest, write_manifest

    src = tmp_path / "src"
    shutil.copytree(export, src)
    taken, foreign = tmp_path / "taken", tmp_path / "foreign"
    taken.mkdir()
    (taken / "x").write_text("x")
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases = [[str(src), "--out", str(taken)], [str(src), "--out", str(foreign), "--force"],
             [str(src), "--out", str(src), "--force"]]
    if target == "onnxruntime":
        opset23 = tmp_path / "opset23"
        shutil.copytree(export, opset23)
        m = read_manifest(opset23)
        m.opset = 23
        write_manifest(opset23, m)
        cases.append([str(opset23), "--out", str(tmp_path / "q23")])
    for case in cases:
        assert main(["quantize", *case, "--target", target, "--tiles", "4"]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("alignvar-edge quantize: error: "), (case, err)
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / "q23").exists()


def test_cli_prints_the_fidelity_table_for_an_engine_its_backend_quantized(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--target openvino quantizes inside the backend's build: the screen shows the same table, from
    the engine's build-time parity (it used to show the path alone)."""
    from alignvar_edge.cli import main
    from alignvar_edge.export.inspect_artifact import inspect_artifact

    out = tmp_path / "ov"
    assert main(["quantize", str(export), "--target", "openvino", "--out", str(out), "--tiles", "4"]) == 0
    said = capsys.readouterr()
    lines = said.out.splitlines()
    # the validation split it is not judged on: the screen says why it is made at all
    assert "judges its engine on its own held-out tiles, not on the validation split" in said.err, said.err
    parity = load_verified(out).parity
    assert lines[0] == f"build-time check: {parity['tiles']} tiles vs {parity['reference']}"
    written = next(line.split() for line in lines if line.startswith("int8 (written)"))
    assert written[2:4] == [f"{parity['tokens']['overall']:.2%}", f"{parity['tokens']['identical_samples']:.0%}"]
    assert written[6] == f"{parity['psnr_y_db']:.2f}"      # PSNR-Y vs the fp32 reference
    # the engine's size: what quantizing it was for (its listed files, as inspect counts them)
    assert written[7] == f"{inspect_artifact(out)['bytes_on_disk'] / 1e6:.2f}", written
    assert any(line.startswith("fp32 engine") for line in lines) and lines[-1] == str(out)


def test_cli_warns_about_few_calibration_images_and_lists_skipped_files_once(
        export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder with one usable photograph works, and the screen says the statistics come from
    that one picture (the manifest alone is not where a user looks); a skipped file is named once."""
    from PIL import Image

    from alignvar_edge.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(folder / "one.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    args = ["quantize", str(export), "--calib", str(folder), "--out", str(tmp_path / "q"),
            "--tiles", "4", "--val-tiles", "2", "--no-search"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "alignvar-edge quantize: warning: calibration: only 1 image(s) for 4 tiles" in err
    assert err.count("skipped 1 file(s)") == 1 and "broken.jpg" in err
    # the validation tiles are crops of that same picture: the screen says the check is not independent
    assert "validation tiles are other crops of the same picture" in err
    files = json.loads((tmp_path / "q" / "manifest.json").read_text())["calibration"]["files"]
    assert files == [{"file": "one.png", "split": "both",
                      "sha256": hashlib.sha256((folder / "one.png").read_bytes()).hexdigest()}]


def test_bad_requests_are_clear_errors(export: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError):
        quantize_artifact(export, export, QuantizeOptions())
    # --force never replaces the input, nor writes inside it (an unlisted folder fails its verification)
    src = tmp_path / "src"
    shutil.copytree(export, src)
    for out in (src, src / "int8"):
        with pytest.raises(OutputExistsError, match="the input artifact"):
            quantize_artifact(src, out, QuantizeOptions(**FAST), force=True)
        assert load_verified(src).precision == "fp32"
    with pytest.raises(ConfigError, match="precision"):
        quantize_artifact(export, tmp_path / "x", QuantizeOptions(precision="int4"))
    with pytest.raises(InputError, match="holds no images"):
        quantize_artifact(export, tmp_path / "x", QuantizeOptions(calib=str(tmp_path)))
    m23 = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []),
                                 opset_imports=[onnx.helper.make_opsetid("", 23)])
    with pytest.raises(ConfigError, match="opset=18 or 20"):       # a Python call: the keyword
        check_opset(m23)


def test_options_the_chosen_pass_does_not_read_are_refused(export: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An int8 flag with fp16, or a search flag for a backend that quantizes with its own tool, was
    silently dropped: the artifact looked like what was asked for but was not."""
    from alignvar_edge.cli import main

    for opts, flag in ((dict(precision="fp16", float_copy_weights="fp32"), "--float-copy-weights"),
                       (dict(precision="fp16", method="entropy"), "--method"),
                       (dict(precision="fp16", reduce_range=False), "--no-reduce-range"),
                       (dict(percentile=99.0), "--percentile"),
                       (dict(target="openvino", fidelity=FidelityTarget(0.999, 0.1)), "--min-token-agreement"),
                       (dict(target="coreml", search=False), "--no-search"),
                       # the build judges its engine on its own held-out tiles: a validation split is unused
                       (dict(target="openvino", val_tiles=4), "--val-tiles"),
                       # Core ML compresses weights alone and openvino fp16 takes no calibration set
                       (dict(target="coreml", tiles=8), "--tiles applies where a calibration set is read"),
                       (dict(target="coreml", precision="fp16", seed=1), "--seed"),
                       (dict(target="openvino", precision="fp16", calib="/nonexistent"), "--calib")):
        with command_line(), pytest.raises(ConfigError, match=flag):        # as the verb words it
            QuantizeOptions(**opts).validate()
    out = tmp_path / "fp16"
    assert main(["quantize", str(export), "--precision", "fp16", "--float-copy-weights", "fp32",
                 "--out", str(out)]) == 2
    assert "--float-copy-weights applies to --precision int8 only" in capsys.readouterr().err
    assert not out.exists()
    QuantizeOptions(method="percentile", percentile=99.0, target="tensorrt").validate()   # where they apply
    QuantizeOptions(target="openvino", tiles=8, calib="/elsewhere", seed=1).validate()     # NNCF calibrates


def test_a_pass_flag_typed_at_its_default_value_is_refused_where_it_is_not_read(export: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`--min-token-agreement 0.99` (the default) with --target coreml was accepted where 0.999 was
    refused: its user believed the 99% target held, and a 98.27% package was written."""
    from alignvar_edge.cli import main

    for extra, flag in ((["--target", "coreml", "--min-token-agreement", "0.99"], "--min-token-agreement"),
                        (["--target", "openvino", "--val-tiles", "16"], "--val-tiles"),
                        (["--target", "coreml", "--calib", "builtin"], "--calib"),
                        (["--target", "coreml", "--tiles", "32"], "--tiles"),
                        (["--precision", "fp16", "--method", "minmax"], "--method"),
                        (["--percentile", "99.99"], "--percentile applies to --method percentile only")):
        out = tmp_path / "q"
        assert main(["quantize", str(export), *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert flag in err and err.count("\n") == 1, err
        assert not out.exists()


def test_target_settings(tmp_path: Path) -> None:
    cpu = tmp_path / "cpuinfo"
    cpu.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    import platform
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert has_vnni(cpu) is False
        cpu.write_text("flags : fpu avx2 avx512f avx512_vnni\n")
        assert has_vnni(cpu) is True
    assert target_recipe("onnxruntime", vnni=False).reduce_range is True
    assert target_recipe("onnxruntime", vnni=True).reduce_range is False
    trt = target_recipe("tensorrt")
    assert trt.symmetric_activations and trt.activation_type == "int8" and not trt.reduce_range
    with pytest.raises(ConfigError):
        target_recipe("openvino")
    with pytest.raises(ConfigError):
        FidelityTarget(1.5, 0.1) and QuantizeOptions(fidelity=FidelityTarget(1.5, 0.1)).validate()


def test_returning_groups_to_float_equals_never_quantizing_them(export: Path) -> None:
    """The search cuts candidates from one Q/DQ graph; each must equal quantize_static's own."""
    import onnxruntime as ort

    from alignvar_edge.quantize.int8 import Int8Builder
    from alignvar_edge.quantize.policy import Policy

    feeds = calibration_set("builtin", load_verified(export).config, 2, 1, 0).feeds()
    pol = Policy()
    with Int8Builder(export / "model.onnx", target_recipe("onnxruntime"), feeds) as b:
        groups = sorted({n.group for n in b.selected(pol)})
        full = b.build(pol)
        pre = onnx.load(str(b.prepared.path))
        count = lambda m, op: sum(n.op_type == op for n in m.graph.node)  # noqa: E731
        assert count(full, "Clip") == count(pre, "Clip")           # no activation folded away
        rng = np.random.default_rng(0)
        for _ in range(1):
            off = {g for g in groups if rng.random() < 0.4}
            cut = b.build(pol.with_float(frozenset(off)))
            direct = b._quantize_static(sorted(n.name for n in b.selected(pol) if n.group not in off))
            run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]  # noqa: E731
                                                 ).run(None, feeds[0])
            for x, y in zip(run(cut), run(direct)):
                np.testing.assert_array_equal(x, y)


def test_float_copy_weights_fp32_stores_duplicates_and_dequantizes_none_at_run_time(
        export: Path, tmp_path: Path) -> None:
    # the same int8 nodes, but a float copy of a shared weight reads an fp32 duplicate: a bigger
    # file and no DequantizeLinear of a weight feeding a float matmul
    shared = quantize_artifact(export, tmp_path / "a", QuantizeOptions(search=False, **FAST))
    dup = quantize_artifact(export, tmp_path / "b", QuantizeOptions(search=False, float_copy_weights="fp32", **FAST))
    assert load_verified(dup).quantization["recipe"]["float_copy_weights"] == "fp32"

    def float_readers_of_int8_weights(path: Path) -> int:
        model = onnx.load(str(path / "model.onnx"))
        inits = {t.name for t in model.graph.initializer}
        dq_w = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
        dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        return sum(1 for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")
                   and n.input[0] not in dq_out and len(n.input) > 1 and n.input[1] in dq_w)
    assert float_readers_of_int8_weights(shared) > 0
    assert float_readers_of_int8_weights(dup) == 0
    size = lambda p: (p / "model.onnx").stat().st_size  # noqa: E731
    assert size(dup) > size(shared)
    with pytest.raises(ConfigError, match="float_copy_weights"):
        quantize_artifact(export, tmp_path / "c", QuantizeOptions(float_copy_weights="fp16", **FAST))


def test_int8_of_an_export_with_external_data_equals_int8_of_the_single_file(export: Path, tmp_path: Path) -> None:
    """`export --external-data yes` keeps the weights in model.onnx.data; ORT's pre-processing then
    failed ("should be stored in .../model.onnx.data, but it is not regular file")."""
    from alignvar_edge.export.onnx_export import export_onnx

    ext = export_onnx(lively_model(), tmp_path / "ext", graph="single", batch=1, n_tiles=1, external_data=True)
    assert (ext / "model.onnx.data").is_file()
    opts = QuantizeOptions(search=False, tiles=2, val_tiles=2)
    a = load_verified(quantize_artifact(ext, tmp_path / "a", opts))
    b = load_verified(quantize_artifact(export, tmp_path / "b", opts))
    assert a.parity["validation"] == b.parity["validation"]
    assert a.quantization["int8_nodes"] == b.quantization["int8_nodes"] > 0


def test_a_graph_without_module_scopes_is_quantized_with_a_warning(tmp_path: Path) -> None:
    """onnxslim (`export --simplify`) strips the scopes the policy reads: AdaLN, SCA and the coarsest
    scales then went int8 without a word."""
    from alignvar_edge.export.onnx_export import export_onnx

    slim = export_onnx(lively_model(), tmp_path / "slim", graph="single", batch=1, n_tiles=1, simplify=True)
    said: list[str] = []
    quantize_artifact(slim, tmp_path / "q", QuantizeOptions(search=False, tiles=1, val_tiles=1), log=said.append)
    # a Python call is told the keyword it passed, as a verb is told its flag
    assert any("no module scopes" in m and m.endswith("quantize an export made without simplify=True") for m in said)


def test_tile_counts_round_up_to_whole_calls_of_the_batch(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Asked for fewer tiles than whole calls of a static-batch export, quantize calibrates and
    validates on the next whole number of calls, and says so."""
    from alignvar_edge.cli import main
    from alignvar_edge.export.onnx_export import export_onnx

    src = export_onnx(lively_model(), tmp_path / "b4", graph="single", batch=4, n_tiles=4)
    out = tmp_path / "q"
    assert main(["quantize", str(src), "--out", str(out), "--tiles", "3", "--val-tiles", "2", "--no-search"]) == 0
    assert "rounded up to whole calls of the export's batch 4: 4 and 4" in capsys.readouterr().err
    calib = json.loads((out / "manifest.json").read_text())["calibration"]
    assert calib["tiles"] == 4 and calib["validation_tiles"] == 4


def test_build_says_when_it_rounds_calib_tiles_up_to_whole_calls(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`build --calib-tiles` asked for fewer tiles than whole calls says it rounds, as quantize does."""
    import argparse
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.runtimes.commands import _calibration
    src = export_onnx(lively_model(), tmp_path / "b4", graph="single", batch=4, n_tiles=4)
    cs = _calibration(argparse.Namespace(source=str(src), calib="builtin", calib_tiles=3))
    assert "--calib-tiles rounded up to whole calls of the export's batch 4: 4 (asked for 3)" in capsys.readouterr().err
    assert len(cs.calibration) == 4


def test_selftest_advice_for_a_failing_int8_engine_names_no_search_where_the_search_was_skipped() -> None:
    from alignvar_edge.manifest import ModelInfo, new_manifest
    from alignvar_edge.recipes import recipe
    from alignvar_edge.runtimes.selftest import _int8_fix

    def fix(q: dict | None) -> str:
        m = new_manifest("engine", "onnxruntime", "single", "int8", ModelInfo(name="m"), quantization=q)
        return _int8_fix(m, recipe("onnxruntime", "int8"))
    assert "--no-search: quantize again without it" in fix({"method": "minmax", "search": None})
    for searched in ({"method": "minmax", "search": {"float_groups": []}}, None):
        assert "--no-search" not in fix(searched) and "--min-token-agreement" in fix(searched)
