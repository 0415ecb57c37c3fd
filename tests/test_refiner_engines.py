"""Engines of graphs with VARSR's refiner, whose second input is the sampler's noise: every verb that
calls an engine feeds it the fixed draw `upscale` feeds (`Engine.feeds_for`)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignvar_edge import runtimes
from alignvar_edge.errors import InputError


@pytest.fixture(scope="module")
def refiner_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `micro` VARSR (its LR encoder, so its colour fix, and a refiner): its checkpoint (ckpt/) and its
    batch-2 export (exp/)."""
    import torch

    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import VARSR_SWITCHES, AlignVARConfig
    torch.manual_seed(0)
    cfg = AlignVARConfig.from_preset("micro", **{**VARSR_SWITCHES, "lr_encoder_channels": (8, 16, 32)},
                                     refiner_width=16, refiner_depth=1, refiner_steps=2)
    model, root = AlignVAR(cfg).eval(), tmp_path_factory.mktemp("refiner")
    model.save_pretrained(root / "ckpt")
    return export_onnx(model, root / "exp", graph="single", batch=2)


def test_feeds_for_gives_the_tiles_and_the_fixed_noise(refiner_export: Path) -> None:
    with runtimes.load(refiner_export, backend="onnxruntime", threads=1) as e:
        x = np.random.default_rng(0).random((2, 3, e.tile_size, e.tile_size), dtype=np.float32)
        feeds = e.feeds_for(x)
        assert set(feeds) == {"lr", "noise"} and np.array_equal(feeds["noise"], e.config.refiner_noise(2))
        sr, _ = e.run(x)
        assert np.array_equal(e.infer(feeds)["sr"], sr)
        with pytest.raises(InputError, match=r"refiner_noise\(2\).*feeds_for"):
            e.infer({"lr": x})


def _noise_first(export: Path, out: Path) -> Path:
    """A copy of `export` whose graph (and manifest) list its inputs as [noise, lr]: an ONNX graph's
    inputs are matched by name, so it runs as the export does, and only a feed by position breaks."""
    import shutil

    import onnx

    from alignvar_edge.manifest import read_manifest, write_manifest
    shutil.copytree(export, out)
    m = read_manifest(out)
    graph_file = out / m.single_graph_entry()["file"]
    g = onnx.load(str(graph_file))
    inputs = list(g.graph.input)
    del g.graph.input[:]
    g.graph.input.extend(inputs[::-1])
    onnx.save(g, str(graph_file))
    m.single_graph_entry()["inputs"].reverse()
    write_manifest(out, m)
    return out


def test_quantize_feeds_a_refiner_graph_its_noise_by_name(refiner_export: Path, tmp_path: Path) -> None:
    """quantize finds the noise input by its name (graph_names.NOISE, as engines do), not as the
    graph's second input: a graph whose first input is the noise quantizes, and its quantized graph
    still takes it."""
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    src = _noise_first(refiner_export, tmp_path / "noise-first")
    out = quantize_artifact(src, tmp_path / "fp16", QuantizeOptions(precision="fp16", search=False,
                                                                    tiles=2, val_tiles=2))
    m = load_verified(out)
    assert m.takes_noise and [i["name"] for i in m.single_graph_entry()["inputs"]] == ["noise", "lr"]
    assert m.parity["validation"]["tiles"] == 2          # judged with the noise fed: it ran


def test_bench_times_a_refiner_engine_as_upscale_runs_it(refiner_export: Path, tmp_path: Path) -> None:
    from alignvar_edge.cli import main as cli
    out = tmp_path / "bench.json"
    assert cli(["bench", f"ort=onnxruntime:{refiner_export}", "--runs", "1", "--warmup", "0", "--tiles", "2",
                "--image-size", "0", "--profile-runs", "0", "--threads", "1", "--reference", str(refiner_export.parent / "ckpt"),
                "--out", str(out)]) == 0
    rows = {r["label"]: r for r in json.loads(out.read_text())["engines"]}
    assert rows["ort"]["status"] == "ok" and rows["ort"]["latency"]["per_tile_ms"]["p50"] > 0


