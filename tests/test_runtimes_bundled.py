"""The issue's must-show on the bundled trained model `alignvar-tiny` (skipped while it is absent).

Fast: the golden outputs shipped with each bundled model reproduce on the torch backend (the selftest).
Slow (`-m slow`; the ONNX export of the tiny model takes ~100 s here, cached between runs):
ONNX Runtime and OpenVINO fp32 engines upscale odd-size held-out photographs to exactly 4x with
100% token agreement per tile and >= 50 dB PSNR against the torch backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _runtime_fixtures import cache_root, export_dir, heldout_crops
from alignvar_edge import runtimes
from alignvar_edge.export.parity import psnr
from alignvar_edge.model.bundled import BUNDLED as BUNDLED_NAMES
from alignvar_edge.runtimes import tiling

try:
    from alignvar_edge.model.alignvar import load_pretrained
    BUNDLED = load_pretrained("alignvar-tiny")
except Exception as e:  # noqa: BLE001 - any reason the bundled model cannot load skips these
    BUNDLED, WHY = None, str(e)
else:
    WHY = ""

pytestmark = [pytest.mark.skipif(BUNDLED is None, reason=f"bundled model unavailable: {WHY}"),
              pytest.mark.usefixtures("one_torch_thread")]
CROPS = {"astronaut": (45, 37), "coffee": (29, 51), "rocket": (33, 23)}


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_golden_outputs_reproduce_on_torch(name):
    from alignvar_edge.runtimes.selftest import selftest
    r = selftest("torch", model=name, runs=1)
    assert r["result"] == "PASS", r
    assert r["tokens"]["overall"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_bundled_fp32_engines_match_torch_on_odd_size_photos(backend, pytestconfig, tmp_path):
    export = export_dir(BUNDLED, cache_root(pytestconfig))
    eng_dir = runtimes.build(export, backend, out=tmp_path / backend)
    with runtimes.load(eng_dir) as engine, runtimes.load("alignvar-tiny") as ref:
        for name, img in heldout_crops(CROPS).items():
            tiles, ys, xs = tiling.extract_tiles(img, engine.tile_size)
            ref_sr, ref_tok = ref.run(tiles)
            sr, tok = engine.run(tiles)
            per_tile = np.stack([np.all(a == b, axis=1) for a, b in zip(ref_tok, tok)]).all(axis=0)
            assert per_tile.all(), f"{name}: {int((~per_tile).sum())}/{len(tiles)} tiles differ"
            up = tiling.blend_tiles(sr, ys, xs, img.shape[:2], engine.tile_size, engine.scale)
            ref_up = tiling.blend_tiles(ref_sr, ys, xs, img.shape[:2], engine.tile_size, engine.scale)
            assert up.shape == (4 * img.shape[0], 4 * img.shape[1], 3)
            assert psnr(ref_up, up) >= 50.0
            assert tiling.seam_ratio(up, ys, xs, engine.tile_size, engine.scale) < 1.5


def test_a_torch_engine_says_the_batch_it_runs_its_contract_and_its_model_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`inspect` of a torch engine said `batch 1` (it runs 4 tiles per call), its manifest had no
    input contract, and its model was named by the path it was built from."""
    from alignvar_edge import runtimes
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified

    out = tmp_path / "tt"
    assert main(["build", "alignvar-tiny", "--target", "torch", "--out", str(out)]) == 0
    m = load_verified(out)
    assert m.model.name == "alignvar-tiny" and m.input_contract is not None
    assert m.input_contract["batch"] is None
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    with runtimes.load(out) as eng:
        assert f"batch any ({eng.preferred_batch} tiles per call by default)" in text, text
        assert m.input_contract["tile"] == eng.config.lr_size
    assert "model      alignvar-tiny" in text
    assert "batch dynamic" in text           # the input line: any batch is accepted


def test_a_torch_engine_ships_golden_outputs_and_its_selftest_passes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`build --target torch` tells the user to run `selftest --engine` on it, which failed: the torch
    engine carried no golden.safetensors (every other backend's build ships one)."""
    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified
    from alignvar_edge.runtimes.golden import GOLDEN_FILE

    out = tmp_path / "te"
    assert main(["build", "alignvar-tiny", "--target", "torch", "--out", str(out)]) == 0
    assert f"selftest --engine {out}" in capsys.readouterr().out
    assert GOLDEN_FILE in load_verified(out).files         # listed, so the engine still verifies
    assert main(["selftest", "--engine", str(out), "--runs", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "tokens    100.00% agree with golden" in text and "RESULT    PASS" in text, text


def test_a_torch_engine_carries_a_readme_whose_commands_and_python_call_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """README.md says every engine directory carries a README.md for whoever receives it; the torch
    engine had none. Its commands and its Python call, as printed, run on the engine."""
    import re
    import shlex

    from PIL import Image

    from alignvar_edge.cli import main
    from alignvar_edge.manifest import load_verified

    out = tmp_path / "te"
    assert main(["build", "alignvar-tiny", "--target", "torch", "--out", str(out)]) == 0
    assert "README.md" in load_verified(out).files                 # listed, so the engine still verifies
    text = (out / "README.md").read_text()
    assert text.startswith("# PyTorch engine: alignvar-tiny, fp32, built for cpu") and "needs PyTorch" in text
    assert "Not checked at build: run `alignvar-edge selftest --engine DIR`" in text
    Image.fromarray(np.full((20, 16, 3), 90, np.uint8)).save(tmp_path / "IN.png")
    monkeypatch.chdir(tmp_path)
    block = re.search(r"```\n(alignvar-edge selftest.*?)\n```", text, re.S)
    assert block is not None, text
    for line in block.group(1).splitlines():
        argv = [str(out) if a == "DIR" else a for a in shlex.split(line)[1:]] + ["--threads", "1"]
        assert main(argv) == 0, capsys.readouterr().err
    assert "RESULT    PASS" in capsys.readouterr().out and Image.open("OUT.png").size == (64, 80)
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None, text
    (tmp_path / "OUT.png").unlink()
    exec(snippet.group(1).replace('"DIR"', repr(str(out))), {})
    assert Image.open("OUT.png").size == (64, 80)


def test_an_engine_of_a_model_without_golden_outputs_says_how_to_make_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint with no golden.safetensors builds an engine with none; selftest --engine then
    names that checkpoint and the command that makes them, not 'rebuild it with this version'
    (which would build the same engine again)."""
    from alignvar_edge.cli import main
    from alignvar_edge.model import AlignVAR, AlignVARConfig

    ckpt = tmp_path / "ck"
    AlignVAR(AlignVARConfig.from_preset("micro")).eval().save_pretrained(ckpt)
    out = tmp_path / "te"
    assert main(["build", str(ckpt), "--target", "torch", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["selftest", "--engine", str(out), "--runs", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has none; make them beside its weights" in err[0], err
    assert f"python -m alignvar_edge.runtimes.golden {ckpt}" in err[0] and "rebuild it with this" not in err[0], err
