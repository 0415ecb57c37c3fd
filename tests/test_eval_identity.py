"""`eval --json` names the model it scored as a bench report names its reference (`model`: the
state-dict hash and where the weights were loaded from, a checkpoint's path or `(bundled)`), with
and without --ablations: the plain result named no model at all, and --ablations only the name typed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignvar_edge.cli import main
from alignvar_edge.images import save_image
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.checkpoint import save_pretrained, weights_sha256
from alignvar_edge.samples import sample_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_tile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    coffee = dict(sample_images("heldout"))["coffee"]
    save_image(folder / "tile.png", coffee[100:164, 200:264])      # one 64 px HR tile of alignvar-tiny
    return folder


def _scored_model(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["model"]


def test_eval_json_names_the_model_it_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = str(_one_tile_folder(tmp_path))
    bundled = AlignVAR.from_pretrained("alignvar-tiny")
    for extra in ([], ["--ablations"]):
        m = _scored_model(capsys, "alignvar-tiny", "--images", folder, *extra)
        assert (m["name"], m["source"]) == ("alignvar-tiny", "checkpoint alignvar-tiny (bundled)"), extra
        assert m["weights_sha256"] == weights_sha256(bundled), extra
        assert m["parameters"]["inference"] == bundled.parameter_report()["inference"]
        assert m["tile"] == {"lr": 16, "hr": 64, "scale": 4}
    # a checkpoint given by a relative path: named by its absolute path, as bench's reference is
    torch.manual_seed(0)
    save_pretrained(AlignVAR(AlignVARConfig.from_preset("micro")), tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    m = _scored_model(capsys, "ckpt", "--images", folder, "--ablations")
    assert (m["name"], m["source"]) == ("ckpt", f"checkpoint {tmp_path / 'ckpt'}")
    assert m["weights_sha256"] == weights_sha256(AlignVAR.from_pretrained(str(tmp_path / "ckpt")))
