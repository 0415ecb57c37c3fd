"""`eval` states what the figures rest on: every stage's steps, batch and training images, following
--init back to the first stage (as recorded when each stage started from it), and says where an
earlier stage's record is not known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photos(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def _train(*argv: str) -> None:
    assert cli.main(["train", *argv, "--warmup", "0", "--save-every", "1000"]) == 0


def _eval(checkpoint: str, report: Path, capsys) -> tuple[str, dict]:
    capsys.readouterr()
    assert cli.main(["eval", checkpoint, "--max-side", "64", "--json", str(report)]) == 0
    return capsys.readouterr().out, json.loads(report.read_text())["trained"]


def test_eval_states_every_stage_of_the_lineage_from_where_the_runs_were_trained(
        tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)                       # relative --images and --init, as a user types them
    _photos(work / "mine")
    _train("vqvae", "--preset", "micro", "--images", "mine", "--out", "runs/vq", "--steps", "3", "--batch", "2")
    _train("decoder", "--init", "runs/vq/final", "--latent", "zero", "--out", "runs/dec", "--steps", "2",
           "--batch", "3")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)                  # eval from another folder still finds the earlier stage
    out, trained = _eval(str(work / "runs/dec/final"), tmp_path / "dec.json", capsys)
    assert trained == {"stage": "decoder", "steps": 2, "planned_steps": 2, "batch": 3, "images": "builtin",
                       "latent": "zero",
                       "init": {"checkpoint": str(work / "runs/vq/final"), "stage": "vqvae", "steps": 3,
                                "planned_steps": 3, "batch": 2, "images": str(work / "mine")}}
    assert out.startswith(
        f"{work / 'runs/dec/final'}: decoder stage (--latent zero) at step 2 of 2, batch 3, on the built-in sample "
        f"photographs\n  from {work / 'runs/vq/final'}: vqvae stage at step 3 of 3, batch 2, on --images "
        f"{work / 'mine'}\n"), out

    # the earlier run moved, and another trained where it was: the stage recorded what it started from
    (work / "runs/vq").rename(work / "runs/vq-moved")
    monkeypatch.chdir(work)
    _train("vqvae", "--preset", "micro", "--out", "runs/vq", "--steps", "1", "--batch", "1")
    out, moved = _eval(str(work / "runs/dec/final"), tmp_path / "moved.json", capsys)
    assert moved == trained
    # a run saved before stages recorded their --init (its training.json without it): looked up, said so
    record = work / "runs/dec/final/training.json"
    made = json.loads(record.read_text())
    del made["init_lineage"]
    record.write_text(json.dumps(made))
    (work / "runs/vq").rename(work / "runs/vq-second")
    out, trained = _eval(str(work / "runs/dec/final"), tmp_path / "gone.json", capsys)
    assert trained["init"] == {"checkpoint": str(work / "runs/vq/final"), "record": "not found"}
    assert f"  from {work / 'runs/vq/final'}: its training record was not found" in out, out


def test_eval_of_the_bundled_model_states_its_budget_and_data(tmp_path: Path, capsys) -> None:
    out, trained = _eval("alignvar-tiny", tmp_path / "tiny.json", capsys)
    assert trained == {"stage": "transformer", "steps": 600, "batch": 12, "images": "builtin",
                       "init": {"checkpoint": "runs/default/vqvae/final", "record": "not found"}}
    assert out.startswith("alignvar-tiny: transformer stage at step 600, batch 12, on the built-in sample "
                          "photographs\n  from runs/default/vqvae/final: its training record was not found"), out


def test_a_resumed_stage_keeps_the_lineage_it_started_from(tmp_path: Path, monkeypatch, capsys) -> None:
    """The lineage was looked up again at every save: a run resumed after another VQ-VAE was trained
    at its --init path recorded that one."""
    monkeypatch.chdir(tmp_path)
    _train("vqvae", "--preset", "micro", "--out", "runs/vq", "--steps", "3", "--batch", "2")
    # stopped by its time budget after its first step, its state saved
    assert cli.main(["train", "decoder", "--init", "runs/vq/final", "--latent", "zero", "--out", "runs/dec",
                     "--steps", "3", "--batch", "1", "--warmup", "0", "--save-every", "1000", "--max-minutes",
                     "0.0001"]) == 0
    (tmp_path / "runs/vq").rename(tmp_path / "runs/vq-first")
    _train("vqvae", "--preset", "micro", "--out", "runs/vq", "--steps", "1", "--batch", "1")
    assert cli.main(["train", "decoder", "--init", "runs/vq/final", "--latent", "zero", "--out", "runs/dec",
                     "--steps", "3", "--batch", "1", "--warmup", "0", "--save-every", "1000", "--resume"]) == 0
    _, trained = _eval(str(tmp_path / "runs/dec/final"), tmp_path / "dec.json", capsys)
    assert trained["steps"] == 3 and (trained["init"]["steps"], trained["init"]["batch"]) == (3, 2), trained


def test_a_stage_resumed_from_another_folder_names_the_folders_it_used(tmp_path: Path, monkeypatch, capsys) -> None:
    """Relative --init and --images of a --resume run elsewhere were joined to the folder the run
    started in (RUN/run.json's), naming folders that do not exist."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _photos(work / "mine")
    _train("vqvae", "--preset", "micro", "--images", "mine", "--out", "runs/vq", "--steps", "1", "--batch", "2")
    # stopped by its time budget after its first step, then resumed from the parent folder
    assert cli.main(["train", "decoder", "--init", "runs/vq/final", "--latent", "zero", "--images", "mine", "--out",
                     "runs/dec", "--steps", "2", "--batch", "1", "--warmup", "0", "--max-minutes", "0.0001"]) == 0
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "decoder", "--init", "work/runs/vq/final", "--latent", "zero", "--images", "work/mine",
                     "--out", "work/runs/dec", "--steps", "2", "--batch", "1", "--warmup", "0", "--resume"]) == 0
    monkeypatch.chdir(work)
    out, trained = _eval("runs/dec/final", tmp_path / "dec.json", capsys)
    assert (trained["steps"], trained["images"]) == (2, str(work / "mine")), trained
    assert trained["init"]["checkpoint"] == str(work / "runs/vq/final") and trained["init"]["stage"] == "vqvae"
    assert out.startswith(f"runs/dec/final: decoder stage (--latent zero) at step 2 of 2, batch 1, on --images "
                          f"{work / 'mine'}\n  from {work / 'runs/vq/final'}: vqvae stage"), out
