"""`compare`'s figures per engine over all its images, on stand-in engines with known tokens."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import runtimes
from alignvar_edge.cli import main
from alignvar_edge.errors import InputError
from alignvar_edge.runtimes.base import Engine
from alignvar_edge.runtimes.compare import compare_engines, format_summary

TILE, SCALE, SCALES = 8, 4, (1, 2)


class _Engine:
    """Tokens 0 everywhere; `flip` tiles (by call order) get token 1 at every position of scale 2."""

    def __init__(self, flip: frozenset[int] = frozenset()) -> None:
        self.flip, self.seen, self.closed = flip, 0, False
        # a backend that runs here: compare leaves out an engine whose backend cannot
        self.tile_size, self.scale, self.backend, self.device = TILE, SCALE, "onnxruntime", "cpu"
        self.config = SimpleNamespace(patch_nums=SCALES, has_refiner=False)
        self.refines = False           # no VARSR refiner: one reference for every engine
        self.metadata = SimpleNamespace(precision="int8")

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        n = len(tiles)
        sr = np.repeat(np.repeat(tiles, SCALE, axis=2), SCALE, axis=3)
        toks = [np.zeros((n, p * p), np.int64) for p in SCALES]
        for i in range(n):
            if self.seen + i in self.flip:
                toks[1][i] = 1
        self.seen += n
        return sr, toks

    def weights_sha256(self) -> None:          # records none: nothing to compare the reference by
        return None

    def close(self) -> None:
        self.closed = True


def test_tokens_overall_weighs_every_tile_of_every_image() -> None:
    """The summary states the token agreement over all tiles (what a quantization target is set in),
    not only the share of identical tiles: 1 flipped scale-2 map in 5 tiles is 4 of 25 tokens."""
    rng = np.random.default_rng(0)
    images = [("one", rng.random((TILE, TILE, 3), np.float32)),              # 1 tile
              ("four", rng.random((2 * TILE - 4, 2 * TILE - 4, 3), np.float32))]
    engine, reference = cast(Engine, _Engine(flip=frozenset({1}))), cast(Engine, _Engine())
    [res] = compare_engines([("q", engine)], reference, images, overlap=4)
    assert [im.tiles for im in res.images] == [1, 4]
    assert res.tokens_overall == pytest.approx(1 - 4 / 25) and res.tiles_identical == 4 / 5
    assert res.to_json()["tokens_overall"] == pytest.approx(1 - 4 / 25)
    assert "tiles identical 80.0%, tokens 84.00% agree" in format_summary(res)


def _folder(root: Path) -> Path:
    """Three readable photographs (two of the same name, in a subfolder) and one corrupt file."""
    rng = np.random.default_rng(1)
    (root / "sub").mkdir(parents=True)
    for name in ("a.png", "c.png", "sub/a.png"):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / name)
    (root / "b.png").write_bytes(b"not a png")
    return root


def test_compare_images_goes_past_a_file_it_cannot_read(tmp_path, monkeypatch, capsys) -> None:
    """One corrupt file in --images costs that file, not the run: it is named in one warning line
    and in the JSON, the others are compared (named by their path under the folder, so two files of
    one name in different subfolders stay apart), and --limit counts usable images."""
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _Engine())
    folder, report = _folder(tmp_path / "imgs"), tmp_path / "cmp.json"
    assert main(["compare", "q", "--reference", "ref", "--images", str(folder), "--json", str(report)]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warned) == 1 and "skipping 1 file(s)" in warned[0] and "b.png (" in warned[0]
    doc = json.loads(report.read_text())
    assert doc["images"] == ["a.png", "c.png", "sub/a.png"]
    assert [s["file"] for s in doc["skipped"]] == ["b.png"] and "not an image" in doc["skipped"][0]["reason"]
    assert [im["image"] for im in doc["engines"][0]["images"]] == ["a.png", "c.png", "sub/a.png"]
    assert main(["compare", "q", "--reference", "ref", "--images", str(folder), "--limit", "2",
                 "--json", str(report)]) == 0
    assert json.loads(report.read_text())["images"] == ["a.png", "c.png"]


def test_compare_json_records_the_versions_and_the_torch_threads_its_figures_came_from(tmp_path, monkeypatch) -> None:
    """The reference is PyTorch, whose results move with its thread count (by a level on a few
    pixels of an upscale at 1 or 2 threads) and version: the JSON names both, and the runtime that
    ran the engines."""
    import importlib.metadata

    import torch
    from alignvar_edge.manifest import SOURCE_TOOL, source_digest
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _Engine())
    report, threads = tmp_path / "cmp.json", torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["compare", "q", "--reference", "ref", "--images", str(_folder(tmp_path / "imgs")),
                     "--json", str(report)]) == 0
    finally:
        torch.set_num_threads(threads)
    doc = json.loads(report.read_text())
    assert doc["torch_threads"] == 2
    assert doc["tools"] == {"alignvar-edge": importlib.metadata.version("alignvar-edge"), SOURCE_TOOL: source_digest(),
                            "torch": torch.__version__, "numpy": np.__version__,
                            "onnxruntime": importlib.metadata.version("onnxruntime")}


def test_compare_images_with_no_readable_file_is_one_line_naming_them(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _Engine())
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"")
    (folder / "y.jpg").write_bytes(b"garbage")
    report = tmp_path / "cmp.json"
    assert main(["compare", "q", "--reference", "ref", "--images", str(folder), "--json", str(report)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "no usable images in --images" in err[0]
    assert "x.png (" in err[0] and "y.jpg (" in err[0]
    from alignvar_edge import __version__
    assert json.loads(report.read_text()) == {"alignvar_edge": __version__, "compare": ["q"], "result": "ERROR",
                                              "reason": err[0].split(": error: ")[1]}


def test_a_failed_rerun_replaces_the_json_report_and_every_engine_is_closed(tmp_path, monkeypatch, capsys) -> None:
    """A re-run that failed left the earlier run's --json FILE in place, read as current results;
    and the torch reference engine was never closed, on success or failure."""
    opened: list[_Engine] = []

    def load(*args, **kwargs) -> _Engine:
        opened.append(_Engine())
        return opened[-1]
    monkeypatch.setattr(runtimes, "load", load)
    folder, report = _folder(tmp_path / "imgs"), tmp_path / "cmp.json"
    assert main(["compare", "q", "--reference", "ref", "--images", str(folder), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["images"] == ["a.png", "c.png", "sub/a.png"]
    assert len(opened) == 2 and all(e.closed for e in opened)         # the engine and the reference
    capsys.readouterr()
    assert main(["compare", "q", "--reference", "ref", "--images", str(tmp_path / "gone"), "--json",
                 str(report)]) == 2
    doc = json.loads(report.read_text())
    assert doc["result"] == "ERROR" and doc["compare"] == ["q"] and "engines" not in doc
    assert doc["reason"] in capsys.readouterr().err
    assert len(opened) == 4 and all(e.closed for e in opened)


def test_compare_names_engines_of_one_folder_name_by_their_paths(tmp_path, monkeypatch) -> None:
    """runs/a/int8 and runs/b/int8 are two engines: their rows and JSON entries say which is which."""
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _Engine())
    folder, report = _folder(tmp_path / "imgs"), tmp_path / "cmp.json"
    engines = [str(tmp_path / "runs" / r / "int8") for r in ("a", "b")] + [str(tmp_path / "fp32")]
    assert main(["compare", *engines, "--reference", "ref", "--images", str(folder), "--limit", "1",
                 "--json", str(report)]) == 0
    assert [e["engine"] for e in json.loads(report.read_text())["engines"]] == [*engines[:2], "fp32"]


@pytest.mark.parametrize("attr, value, says", [("scale", 2, "x2, tile 8"), ("tile_size", 16, "tile 16"),
                                              ("config", SimpleNamespace(patch_nums=(1, 2, 4)), "scales (1, 2, 4)")])
def test_an_engine_of_another_model_is_refused_saying_both_models(attr, value, says) -> None:
    """An x2 engine against an x4 reference of the same tile was a numpy broadcast traceback; any
    mismatch is now one line naming the engine's model and the reference's, before any tile runs."""
    engine, reference = _Engine(), _Engine()
    setattr(engine, attr, value)
    image = [("one", np.zeros((TILE, TILE, 3), np.float32))]
    with pytest.raises(InputError, match=rf"engine q runs a different model \(.*{re.escape(says)}.*\) than the "
                                         r"reference \(x4, tile 8, scales \(1, 2\)\)"):
        compare_engines([("q", cast(Engine, engine))], cast(Engine, reference), image)
    assert reference.seen == 0


def test_compare_max_megapixels_limits_the_images_folder_and_nothing_else(tmp_path, monkeypatch, capsys) -> None:
    """The skip reason of a file over the limit (25 MP) says to raise --max-megapixels: compare has the flag,
    and without --images (the bundled photographs) it is refused rather than ignored."""
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _Engine())
    folder, report = _folder(tmp_path / "imgs"), tmp_path / "cmp.json"        # 10x12 px: 0.00012 MP
    argv = ["compare", "q", "--reference", "ref", "--images", str(folder), "--json", str(report)]
    assert main([*argv, "--max-megapixels", "0.0001"]) == 2                   # every file over it
    assert "over the 0.0001 MP limit" in capsys.readouterr().err
    assert main([*argv, "--max-megapixels", "0.001"]) == 0
    assert json.loads(report.read_text())["images"] == ["a.png", "c.png", "sub/a.png"]
    capsys.readouterr()
    assert main(["compare", "q", "--reference", "ref", "--max-megapixels", "50"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--max-megapixels limits the files of --images" in err[0], err


def test_the_reference_stops_with_the_last_engine_that_can_run() -> None:
    """An engine that turns out not to run here (its first call raises) is not compared on the
    images after it, and neither is the reference it alone needed: it ran on every image for nothing."""
    from alignvar_edge.errors import BackendUnavailableError

    class _Unavailable(_Engine):
        def run(self, tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
            raise BackendUnavailableError("needs a device that is not here")

    rng = np.random.default_rng(0)
    images = [(name, rng.random((TILE, TILE, 3), np.float32)) for name in ("one", "two", "three")]
    reference, said = _Engine(), []
    [res] = compare_engines([("gone", cast(Engine, _Unavailable()))], cast(Engine, reference), images,
                            progress=said.append)
    assert res.unavailable == "needs a device that is not here" and res.images == []
    assert reference.seen == 1 and said == ["gone: one (1 tiles)"]      # the first image's one tile only
