"""Core ML on Linux: the converted module equals the model, the .mlpackage builds and passes spec
validation and the ANE lint, and prediction says plainly that it needs macOS.
"""
from __future__ import annotations

import copy
import re
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from _graph_bytes import stand_in_graph
from _runtime_fixtures import sharp_model
from alignvar_edge import runtimes
from alignvar_edge.errors import BackendUnavailableError
from alignvar_edge.runtimes.coreml import backend as coreml

pytestmark = pytest.mark.usefixtures("one_torch_thread")

pytest.importorskip("coremltools", reason="coremltools is not installed")


def test_converted_module_is_the_model_exactly():
    m = sharp_model("micro")
    x = torch.from_numpy(np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32))
    with torch.no_grad():
        ref = m(x)
        got = coreml.rollout_module(m)(x)
    assert all(torch.equal(a, b) for a, b in zip(ref, got))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    t0 = time.perf_counter()
    out = runtimes.build("in-memory", "coreml", out=tmp_path_factory.mktemp("cm") / "eng",
                         model=sharp_model("micro"))
    return out, time.perf_counter() - t0


def test_mlpackage_builds_and_passes_spec_validation(package):
    from alignvar_edge.manifest import load_verified
    out, seconds = package
    m = load_verified(out)
    assert (out / "model.mlpackage" / "Manifest.json").is_file()
    ex = m.extra
    assert m.precision == "fp16" and ex["compute_precision"] == "fp16"
    assert ex["compute_units"] == "CPU_AND_NE" and ex["deployment_target"] == "iOS17"
    assert ex["spec"]["valid"] and ex["spec"]["outputs"] == ["sr", "tokens_0", "tokens_1", "tokens_2", "tokens_3"]
    assert ex["spec"]["op_types"]["reduce_argmax"] == 4      # greedy tokens stay in the graph
    assert not [f for f in ex["ane_lint"] if f["level"] == "error"]
    assert "fp32" not in {f["rule"] for f in ex["ane_lint"]}     # fp16 throughout: nothing leaves for fp32
    # Linux fidelity proxy for fp16 (torch in float16 vs float32)
    assert m.parity["tokens"]["overall"] >= 0.99 and "proxy" in m.parity["reference"]
    # re-reading the saved package gives the same verdict
    again = runtimes.get_backend("coreml").inspect(out)
    assert again["spec"]["ops"] == ex["spec"]["ops"]
    # 16 tiles per prediction by default: a photo needs 1/16 of the predictions one tile each would
    assert ex["batch"] == 16 and ex["spec"]["inputs"]["lr"][0] == 16
    with runtimes.load(out) as engine:
        assert engine.batch == 16


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML predicts")
def test_prediction_needs_macos_and_says_so(package):
    out, _ = package
    with runtimes.load(out) as e:
        assert e.backend == "coreml" and e.input_spec["lr"][0] == (16, 3, 8, 8)
        with pytest.raises(BackendUnavailableError, match="needs macOS|macOS only"):
            e.upscale(np.zeros((9, 9, 3), np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("precision,method", [("int8-weights", "export"), ("palette4", "trace")])
def test_weight_compression_and_torch_export_path(precision, method, tmp_path):
    from alignvar_edge.manifest import load_verified
    out = runtimes.build("in-memory", "coreml", precision=precision, out=tmp_path / "e",
                         model=sharp_model("micro"), method=method)
    m = load_verified(out)
    assert m.quantization["weights_only"] and m.extra["conversion"] == method
    assert m.extra["spec"]["valid"]


def _read_package(out):
    import coremltools as ct
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.models.MLModel(str(out / "model.mlpackage"), skip_model_load=True).get_spec()


def test_package_describes_its_io_and_carries_the_input_contract(package):
    """What Xcode shows, read back with coremltools on Linux."""
    import json

    from alignvar_edge.manifest import load_verified
    out, _ = package
    spec = _read_package(out)
    d = spec.description
    assert "x4 super-resolution (micro, fp16) on 8x8 RGB tiles" in d.metadata.shortDescription
    assert "2 px overlap" in d.metadata.shortDescription and d.metadata.author.startswith("alignvar-edge")
    assert d.input[0].shortDescription == ("16 LR tile(s), float32 (16, 3, 8, 8), NCHW, RGB planes in [0, 1] "
                                           "(pad the last batch of an image by repeating a tile)")
    outs = {o.name: o.shortDescription for o in d.output}
    assert outs["sr"].startswith("SR tiles, float32 (16, 3, 32, 32), NCHW, RGB in [0, 1]")
    sr = next(o for o in d.output if o.name == "sr")       # float32 as it says (ML Programs default to fp16)
    assert sr.type.multiArrayType.dataType == sr.type.multiArrayType.ArrayDataType.Value("FLOAT32")
    assert outs["tokens_3"].startswith("token indices of scale 4/4 (8x8)")
    meta = {k[len("com.alignvar-edge."):]: v for k, v in d.metadata.userDefined.items()
            if k.startswith("com.alignvar-edge.")}
    assert {k: meta[k] for k in ("tile", "overlap", "scale", "compute_units", "color_order", "range", "input")} == {
        "tile": "8", "overlap": "2", "scale": "4", "compute_units": "CPU_AND_NE", "color_order": "RGB",
        "range": "0..1", "input": "multiarray"}
    manifest = load_verified(out)
    contract = json.loads(meta["input_contract"])
    for key in ("tile", "overlap", "scale", "shape", "layout", "color_order", "range"):
        assert contract[key] == manifest.input_contract[key], key


def test_image_input_when_asked(tmp_path):
    from alignvar_edge.runtimes.coreml.lint import _ops
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "img", model=sharp_model("micro"),
                         image_input=True, proxy=False)
    spec = _read_package(out)
    lr = spec.description.input[0]
    assert lr.type.WhichOneof("Type") == "imageType"
    assert (lr.type.imageType.width, lr.type.imageType.height) == (8, 8)
    assert lr.type.imageType.colorSpace == lr.type.imageType.ColorSpace.Value("RGB")
    assert "8-bit image, scaled to [0, 1] inside the model" in lr.shortDescription
    assert spec.description.metadata.userDefined["com.alignvar-edge.input"] == "image"
    # the 1/255 scaling is the program's first op on the input
    first_mul = next(op for op in _ops(spec) if op.type == "mul")
    assert [a.name for a in first_mul.inputs["x"].arguments] == ["lr"]
    const = next(op for op in _ops(spec) if op.type == "const"
                 and op.outputs[0].name == first_mul.inputs["y"].arguments[0].name)
    assert abs(const.attributes["val"].immediateValue.tensor.floats.values[0] - 1 / 255) < 1e-9
    with runtimes.load(out) as e:
        assert e.metadata.extra["image_input"] is True
    # the fp32 scaling op is the one the ANE lint names (MIL's own FLOAT32 code)
    assert {f["rule"]: f["count"] for f in e.metadata.extra["ane_lint"]}.get("fp32") == 1
    # the manifest, the package's metadata and `inspect` all state the 8-bit image input
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    meta = spec.description.metadata.userDefined
    assert (meta["com.alignvar-edge.range"], meta["com.alignvar-edge.layout"]) == ("0..255", "image")
    text = format_inspection(inspect_artifact(out))
    assert "input      lr uint8 image (CVPixelBuffer" in text and "in [0, 255]" in text
    assert "coreml engine, fp16, device CPU_AND_NE" in text
    assert "target     deployment target iOS17, ML Program spec valid" in text
    # the finding names the op as the program writes it (output = type), findable in Xcode's report
    assert "target     info: ANE lint `fp32` x1: fp32 tensors" in text and "e.g. `lr__scaled__ = mul`" in text
    # its README: one 8-bit image tile per prediction, called as Xcode's generated class takes it
    readme = (out / "README.md").read_text()
    assert "| `lr` | input | image, RGB, 8 bits per channel (`CVPixelBuffer` / `CGImage`) | 8x8 pixels | 0..255" in readme
    assert "One prediction takes one 8x8 tile." in readme and "AlignVARInput(lrWith: cgTile)" in readme
    assert "info: `fp32` x1" in readme


def test_half_policy_op_selector_keeps_f32_groups_fp32():
    from types import SimpleNamespace as NS

    from alignvar_edge.runtimes.coreml.backend import fp16_op_selector, group_precision

    def op(kind, children=()):
        return NS(op_type=kind, outputs=[NS(child_ops=list(children))])

    argmax = op("reduce_argmax")
    head = op("linear", [op("reshape", [argmax])])
    plain = op("linear", [op("add")])
    sel = fp16_op_selector(frozenset({"norms", "logits_head"}))
    assert not sel(op("layer_norm")) and not sel(op("reduce_mean")) and not sel(head)
    assert sel(plain) and sel(op("conv")) and sel(op("softmax"))
    assert all(fp16_op_selector(frozenset())(o) for o in (op("layer_norm"), head, argmax))
    assert not sel(argmax)          # the fp32 logits are compared in fp32, not rounded to fp16 first
    from alignvar_edge.quantize.half_policy import HALF_GROUPS
    per = group_precision("fp16", frozenset({"norms", "logits_head", "sca_bias"}), frozenset(HALF_GROUPS))
    assert per["norms"] == per["logits_head"] == "fp32" and per["decoder_convs"] == "fp16"
    assert per["sca_bias"] == "fp16"        # no MIL op type isolates it: it follows the package


def test_a_package_lists_the_half_groups_its_model_has(package, tmp_path, pytestconfig):
    """compute_precision_per_group (and the README) name the groups the model's ONNX graph has:
    no sca_bias for a model without SCA, all six for one with it."""
    import dataclasses

    import onnx

    from _runtime_fixtures import cache_root, export_dir
    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.quantize.half_policy import HALF_GROUPS, graph_groups
    plain = random_model(dataclasses.replace(sharp_model("micro").config, sca=False))
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "plain", model=plain, proxy=False,
                         half_policy={"f32_groups": ["norms", "sca_bias"]})
    per = load_verified(out).extra["compute_precision_per_group"]
    graph = onnx.load(str(export_dir(plain, cache_root(pytestconfig)) / "model.onnx"), load_external_data=False)
    assert sorted(per) == sorted(graph_groups(graph)) and "sca_bias" not in per and per["norms"] == "fp32"
    assert "sca_bias" not in (out / "README.md").read_text()
    assert sorted(load_verified(package[0]).extra["compute_precision_per_group"]) == sorted(HALF_GROUPS)


