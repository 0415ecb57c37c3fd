"""Engines of graphs with VARSR's refiner, whose second input is the sampler's noise: every verb that
calls an engine feeds it the fixed draw `upscale` feeds (`Engine.feeds_for`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignvar_edge import runtimes
from alignvar_edge.errors import InputError


@pytest.fixture(scope="module")
def refiner_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `micro` model with a refiner: its checkpoint (ckpt/) and its batch-2 export (exp/)."""
    import torch

    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    torch.manual_seed(0)
    cfg = AlignVARConfig.from_preset("micro", refiner_width=16, refiner_depth=1, refiner_steps=2)
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


def test_bench_times_a_refiner_engine_as_upscale_runs_it(refiner_export: Path, tmp_path: Path) -> None:
    from alignvar_edge.cli import main as cli
    out = tmp_path / "bench.json"
    assert cli(["bench", f"ort=onnxruntime:{refiner_export}", "--runs", "1", "--warmup", "0", "--tiles", "2",
                "--image-size", "0", "--profile-runs", "0", "--threads", "1", "--reference", str(refiner_export.parent / "ckpt"),
                "--out", str(out)]) == 0
    rows = {r["label"]: r for r in json.loads(out.read_text())["engines"]}
    assert rows["ort"]["status"] == "ok" and rows["ort"]["latency"]["per_tile_ms"]["p50"] > 0