def _python_block(readme: Path) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    return code


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_engine_readme_names_the_noise_and_its_snippet_runs_as_written(refiner_export: Path, tmp_path: Path,
                                                                       target: str) -> None:
    """A refiner engine's manifest, input contract, inspect and README name `noise`, and the README's
    "alone" snippet, run verbatim in the engine directory by a Python without alignvar-edge or PyTorch
    imported, gives the tiles alignvar-edge's engine gives."""
    pytest.importorskip(target)
    from alignvar_edge.export.inspect_artifact import format_inspection, inspect_artifact
    from alignvar_edge.manifest import read_manifest
    out = runtimes.build(refiner_export, target, precision="fp32", out=tmp_path / "eng")
    m = read_manifest(out)
    assert [i["name"] for i in m.graphs["single"]["inputs"]] == ["lr", "noise"]
    noise = m.input_contract["noise"]
    assert noise["shape"] == [2, 128, 8]
    assert "input      noise float32 [2, 128, 8]" in format_inspection(inspect_artifact(out))
    script = (_python_block(out / "README.md") + "\nimport sys\nassert not any(n.split('.')[0] in ('torch', "
              "'alignvar_edge') for n in sys.modules)\nnp.save(sys.argv[1], sr)\nnp.save(sys.argv[2], tiles "
              "if 'tiles' in dir() else values['lr'])\n")
    got, lr = tmp_path / "sr.npy", tmp_path / "lr.npy"
    subprocess.run([sys.executable, "-c", script, str(got), str(lr)], cwd=out, check=True)
    with runtimes.load(out) as e:
        want, _ = e.run(np.load(lr))
        assert e.input_contract == m.input_contract
    np.testing.assert_allclose(np.load(got), want, atol=1e-6)


def test_engine_readme_and_contract_say_upscale_adds_the_colour_fix(refiner_export: Path, tmp_path: Path) -> None:
    """For a VARSR model `upscale` adds the colour fix to the graph's tiles: the README and the input
    contract say so, and what they say reproduces `upscale`'s image from the colour-fix-free one."""
    from alignvar_edge.images.color_fix import color_fixed
    from alignvar_edge.manifest import read_manifest
    out = runtimes.build(refiner_export, "onnxruntime", out=tmp_path / "eng")
    note = read_manifest(out).input_contract["color_fix"]
    assert "--no-color-fix" in note and "color_fix=False" in note and "color_fixed(sr, image, 4)" in note
    assert f"Colour fix: {note}." in (out / "README.md").read_text()
    image = np.random.default_rng(1).random((12, 10, 3), dtype=np.float32)
    with runtimes.load(out) as e:
        fixed, plain = e.upscale(image), e.upscale(image, color_fix=False)
    assert np.abs(fixed - plain).max() > 0.05
    np.testing.assert_allclose(fixed, color_fixed(plain, image, 4), atol=1e-6)


def test_tensorrt_kit_readme_names_the_noise_and_the_colour_fix(refiner_export: Path, tmp_path: Path) -> None:
    from alignvar_edge.manifest import read_manifest
    kit = runtimes.build(refiner_export, "tensorrt", out=tmp_path / "kit")
    text, c = (kit / "README.md").read_text(), read_manifest(kit).input_contract
    assert "`noise` float32[2, 128, 8]" in text and c["noise"]["values"] in text
    assert f"Colour fix: {c['color_fix']}." in text