def test_target_os_and_compute_units_are_checked_first_and_taken(tmp_path, capsys):
    from alignvar_edge.cli import main
    # refused before the checkpoint is even loaded, naming the flag
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--target-os", "iOS9",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--target-os must be one of iOS16, iOS17" in capsys.readouterr().err
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--device", "GPU", "--out", str(tmp_path / "b")]) == 2
    assert "--device for Core ML is the compute units: CPU_AND_NE, ALL" in capsys.readouterr().err
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--threads", "2", "--out", str(tmp_path / "c")]) == 2
    assert "--threads applies to --target onnxruntime only" in capsys.readouterr().err
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--calib", "builtin", "--out", str(tmp_path / "d")]) == 2
    assert "--calib applies to builds that calibrate in the backend" in capsys.readouterr().err
    # the package goes inside --out: a folder named like a package would not open in Xcode
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--out", str(tmp_path / "AlignVAR.mlpackage")]) == 2
    assert "--out '" in (err := capsys.readouterr().err) and "is the engine directory, which holds model.mlpackage" in err
    assert not any((tmp_path / n).exists() for n in [*"abcd", "AlignVAR.mlpackage"])
    # any case, through the Python API as through the CLI
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "ios16", model=sharp_model("micro"),
                         target_os="ios16", device="cpu_only", proxy=False)
    spec = _read_package(out)
    from alignvar_edge.manifest import load_verified
    ex = load_verified(out).extra
    assert (ex["deployment_target"], ex["compute_units"], spec.specificationVersion) == ("iOS16", "CPU_ONLY", 7)


