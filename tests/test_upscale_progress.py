"""upscale says what a large image will take before its work, and in a log (stderr not a terminal:
a script, nohup, cron, CI) a line as each image starts and how far a long one has got."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import progress
from alignvar_edge.cli import main
from alignvar_edge.runtimes import commands

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the micro export: LR tiles of 8 px overlapping by 2, one tile a call: 40x40 px is 7 x 7 tiles
START = "img.png (1/1): 40x40 -> 160x160 (0.0256 MP), 49 tiles in 49 calls"


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    return tmp_path / "img.png"


def _upscale(export: Path, image: Path, *flags: str) -> None:
    out = image.with_name("out.png")
    assert main(["upscale", str(image), str(out), "--engine", str(export), "--force", *flags]) == 0


def test_a_log_hears_when_an_image_starts_and_how_far_it_has_got(export, image, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)     # a line at every call, not every minute
    _upscale(export, image)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == START, lines
    assert lines[-1].startswith("upscaled 1 image(s) x4 with onnxruntime"), lines
    done = [int(m.group(1)) for line in lines[1:-1]
            if (m := re.fullmatch(r"img\.png \(1/1\): (\d+)/49 tiles, \d+ s in, about \d+ s left", line))]
    assert done == list(range(1, 49)) and len(lines) == 50, lines       # one a call; the end is the summary's


def test_quiet_in_a_log_says_only_the_end(export, image, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    _upscale(export, image, "--quiet")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("upscaled 1 image(s)"), lines


def test_a_big_image_is_announced_and_timed_on_its_first_calls(export, image, capsys, monkeypatch):
    """The estimate is what this run's clock measured. Here a clock that moves 0.5 s at each reading: read
    once as the image starts, twice a call (the log's pace, the estimate), so 1 s a call from the end
    of the first (1 s in): 1 + 48 x 1 = 49 s for the image, 46 s left after the third call."""
    readings = iter(range(1_000_000))
    clock = SimpleNamespace(monotonic=lambda: next(readings) / 2, perf_counter=lambda: 0.0)
    monkeypatch.setattr(commands, "time", clock)
    monkeypatch.setattr(progress, "time", clock)
    monkeypatch.setattr(commands, "BIG_IMAGE_TILES", 49)
    monkeypatch.setattr(commands, "ESTIMATE_AFTER_CALLS", 2)
    _upscale(export, image)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:1] == [START], lines
    assert "img.png (1/1): 1.00 s per call (calls 2 to 3): about 49 s for its 49 calls, 46 s left" in lines, lines
    _upscale(export, image, "--quiet")          # --quiet: a big image's size is still said, not its pace
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == START and len(lines) == 2 and lines[1].startswith("upscaled 1 image(s)"), lines
    monkeypatch.setattr(commands, "BIG_IMAGE_TILES", 50)
    _upscale(export, image, "--quiet")
    assert START not in capsys.readouterr().err


def test_on_a_terminal_the_bar_alone_shows_a_small_image(export, image, capsys, monkeypatch):
    monkeypatch.setattr(progress, "in_log", lambda: False)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    _upscale(export, image)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("upscaled 1 image(s)"), lines