def test_compare_holds_a_no_refine_export_to_the_model_without_its_refiner(refiner_export: Path,
                                                                           tmp_path: Path) -> None:
    """An export made with --no-refine computes the model without the refiner (its export parity
    says so): compare runs the reference that way for it, and with the refiner for the other export,
    and says which reference each row is against."""
    from PIL import Image

    from alignvar_edge.cli import main as cli
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.model.alignvar import load_pretrained
    ckpt = refiner_export.parent / "ckpt"
    plain = export_onnx(load_pretrained(ckpt), tmp_path / "norefine", graph="single", batch=2, refine=False)
    (tmp_path / "img").mkdir()
    rgb = (np.random.default_rng(3).random((12, 12, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img" / "a.png")
    out = tmp_path / "cmp.json"
    assert cli(["compare", str(plain), str(refiner_export), "--reference", str(ckpt), "--images",
                str(tmp_path / "img"), "--json", str(out)]) == 0
    rows = {r["engine"]: r for r in json.loads(out.read_text())["engines"]}
    for name in ("norefine", "exp"):
        assert rows[name]["tokens_overall"] == 1.0 and rows[name]["min_psnr_db"] > 60, rows[name]
    assert "without the refiner" in rows["norefine"]["reference"] and rows["exp"]["reference"] == "PyTorch"


def test_golden_outputs_of_a_refiner_model_are_what_its_engines_compute(refiner_export: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The golden outputs `python -m alignvar_edge.runtimes.golden` makes beside a checkpoint run the
    refiner on the fixed draw, as every engine does: the torch engine built from it passes its
    selftest, and the exported graph (fed by ONNX Runtime) gives the golden tokens and image."""
    import shutil

    from alignvar_edge.cli import main as cli
    from alignvar_edge.runtimes.golden import read_golden
    ckpt = tmp_path / "ckpt"
    shutil.copytree(refiner_export.parent / "ckpt", ckpt)
    subprocess.run([sys.executable, "-m", "alignvar_edge.runtimes.golden", str(ckpt)], check=True)
    assert cli(["build", str(ckpt), "--target", "torch", "--out", str(tmp_path / "eng")]) == 0
    assert cli(["selftest", "--engine", str(tmp_path / "eng"), "--runs", "1", "--threads", "1"]) == 0
    assert "RESULT    PASS" in capsys.readouterr().out
    lr, sr, tokens, _ = read_golden(ckpt / "golden.safetensors")
    with runtimes.load(refiner_export, backend="onnxruntime", threads=1) as e:
        got_sr, got_tokens = e.run(lr)
    assert all(np.array_equal(a, b) for a, b in zip(got_tokens, tokens))
    np.testing.assert_allclose(got_sr, sr, atol=2e-3)            # the golden SR is stored as float16


@pytest.fixture(scope="module")
def no_refine_export(refiner_export: Path) -> Path:
    """The same checkpoint exported with --no-refine (its graph has no noise input)."""
    from alignvar_edge.cli import main as cli
    out = refiner_export.parent / "norefine"
    assert cli(["export", str(refiner_export.parent / "ckpt"), "--out", str(out), "--batch", "2", "--tiles", "2",
                "--no-refine"]) == 0
    return out


def test_torch_engine_of_a_no_refine_export_runs_without_the_refiner(no_refine_export: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A torch engine built from an export made with --no-refine computes what that export's graph
    computes (the refiner left out), and its golden outputs are of that model: its selftest passes,
    as does that of the ONNX Runtime engine of the same export."""
    from alignvar_edge.cli import main as cli
    eng, ort = tmp_path / "torch", tmp_path / "ort"
    assert cli(["build", str(no_refine_export), "--target", "torch", "--out", str(eng)]) == 0
    assert cli(["build", str(no_refine_export), "--target", "onnxruntime", "--out", str(ort)]) == 0
    with runtimes.load(eng) as t, runtimes.load(ort, threads=1) as o:
        assert not t.refines and not o.refines
        x = np.random.default_rng(0).random((2, 3, t.tile_size, t.tile_size), dtype=np.float32)
        (got, _), (want, _) = t.run(x), o.run(x)
    np.testing.assert_allclose(got, want, atol=1e-4)
    with runtimes.load(eng, refine=True) as t:       # still the user's to ask for
        assert t.refines and np.abs(t.run(x)[0] - want).max() > 0.05
    for engine in (eng, ort):
        capsys.readouterr()
        assert cli(["selftest", "--engine", str(engine), "--runs", "1", "--threads", "1"]) == 0
        out = capsys.readouterr().out
        assert "RESULT    PASS" in out and "reference: PyTorch, without the refiner" in out


def test_bench_holds_a_no_refine_engine_to_the_model_without_its_refiner(refiner_export: Path,
                                                                        no_refine_export: Path,
                                                                        tmp_path: Path) -> None:
    """bench --reference CHECKPOINT judges an engine of a --no-refine export against the model
    without the refiner (and says so), the refiner engine against the model with it."""
    from alignvar_edge.cli import main as cli
    out = tmp_path / "bench.json"
    assert cli(["bench", f"plain=onnxruntime:{no_refine_export}", f"refined=onnxruntime:{refiner_export}",
                "--runs", "1", "--warmup", "0", "--tiles", "2", "--image-size", "0", "--profile-runs", "0",
                "--threads", "1", "--reference", str(refiner_export.parent / "ckpt"), "--out", str(out)]) == 0
    rows = {r["label"]: r["fidelity"]["vs_reference"] for r in json.loads(out.read_text())["engines"]}
    for label in ("plain", "refined"):
        assert rows[label]["token_agreement"] == 1.0 and rows[label]["psnr_y_db"] > 60, rows[label]
    assert "without the refiner" in rows["plain"]["reference"] and "reference" not in rows["refined"]


def test_engines_of_a_no_refine_export_away_from_its_checkpoint_keep_golden_outputs_of_that_model(
        refiner_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A build kit of a --no-refine export, copied alone to its device (no checkpoint there), hands
    on the golden outputs it carries (those of the model without the refiner) to the engine made
    there; an ONNX Runtime engine of the export, built where the checkpoint is gone, ships its own
    outputs marked as that model's: its selftest passes."""
    import shutil

    from alignvar_edge.cli import main as cli
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.runtimes.golden import golden_made_as
    from alignvar_edge.runtimes.onnxruntime import ship_golden
    ckpt, exp, kit, ort = (tmp_path / n for n in ("ckpt", "exp", "kit", "ort"))
    shutil.copytree(refiner_export.parent / "ckpt", ckpt)
    assert cli(["export", str(ckpt), "--out", str(exp), "--batch", "2", "--tiles", "2", "--no-refine"]) == 0
    assert cli(["build", str(exp), "--target", "tensorrt", "--out", str(kit)]) == 0
    assert golden_made_as(kit / "golden.safetensors") == ("", False)
    shutil.rmtree(ckpt)
    assert cli(["build", str(exp), "--target", "onnxruntime", "--out", str(ort)]) == 0
    assert golden_made_as(ort / "golden.safetensors") == ("", False)
    capsys.readouterr()
    assert cli(["selftest", "--engine", str(ort), "--runs", "1", "--threads", "1"]) == 0
    assert "RESULT    PASS" in capsys.readouterr().out
    device = tmp_path / "device"
    shutil.copytree(kit, device / "kit")
    shutil.rmtree(exp)
    (device / "engine").mkdir()
    entry = ship_golden(read_manifest(device / "kit"), device / "kit", device / "engine")
    assert entry is not None and entry["origin"].startswith("copied from")
    assert (device / "engine" / "golden.safetensors").read_bytes() == (kit / "golden.safetensors").read_bytes()


def test_an_engine_without_the_refiner_refuses_golden_outputs_of_the_model_with_it(
        refiner_export: Path, no_refine_export: Path, tmp_path: Path) -> None:
    """An engine of a --no-refine export whose golden outputs are the refined model's (as built
    before they followed the refiner) is told to be built again, not failed against them."""
    from alignvar_edge.cli import main as cli
    from alignvar_edge.errors import ArtifactError
    from alignvar_edge.runtimes.golden import engine_golden, make_golden
    eng = tmp_path / "ort"
    assert cli(["build", str(no_refine_export), "--target", "onnxruntime", "--out", str(eng)]) == 0
    engine_golden(eng, "")          # its own: the model without the refiner
    make_golden(refiner_export.parent / "ckpt", out=eng / "golden.safetensors")
    with pytest.raises(ArtifactError, match="outputs of the unpruned model with VARSR's refiner, but .* computes the "
                                            "unpruned model without VARSR's refiner: build the engine again"):
        engine_golden(eng, "")