def test_fidelity_proxy_follows_the_half_policy():
    """A package built with --half-policy-from keeps groups in fp32; its recorded proxy does too."""
    from alignvar_edge.runtimes.coreml.backend import fidelity_proxy
    m = sharp_model("micro")
    tiles = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
    plain = fidelity_proxy(m, tiles, "fp16")
    kept = fidelity_proxy(m, tiles, "fp16", frozenset({"decoder_convs", "logits_head", "attention"}))
    assert "(decoder_convs, logits_head modules in float32)" in kept["reference"]
    assert "modules in float32" not in plain["reference"]
    assert kept["psnr_db"] != plain["psnr_db"]          # it measured a different model
    every = fidelity_proxy(m, tiles, "fp16", frozenset({"decoder_convs", "transformer_matmuls", "norms",
                                                         "logits_head"}))
    assert every["tokens"]["overall"] >= plain["tokens"]["overall"]


def test_palette_builds_record_a_proxy_of_the_palettes_coreml_makes():
    """A palette package's fidelity was unknown until a Mac ran it: the proxy palettizes the torch
    weights as coremltools does (k-means per tensor, weights over 2048 elements), then runs fp16."""
    import copy

    import torch

    from alignvar_edge.runtimes.coreml.backend import (COMPRESS_WEIGHT_THRESHOLD, fidelity_proxy,
                                                       palettize_like_coreml)
    m = sharp_model("micro")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    tiles = np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)
    coarse, fine = fidelity_proxy(m, tiles, "palette2"), fidelity_proxy(m, tiles, "palette8")
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())      # the model itself untouched
    assert "with 2-bit k-means palettes" in coarse["reference"] and "proxy" in coarse["reference"]
    assert fine["tokens"]["overall"] >= coarse["tokens"]["overall"] and fine["psnr_db"] > coarse["psnr_db"] + 20
    m = copy.deepcopy(m)                       # sharp_model is cached for other tests: palettize a copy
    palettize_like_coreml(m, 2)
    big = {k: v for k, v in m.state_dict().items() if k.endswith("weight") and v.numel() > COMPRESS_WEIGHT_THRESHOLD}
    assert big and all(v.unique().numel() <= 4 for v in big.values())
    small = [k for k, v in before.items() if k.endswith("weight") and v.dim() > 1 and v.numel() <= COMPRESS_WEIGHT_THRESHOLD]
    assert small and all(torch.equal(before[k], m.state_dict()[k]) for k in small)


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML predicts on macOS: selftest runs for real there")
def test_selftest_engine_off_macos_says_built_only_like_selftest_backend(tmp_path, capsys):
    from alignvar_edge.cli import main
    from alignvar_edge.runtimes.golden import make_golden
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    make_golden(ckpt)
    out = runtimes.build(ckpt, "coreml", out=tmp_path / "eng", proxy=False)
    assert (out / "golden.safetensors").is_file()
    # the README spells out the golden file for an in-app check, as the file holds it
    from safetensors.numpy import load_file
    golden = load_file(str(out / "golden.safetensors"))
    readme = (out / "README.md").read_text()
    codes = {"float32": "F32", "float16": "F16", "int32": "I32"}          # safetensors' dtype names
    for name in ("lr", "sr"):
        a = golden[name]
        assert f"| `{name}` | {codes[str(a.dtype)]} | ({len(a)}, {', '.join(map(str, a.shape[1:]))}) |" in readme, name
    tokens = golden["tokens_0"]
    assert f"| `tokens_0` .. `tokens_" in readme and f"| {codes[str(tokens.dtype)]} | ({len(tokens)}, " in readme
    # exit 3, as for any check that cannot run here: BUILT-ONLY checked the files, not the model's outputs
    assert main(["selftest", "--engine", str(out)]) == 3
    captured = capsys.readouterr()
    assert "BUILT-ONLY" in captured.out and "macOS only" in captured.out
    # the progress line says it is not run, not "running 4 golden tiles"
    assert f"not running {out} here: coremltools" in captured.err and "golden tiles" not in captured.err
    from alignvar_edge.model.checkpoint import weights_sha256
    from alignvar_edge.manifest import load_verified
    assert load_verified(out).model.weights_sha256 == weights_sha256(sharp_model("micro"))   # which weights


