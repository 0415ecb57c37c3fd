"""The fidelity search on the bundled tiny model (slow: export ~2 min, search ~4 min on 2 cores).

    .venv/bin/python -m pytest -m slow tests/test_quantize_bundled.py
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _runtime_fixtures import cache_root, cached_export

from alignvar_edge.manifest import load_verified
from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_export(pytestconfig: pytest.Config) -> Path:
    from alignvar_edge.model.checkpoint import PRETRAINED_DIR

    weights = PRETRAINED_DIR / "alignvar-tiny" / "model.safetensors"
    if not weights.is_file():
        pytest.skip("the bundled alignvar-tiny checkpoint is not installed")
    key = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    from alignvar_edge.model.alignvar import AlignVAR
    return cached_export(cache_root(pytestconfig, "alignvar-quantize"), f"tiny-{key}",
                         lambda: AlignVAR.from_pretrained("alignvar-tiny"))


def test_search_reaches_the_target_on_the_bundled_tiny_model(tiny_export: Path, tmp_path: Path) -> None:
    import numpy as np

    from alignvar_edge.quantize.calibration.sets import TileSplit
    from alignvar_edge.quantize.calibration.tiles import tile_pairs
    from alignvar_edge.quantize.sensitivity import Evaluator
    from alignvar_edge.model.config import AlignVARConfig

    out = quantize_artifact(tiny_export, tmp_path / "int8", QuantizeOptions())
    m = load_verified(out)
    par = m.parity
    assert par["target_met"]
    assert par["validation"]["token_agreement"] >= 0.99 and par["validation"]["psnr_drop"] <= 0.1 + 1e-3
    # and it holds up on photographs the search never saw
    cfg = AlignVARConfig.from_dict(m.config)
    lr, hr = tile_pairs(cfg, 24, seed=1, split="heldout")
    ev = Evaluator(str(tiny_export / "model.onnx"), TileSplit(lr, hr, tuple(map(str, range(len(lr))))))
    f = ev.evaluate(str(out / "model.onnx"))
    assert f.token_agreement >= 0.98 and f.psnr_drop <= 0.1
    assert np.isfinite(f.psnr_y_hr) and m.extra["bytes"]["ratio"] < 0.8
