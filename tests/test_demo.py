"""`alignvar-edge demo`, the README's main job on the bundled default, runs as `make demo` calls it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.cli import main
from alignvar_edge.model.bundled import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_writes_the_four_images_and_names_the_model_it_ran(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--size", "96"]) == 0
    said = capsys.readouterr().out
    assert f"with {DEFAULT_CHECKPOINT} (PyTorch, tiled)" in said, said
    sizes = {name: Image.open(out / f"{name}.png").size for name in ("lr", "sr", "bicubic", "hr")}
    assert sizes == {"lr": (24, 24), "sr": (96, 96), "bicubic": (96, 96), "hr": (96, 96)}
    sr, bic = (np.asarray(Image.open(out / f"{n}.png"), dtype=np.int16) for n in ("sr", "bicubic"))
    assert np.abs(sr - bic).max() > 0             # the model's image, not the bicubic one under its name
    for row in ("PSNR-Y  alignvar", "SSIM-Y  alignvar"):
        assert row in said
    # a second run into the same folder needs --force (what `make demo` passes)
    assert main(["demo", "--out", str(out), "--size", "96"]) == 2
    assert main(["demo", "--out", str(out), "--size", "96", "--force"]) == 0