def test_a_half_policy_package_says_what_it_keeps_in_fp32(tmp_path):
    from alignvar_edge.quantize.half_policy import HalfPolicy
    policy = HalfPolicy("fp16", frozenset({"logits_head", "norms"})).to_dict()
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "hp", model=sharp_model("micro"),
                         half_policy=policy, proxy=False)
    d = _read_package(out).description
    assert "(micro, fp16, logits_head, norms in fp32)" in d.metadata.shortDescription
    assert d.metadata.userDefined["com.alignvar-edge.fp32_groups"] == "logits_head,norms"
    assert d.metadata.userDefined["com.alignvar-edge.precision"] == "fp16"


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML predicts on macOS: it compares for real there")
def test_compare_goes_on_past_an_engine_that_cannot_run_here(package, tmp_path, capsys):
    import json

    from alignvar_edge.cli import main
    from alignvar_edge.images import save_image
    out, _ = package
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    (tmp_path / "img").mkdir()
    save_image(tmp_path / "img" / "a.png", np.random.default_rng(0).random((12, 10, 3), dtype=np.float32))
    report = tmp_path / "cmp.json"
    # exit 3: an engine it was asked to compare was not compared (a script gating on it must not pass)
    assert main(["compare", str(out), str(ckpt), "--reference", str(ckpt), "--images", str(tmp_path / "img"),
                 "--json", str(report)]) == 3
    captured = capsys.readouterr()
    assert "eng: unavailable here: coremltools" in captured.out and "needs macOS" in captured.out
    assert "ckpt: tiles identical 100.0%" in captured.out
    # no progress line names the engine as if it ran, and one line says it did not
    assert "eng: a.png" not in captured.err and "ckpt: a.png" in captured.err
    assert "not comparing eng here:" in captured.err
    engines = {e["engine"]: e for e in json.loads(report.read_text())["engines"]}
    assert engines["eng"]["unavailable"] and engines["eng"]["tiles_identical"] is None
    assert engines["ckpt"]["unavailable"] is None and engines["ckpt"]["tiles_identical"] == 1.0


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML predicts on macOS: it compares for real there")
def test_compare_of_engines_that_cannot_run_here_runs_no_reference_and_exits_3(package, tmp_path, capsys):
    """`compare CM` off macOS exited 0 after running the PyTorch reference on every image, for nothing."""
    import json

    from alignvar_edge.cli import main
    out, _ = package
    # a reference whose weights cannot load: a run that loads it stops with exit 2
    broken = tmp_path / "broken"
    sharp_model("micro").save_pretrained(str(broken))
    (broken / "model.safetensors").write_bytes(b"not weights")
    report = tmp_path / "cmp.json"
    assert main(["compare", str(out), "--reference", str(broken), "--json", str(report)]) == 3
    captured = capsys.readouterr()
    said = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(said) == 1 and said[0].startswith("not comparing eng here:"), said     # no progress line
    doc = json.loads(report.read_text())
    assert [e["unavailable"] is not None for e in doc["engines"]] == [True] and doc["reference"] == str(broken)


def test_package_readme_tells_an_app_developer_the_interface(package, tmp_path):
    """README.md beside the package: I/O as the package declares it (tokens are Core ML int32,
    not the Engine's int64), tiling, Swift and Python calls, compute units, the check on a Mac;
    hashed like every file, so an edited README fails verification by name."""
    import shutil

    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.manifest import load_verified
    out, _ = package
    text = (out / "README.md").read_text()
    m = load_verified(out)
    assert "README.md" in m.files
    d = _read_package(out).description
    kinds = {o.name: o.type.multiArrayType.ArrayDataType.Name(o.type.multiArrayType.dataType).lower()
             for o in [*d.input, *d.output]}
    assert kinds["tokens_0"] == "int32" and kinds["sr"] == kinds["lr"] == "float32"
    for name, kind in kinds.items():
        shape = ", ".join(map(str, next(f for f in [*d.input, *d.output] if f.name == name).type.multiArrayType.shape))
        assert f"| `{name}` | {'input' if name == 'lr' else 'output'} | MLMultiArray {kind} | ({shape})" in text, name
    # the manifest's graph entry is the package's interface too
    outs = {o["name"]: o["dtype"] for o in m.graphs["single"]["outputs"]}
    assert outs["tokens_3"] == "int32" and outs["sr"] == "float32"
    for needle in ("RGB planes in [0, 1]", "8x8 tiles overlapping by 2 px", "exactly x4",
                   "compute units `CPU_AND_NE` (Swift `.cpuAndNeuralEngine`)",
                   "Minimum deployment target iOS17 (ML Program: loads on iOS 17 and macOS 14 or later; an older OS "
                   "refuses it, so build with `--target-os iOS16` for one)",
                   "config.computeUnits = .cpuAndNeuralEngine", "try sr.prediction(lr: lr)",
                   "compute_units=ct.ComputeUnit.CPU_AND_NE", "alignvar-edge selftest --engine DIR",
                   "alignvar-edge inspect DIR", "MLShapedArray<Float>(out.sr)", "per group: attention fp16"):
        assert needle in text, needle
    python = text.split("```python\n", 1)[1].split("```", 1)[0]
    compile(python, "README.md", "exec")                  # the Python example is Python
    assert "model.predict({'lr': lr})" in python and "np.random.rand(16, 3, 8, 8)" in python
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "README.md").write_text(text.replace("CPU_AND_NE", "ALL"))
    with pytest.raises(ArtifactError, match="README.md does not match its recorded SHA-256"):
        load_verified(broken)


