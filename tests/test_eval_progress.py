"""eval says how far it has got, a line per image as upscale does, and points to --max-side before
scoring large photographs (under half a minute per 256 tiles at one thread, with no line otherwise)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignvar_edge.bench.evaluate import evaluate
from alignvar_edge.cli import main
from alignvar_edge.images import save_image
from alignvar_edge.samples import sample_images


def test_eval_says_a_line_per_image_and_no_hint_for_small_ones(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "coffee.png", coffee[100:228, 200:328])
    save_image(folder / "wide.png", coffee[:64, :192])
    assert main(["eval", "alignvar-tiny", "--images", str(folder), "--json"]) == 0
    err = capsys.readouterr().err
    assert "coffee.png (1/2): 128x128 px, 4 tiles\n" in err and "wide.png (2/2): 192x64 px, 3 tiles\n" in err, err
    assert "--max-side" not in err


def test_eval_of_a_large_photograph_points_to_max_side_before_the_work(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    save_image(folder / "big.png", np.full((1100, 1100, 3), 0.5, np.float32))      # 17 x 17 HR tiles of 64 px
    p = subprocess.Popen([sys.executable, "-m", "alignvar_edge", "eval", "alignvar-tiny", "--images", str(folder)],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.stderr is not None
    try:
        lines = []
        for line in p.stderr:                      # the hint and the first image's line come before its work
            lines.append(line)
            if line.startswith("big.png (1/1)"):
                break
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    assert lines[-2:] == ["289 tiles of 64 px to score in 1 image(s) (256 take alignvar-tiny under half a minute "
                          "at one thread); --max-side 256 scores the centre 256x256 px of each\n",
                          "big.png (1/1): 1088x1088 px, 289 tiles\n"], lines


class _Stop(Exception):
    """Raised by the log at an image's first line: the hint has been said, the work need not run."""


def _hint_for(model, name: str, side: int) -> str:
    said: list[str] = []

    def log(line: str) -> None:
        said.append(line)
        if line.startswith("big ("):
            raise _Stop
    with pytest.raises(_Stop):
        evaluate(model, [("big", np.full((side, side, 3), 0.5, np.float32))], log=log, name=name)
    return said[0]


def test_the_hint_names_the_model_evaluated_and_gives_tiny_s_time_only_to_tiny() -> None:
    """The time of 256 tiles was measured on the `tiny` preset: a tiny-sized checkpoint is named with
    it, another model is named with its preset instead of being given tiny's time."""
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    tiny = AlignVAR(AlignVARConfig.from_preset("tiny")).eval()
    assert _hint_for(tiny, "runs/mine/final", 1100) == (
        "289 tiles of 64 px to score in 1 image(s) (256 take runs/mine/final under half a minute at one "
        "thread); max_side=256 scores the centre 256x256 px of each")
    micro = AlignVAR(AlignVARConfig.from_preset("micro")).eval()
    assert _hint_for(micro, "runs/small/final", 550) == (
        "289 tiles of 32 px to score in 1 image(s) (256 take alignvar-tiny under half a minute at one "
        "thread; runs/small/final is a 'micro' model); max_side=128 scores the centre 128x128 px of each")