def test_an_engine_opened_in_finder_still_verifies(package, tmp_path):
    """Finder writes .DS_Store (and AppleDouble ._* files on other volumes) into a folder it
    shows: the engine copied to a Mac must still pass `selftest --engine`; any other stray file
    is still refused by name."""
    import shutil

    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.manifest import load_verified
    out, _ = package
    mac = tmp_path / "on-a-mac"
    shutil.copytree(out, mac)
    (mac / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (mac / "model.mlpackage" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (mac / "model.mlpackage" / "._Manifest.json").write_bytes(b"\0\5\26\7")
    assert load_verified(mac).backend == "coreml"
    (mac / "model.mlpackage" / "Data" / "notes.txt").write_text("not ours")
    with pytest.raises(ArtifactError, match="model.mlpackage/Data/notes.txt is not listed in manifest.json"):
        load_verified(mac)


def test_image_input_with_a_batch_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    """--image-input takes one tile per prediction: --batch 4 with it is one line naming both
    flags, given before the checkpoint is loaded and traced (seconds of work for nothing)."""
    from alignvar_edge.cli import main
    from alignvar_edge.model import alignvar

    def no_loading(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the options were checked")
    monkeypatch.setattr(alignvar, "load_pretrained", no_loading)
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--image-input", "--batch", "4",
                 "--out", str(tmp_path / "img")]) == 2
    err = capsys.readouterr().err
    assert "--batch 4 with --image-input: an image input holds one tile per prediction" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "img").exists()


def test_a_quantized_export_is_not_silently_built_as_fp16(tmp_path, capsys, monkeypatch):
    """Core ML (and torch) convert the checkpoint an export names, not its graph: an int8 or fp16
    `quantize` output given as the source would come back as a plain fp16 package. It is one line
    saying so and which build keeps that precision, before anything is loaded."""
    from alignvar_edge.cli import main
    from alignvar_edge.errors import InputError
    from alignvar_edge.manifest import ModelInfo, new_manifest, write_manifest
    from alignvar_edge.model import alignvar
    from alignvar_edge.model.checkpoint import checkpoint_source
    from alignvar_edge.runtimes.artifacts import checkpoint_dir

    def export(precision):
        d = tmp_path / f"tiny-{precision}"
        d.mkdir()
        (d / "model.onnx").write_bytes(stand_in_graph("graph"))      # a listed file: the manifest must prove something
        write_manifest(d, new_manifest("onnx", "onnx", "single", precision,
                                       ModelInfo(name="alignvar-tiny", source=checkpoint_source("alignvar-tiny"))))
        return d

    def no_loading(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the source was checked")
    monkeypatch.setattr(alignvar, "load_pretrained", no_loading)
    int8, fp16, fp32 = export("int8"), export("fp16"), export("fp32")
    assert main(["build", str(int8), "--target", "coreml", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"'{int8}' carries int8 in its graph, but coreml builds from the PyTorch checkpoint" in err
    assert "build 'alignvar-tiny' (or its fp32 export) with --precision int8-weights" in err
    assert not (tmp_path / "e").exists()
    with pytest.raises(InputError, match=re.escape(f"with --precision fp16 --half-policy-from {fp16}")):
        checkpoint_dir(fp16, "coreml")
    with pytest.raises(InputError, match=r"torch builds from .* \(or its fp32 export\)$"):
        checkpoint_dir(int8, "torch")         # no torch int8 engine to suggest
    assert checkpoint_dir(fp32, "coreml").name == "alignvar-tiny"


def test_every_deployment_target_says_which_releases_load_it():
    from alignvar_edge.runtimes.coreml.backend import TARGETS
    from alignvar_edge.runtimes.coreml.readme import _SAME_CORE_ML, _also
    assert set(_SAME_CORE_ML) == set(TARGETS)
    assert _also("macOS15") == (": loads on macOS 15 and iOS 18 or later; an older OS refuses it, so build with "
                                "`--target-os macOS13` for one")
    assert _also("iOS16").endswith("macOS 13 or later; an older OS refuses it")


def test_package_readme_offers_the_compute_units_it_was_not_built_for(package):
    """A package built for ALL is not told that `--device ALL` tries other compute units."""
    import dataclasses

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.coreml.readme import package_readme
    out, _ = package
    m = load_verified(out)
    built = (out / "README.md").read_text()
    assert "`--device ALL`, `--device CPU_ONLY`, `--device CPU_AND_GPU` try the other compute units" in built
    for_all = package_readme(dataclasses.replace(m, extra={**m.extra, "compute_units": "ALL"}),
                             m.extra["spec"]["io"], "model.mlpackage")
    assert "config.computeUnits = .all" in for_all
    assert "`--device CPU_AND_NE`, `--device CPU_ONLY`, `--device CPU_AND_GPU` try the other" in for_all
    assert "`--device ALL`" not in for_all


def test_a_one_tile_package_readme_says_one_tile(tmp_path):
    """--batch 1 (the default for SR tiles over 64 px): one tile per prediction, no batch to pad."""
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "b1", model=sharp_model("micro"), batch=1,
                         proxy=False)
    text = (out / "README.md").read_text()
    assert "| `lr` | input | MLMultiArray float32 | (1, 3, 8, 8) NCHW |" in text
    assert "One prediction takes one 8x8 tile." in text and "takes 1 tiles" not in text
    lr = _read_package(out).description.input[0]          # what Xcode shows says the same
    assert lr.shortDescription == "one LR tile, float32 (1, 3, 8, 8), NCHW, RGB planes in [0, 1]"


def test_the_package_itself_is_named_as_what_it_is(package, tmp_path, capsys):
    """Pointing at model.mlpackage (or a renamed copy taken out of an Xcode project) instead of the
    engine directory: one line naming the directory to pass, not 'an interrupted run, re-run it'."""
    import shutil

    from alignvar_edge.cli import main
    out, _ = package
    assert main(["inspect", str(out / "model.mlpackage")]) == 2
    err = capsys.readouterr().err
    assert ("is a Core ML package, not an engine directory: pass the engine directory that holds it: "
            f"'{out.resolve()}'") in err and "interrupted" not in err
    alone = tmp_path / "AlignVAR.mlpackage"
    shutil.copytree(out / "model.mlpackage", alone)
    assert main(["selftest", "--engine", str(alone)]) == 2
    err = capsys.readouterr().err
    assert "is a Core ML package, not an engine directory: pass the engine directory it came from" in err
    assert len(err.strip().splitlines()) == 1


def test_calib_tiles_without_calib_is_refused_not_ignored(tmp_path, capsys):
    """Core ML builds calibrate nothing: --calib-tiles on its own was silently dropped."""
    from alignvar_edge.cli import main
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--calib-tiles", "8",
                 "--out", str(tmp_path / "e")]) == 2
    assert "--calib-tiles sizes the --calib set and applies only with --calib" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_half_policy_from_a_coreml_engine_says_what_it_was_given(package):
    """Was '... is not an fp16 ONNX artifact (precision fp16)': true, and no help."""
    from alignvar_edge.errors import InputError
    from alignvar_edge.quantize.artifact import searched_half_policy
    out, _ = package
    with pytest.raises(InputError, match=r"is not an fp16 ONNX artifact from .* \(a coreml fp16 engine\); pass one"):
        searched_half_policy(out)


def test_an_fp32_package_for_the_neural_engine_is_warned_about_at_build(tmp_path, capsys):
    """The ANE computes fp16 only: `--precision fp32` with the default CPU_AND_NE runs on the CPU,
    which the build says (and the lint records); the fp16 default and CPU_ONLY are not warned about."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.coreml.lint import ane_lint
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    assert main(["build", str(ckpt), "--target", "coreml", "--precision", "fp32", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "warning: ANE lint `fp32`" in err and "with CPU_AND_NE it runs on the CPU" in err, err
    fp32 = next(f for f in load_verified(tmp_path / "e").extra["ane_lint"] if f["rule"] == "fp32")
    assert fp32["level"] == "warning"
    spec = _read_package(tmp_path / "e")
    assert [f["level"] for f in ane_lint(spec, "CPU_ONLY") if f["rule"] == "fp32"] == ["info"]
    assert "on the CPU or GPU" in next(f["why"] for f in ane_lint(spec, "ALL") if f["rule"] == "fp32")


def test_an_fp16_package_with_a_few_fp32_groups_gets_information_not_a_warning(tmp_path):
    from alignvar_edge.runtimes.coreml.lint import ane_lint
    from coremltools.proto import MIL_pb2

    from alignvar_edge.runtimes.coreml.lint import _ops
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "e", model=sharp_model("micro"), proxy=False,
                         half_policy={"f32_groups": ["logits_head"]})
    spec = _read_package(out)
    assert [f["level"] for f in ane_lint(spec) if f["rule"] == "fp32"] == ["info"]
    # the head's fp32 logits reach the token argmax in fp32 (was: a cast to fp16 between them)
    ops = _ops(spec)
    made = {o.name: (op.type, o.type.tensorType.dataType) for op in ops for o in op.outputs}
    feeds = [made[op.inputs["x"].arguments[0].name] for op in ops if op.type == "reduce_argmax"]
    assert len(feeds) == 4 and all(f == ("linear", MIL_pb2.FLOAT32) for f in feeds), feeds


def test_the_proxy_of_an_fp32_logits_head_compares_fp32_logits():
    from alignvar_edge.runtimes.coreml.backend import _keep_f32
    m = copy.deepcopy(sharp_model("micro")).half()
    x = torch.rand(2, 3, 8, 8).half()
    _keep_f32(m, frozenset({"logits_head"}), x)
    seen = []
    m.head.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    with torch.inference_mode():
        m(x)
    assert seen and set(seen) == {torch.float32}      # as the package's argmax takes them


def test_a_package_whose_proxy_misses_the_selftest_gate_is_warned_about_at_build(tmp_path, capsys, monkeypatch,
                                                                                 package):
    """alignvar-tiny palette4 keeps ~79% of the tokens in its proxy, against the 99% selftest asks:
    the build printed "wrote" and the README the gate, so the package failed only once on a Mac."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified
    real = coreml.fidelity_proxy

    def short_proxy(*a, **k):
        rep = real(*a, **k)
        return {**rep, "tokens": {**rep["tokens"], "overall": 0.79}}
    monkeypatch.setattr(coreml, "fidelity_proxy", short_proxy)
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    assert main(["build", str(ckpt), "--target", "coreml", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "warning: the build-time proxy is short of the selftest gate (99% tokens and 35 dB)" in err, err
    assert "selftest on a Mac will likely fail this package" in (tmp_path / "e" / "README.md").read_text()
    assert load_verified(tmp_path / "e").parity["short_of_gate"] == "99% tokens and 35 dB"
    out, _ = package                           # a proxy within the gate: nothing said
    assert "short_of_gate" not in load_verified(out).parity
    assert "short of the selftest gate" not in (out / "README.md").read_text()


def test_weight_compression_compresses_weights_not_folded_constants(tmp_path):
    """coremltools' global config also quantized the constants conversion folds from positional
    inputs ((16, L, C) operands of `concat`; alignvar-tiny's rotary tables of `mul` and its VQ
    codebook of `gather` too): not the layer weights the Linux proxy quantizes."""
    from alignvar_edge.runtimes.coreml.lint import _ops
    out = runtimes.build("in-memory", "coreml", precision="int8-weights", out=tmp_path / "e",
                         model=sharp_model("micro"), proxy=False)
    ops = _ops(_read_package(out))
    packed = {o.name for op in ops if op.type.startswith("constexpr_") for o in op.outputs}
    users = {(op.type, k) for op in ops for k, v in op.inputs.items() for a in v.arguments if a.name in packed}
    assert ("linear", "weight") in users and ("conv", "weight") in users
    assert users == {("linear", "weight"), ("conv", "weight")}, users


def test_the_package_lint_flags_the_integer_token_path_as_the_onnx_lint_does(package, pytestconfig):
    """The package's `ane_lint` (what manifest.json, the README, inspect and selftest show) listed
    only gathers, while the ONNX-level lint of the same model warned that the token argmax and its
    casts compute integers off the ANE: the two now give one rule, with one wording."""
    from _runtime_fixtures import cache_root, export_dir
    import onnx

    from alignvar_edge.export.lint import lint_model
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.coreml.lint import _ops
    out, _ = package
    found = {f["rule"]: f for f in load_verified(out).extra["ane_lint"]}
    assert "int-compute" in found, found
    ints = found["int-compute"]
    made_by = {o.name: op.type for op in _ops(_read_package(out)) for o in op.outputs}
    named = [n.split(" = ") for n in ints["ops"]]          # each op as `output = op_type`
    assert all(made_by[name] == op_type for name, op_type in named), ints["ops"]
    assert ints["level"] == "warning" and {t for _, t in named} >= {"reduce_argmax", "cast"}
    assert sum(t == "reduce_argmax" for _, t in named) == 4        # one per scale of `micro`
    assert all(made_by[g.split(" = ")[0]] == "gather" for g in found["gather"]["ops"])
    graph = export_dir(sharp_model("micro"), cache_root(pytestconfig))
    onnx_finding = next(f for f in lint_model(onnx.load(str(graph / "model.onnx"), load_external_data=False),
                                              targets=["coreml-ane"]) if f.rule == "int-compute")
    assert (ints["level"], ints["why"]) == (onnx_finding.severity, onnx_finding.message)
    assert ints["source"] in onnx_finding.source


def test_the_integer_compute_rule_cites_core_ml_evidence_not_another_runtime():
    """The int-compute warning cited an ONNX Runtime CoreML-EP pull request (int64<->int32 at
    partition edges) with high confidence: about a different runtime, while these packages hold no
    int64. Apple lists no ANE ops, so the rule is a heuristic, says so, and claims low confidence."""
    import json
    from pathlib import Path

    from alignvar_edge.export.lint import INT_COMPUTE
    _, why, pattern = INT_COMPUTE
    notes = json.loads((Path(coreml.__file__).resolve().parents[2] / "data" / "ane-notes.json").read_text())
    note = next(n for n in notes["known_fallbacks"] if n["pattern"] == pattern)
    cited = {s.split(" ")[0].rstrip(";") for s in note["source"].split("; ")}
    urls = {s["id"]: s.get("url", s.get("repo", "")) for s in notes["sources"]}
    assert cited <= set(urls) and not any("onnxruntime" in urls[c] for c in cited), note["source"]
    assert note["confidence"] == "low" and "heuristic" in note["why"] and "heuristic" in why
    assert "int64" not in why


def test_quantize_for_coreml_says_what_build_says(tmp_path, capsys, monkeypatch):
    """`quantize --target coreml` wrote a package short of the selftest gate with exit 0 and no
    warning, where `build` warns for the same package; and it said its fp16 package "quantizes
    weights only" (it computes in fp16)."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import ModelInfo, new_manifest, write_manifest
    from alignvar_edge.model.checkpoint import checkpoint_source
    ckpt = tmp_path / "ckpt"
    sharp_model("micro").save_pretrained(str(ckpt))
    export = tmp_path / "export"                 # an fp32 export naming its checkpoint: coreml converts that
    export.mkdir()
    (export / "model.onnx").write_bytes(stand_in_graph("graph"))
    write_manifest(export, new_manifest("onnx", "onnx", "single", "fp32",
                                        ModelInfo(name="micro", source=checkpoint_source(ckpt))))
    from alignvar_edge import runtimes
    from alignvar_edge.errors import InputError
    real_build = runtimes.build

    def stop(*a, **k):                           # the line before the conversion is what counts here
        raise InputError("stopped before converting")
    monkeypatch.setattr(runtimes, "build", stop)
    assert main(["quantize", str(export), "--precision", "fp16", "--target", "coreml",
                 "--out", str(tmp_path / "fp16")]) == 2
    err = capsys.readouterr().err
    assert "coreml fp16 needs no calibration set" in err and "weights only" not in err, err
    monkeypatch.setattr(runtimes, "build", real_build)
    real = coreml.fidelity_proxy

    def short_proxy(*a, **k):
        rep = real(*a, **k)
        return {**rep, "tokens": {**rep["tokens"], "overall": 0.9827}}
    monkeypatch.setattr(coreml, "fidelity_proxy", short_proxy)
    assert main(["quantize", str(export), "--precision", "int8", "--target", "coreml",
                 "--out", str(tmp_path / "q")]) == 0
    err = capsys.readouterr().err
    assert "coreml int8-weights compresses weights only: it needs no calibration set" in err, err
    assert "warning: the build-time proxy is short of the selftest gate (99% tokens and 30 dB)" in err, err
    from alignvar_edge.manifest import read_manifest
    assert read_manifest(tmp_path / "q").model.name == "micro"    # the export's model, as export names it, not its path


BUILDS_LOG = "docs/results/epyc-zen5-2core/coreml-builds.log"      # the apple doc's table, as measured


def _logged_builds() -> tuple[str, dict[str, dict[str, str]]]:
    """The PyTorch CPU kernels of the machine the apple doc's builds ran on (the log's header), and
    per precision what its build printed (tokens, PSNR) and `inspect` after it (MB on disk)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / BUILDS_LOG).read_text()
    kernels = re.search(r"torch \S+ (\S+) \(torch's CPU capability", text)
    assert kernels, "the log's header names the CPU kernels PyTorch dispatched"
    built = {m[1]: {"tokens": m[2], "psnr": m[3]} for m in
             re.finditer(r"^wrote coreml/tiny-(\S+) \(coreml .*: tokens (\S+%), PSNR (\S+) dB$", text, re.M)}
    inspected = r"^\$ alignvar-edge inspect coreml/tiny-(\S+)\n(?:.*\n)*?files .*, (\S+) MB on disk$"
    for m in re.finditer(inspected, text, re.M):
        built[m[1]]["mb"] = m[2]
    return kernels[1], built


def test_the_apple_doc_table_is_its_logged_builds():
    """The table of what each package of alignvar-tiny keeps quotes the committed log of its builds
    (it held 100.00% and 75.061 dB for fp16, which no build here printed: 99.23%, 70.9 dB)."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parent.parent / "docs" / "apple.md").read_text()
    _, built = _logged_builds()
    assert set(built) == {"fp16", "int8-weights", "palette8", "palette6", "palette4", "palette2",
                          "fp16-default"}
    for precision in ("fp16", "int8-weights", "palette8", "palette6", "palette4", "palette2"):
        b = built[precision]
        assert f"| `{precision}`{' (default)' * (precision == 'fp16')} | {b['tokens']} | {b['psnr']} dB | " \
            f"{b['mb']} MB |" in doc, (precision, b)
    unvectorized = built["fp16-default"]
    said = f"fp16 build keeps {unvectorized['tokens']} of the tokens and {unvectorized['psnr']} dB"
    assert said in " ".join(doc.split())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8-weights", "palette8"])
def test_a_build_of_alignvar_tiny_is_its_logged_build(precision, tmp_path, capsys):
    """A build warns exactly where its proxy misses the selftest gate (the docs offered int8-weights
    and palette8 as ordinary choices while their builds warned), its size is the logged one the apple
    doc quotes, and so are its tokens and PSNR where PyTorch runs the log's CPU kernels: the proxy is
    PyTorch's float16 on the CPU, whose rounding differs with them."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import db_text, load_verified, parity_figures
    from alignvar_edge.recipes import recipe
    out = tmp_path / "e"
    assert main(["build", "alignvar-tiny", "--target", "coreml", "--precision", precision, "--out", str(out)]) == 0
    warned = "short of the selftest gate" in capsys.readouterr().err
    par = parity_figures(load_verified(out).parity)
    assert par is not None
    assert warned == bool(recipe("coreml", precision).misses(par.tokens, par.psnr_db))
    kernels, built = _logged_builds()
    assert main(["inspect", str(out)]) == 0
    assert f"{built[precision]['mb']} MB on disk" in capsys.readouterr().out
    here = torch.backends.cpu.get_cpu_capability()
    if here != kernels:
        pytest.skip(f"the log's figures are of PyTorch's {kernels} CPU kernels; this machine runs {here}")
    assert (par.tokens_pct, db_text(par.psnr_db)) == (built[precision]["tokens"], built[precision]["psnr"])


@pytest.mark.parametrize("precision, target_os, row", [
    ("int8-weights", "iOS17", "| `fp16`, `int8-weights`, `paletteN` | `iOS17` (default) or later |"),
    ("fp16", "iOS16", "| `fp16`, `int8-weights`, `paletteN` | `iOS16`, `macOS13` |"),
    ("fp32", "macOS14", "| `fp32` | `iOS17` (default) or later |"),
    ("fp32", "macOS13", "| `fp32` | `iOS16`, `macOS13` |")])
def test_the_docs_integer_op_counts_hold_for_each_target_and_precision(precision, target_os, row, tmp_path):
    """The docs said every package's token path has an int32 `reduce_argmax` and a uint16 `cast`
    per scale (12 ops in alignvar-tiny): an iOS16 target has no cast (6), fp32 adds an int32 `add`
    and `select` per scale (18). The runtimes table gives them per target and precision; each row
    is what the lint finds in a package built so (per scale of `micro`, times alignvar-tiny's)."""
    from pathlib import Path

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir
    model = sharp_model("micro")
    out = runtimes.build("in-memory", "coreml", out=tmp_path / "e", model=model, precision=precision,
                         target_os=target_os, proxy=False)
    ints = next(f for f in load_verified(out).extra["ane_lint"] if f["rule"] == "int-compute")
    per_scale, left = divmod(ints["count"], model.config.num_scales)
    assert left == 0, ints
    ops = ", ".join(f"`{o.split(' = ')[1]}`" for o in ints["ops"][:per_scale])      # scale 0's, in order
    tiny_scales = load_config(resolve_checkpoint_dir("alignvar-tiny")).num_scales
    doc = (Path(__file__).resolve().parent.parent / "docs" / "runtimes.md").read_text()
    assert f"{row} {ops} | {per_scale * tiny_scales} |" in doc, (ops, per_scale * tiny_scales)


def test_a_stop_while_coremltools_saves_the_package_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which the CLI raises as KeyboardInterrupt too) while coremltools loads the
    package it has just saved: no .mlpackage is left in $TMPDIR. Its own temporary one was, since its
    clean-up at exit is registered only once the model is made; it now goes into a folder of ours."""
    import tempfile

    import coremltools

    temp = tmp_path / "TMP"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    class StoppedWhileLoading(coremltools.models.MLModel):
        def __init__(self, *_args, **_kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(coremltools.models, "MLModel", StoppedWhileLoading)
    with pytest.raises(KeyboardInterrupt):
        coreml.convert(sharp_model("micro"))
    assert not list(temp.rglob("*.mlpackage")) and not list(temp.glob("alignvar-coreml-*"))
