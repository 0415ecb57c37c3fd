"""A checkpoint is input: its config is typed and bounded and its weights finite before use."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from alignvar_edge.cli import main as cli
from alignvar_edge.errors import CheckpointError
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.checkpoint import PRETRAINED_DIR


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    out = tmp_path / "ck"
    shutil.copytree(PRETRAINED_DIR / "alignvar-tiny", out)
    return out


def _poison(ckpt: Path, name: str, value: float) -> None:
    sd = load_file(str(ckpt / "model.safetensors"))
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] = value
    save_file(sd, str(ckpt / "model.safetensors"))


@pytest.mark.parametrize("name,value", [("head.weight", float("nan")),
                                        ("vae.decoder.conv_out.bias", float("inf"))])
def test_non_finite_weight_is_refused_by_name(ckpt: Path, name: str, value: float,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _poison(ckpt, name, value)
    with pytest.raises(CheckpointError, match=f"'{name}' holds 1 NaN/Inf"):
        load_pretrained(ckpt)
    assert cli(["info", str(ckpt)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0]


@pytest.mark.parametrize("change,says", [({"width": 1048576}, "width must lie in"),
                                         ({"depth": "two"}, "depth must be int"),
                                         ({"patch_nums": []}, "patch_nums must have 1 to 64"),
                                         ({"width": 256}, "do not match its config.json")])
def test_bad_config_is_refused_before_allocating(ckpt: Path, change: dict, says: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(change)
    (ckpt / "config.json").write_text(json.dumps(cfg))

    def no_tensors(*_a, **_k):
        raise AssertionError("tensors were read before the config and the header were checked")

    monkeypatch.setattr("safetensors.torch.load_file", no_tensors)      # imported where it is used
    with pytest.raises(CheckpointError, match=says) as e:
        load_pretrained(ckpt)
    assert str(ckpt) in str(e.value)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_half_checkpoint_names_the_missing_file_and_where_it_comes_from(
        ckpt: Path, missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    (ckpt / missing).unlink()
    assert cli(["info", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{ckpt}' has no {missing}" in err[0] and "copy the missing one" in err[0]


@pytest.mark.parametrize("saved", ["final", "latest"])
def test_a_training_run_folder_names_its_checkpoint(ckpt: Path, tmp_path: Path, saved: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"                 # a run still training has only latest/, a finished one final/
    run.mkdir()
    shutil.copytree(ckpt, run / saved)
    assert cli(["eval", str(run), "--max-side", "64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"this looks like a training run: pass '{run / saved}'" in err[0]


def test_save_pretrained_stopped_while_replacing_keeps_the_old_checkpoint(ckpt: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from alignvar_edge.model import checkpoint
    from alignvar_edge.model.checkpoint import save_pretrained
    model = load_pretrained(ckpt)
    out = tmp_path / "run" / "final"
    save_pretrained(model, out, extra={"steps": 1})
    real = os.replace
    staged: list[Path] = []

    def ctrl_c_on_publish(src, dst):
        if Path(dst) == out and not staged:       # the new one taking the old one's place (not the old one back)
            staged.append(Path(src))
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", ctrl_c_on_publish)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(model, out, extra={"steps": 2}, overwrite=True)
    monkeypatch.undo()
    assert json.loads((out / "training.json").read_text()) == {"steps": 1}
    load_pretrained(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["final"]


def test_a_sigint_between_the_renames_of_save_pretrained_keeps_the_new_checkpoint(
        ckpt: Path, tmp_path: Path, sigint_after_moving) -> None:
    """overwrite=True moves the old checkpoint aside, then the new one in: a real Ctrl-C right after
    the first rename waits for the second, so the new checkpoint is in place and the old one gone
    (it left no checkpoint at all: the new one deleted as unfinished, the old one hidden)."""
    from alignvar_edge.model.checkpoint import save_pretrained
    model = load_pretrained(ckpt)
    out = tmp_path / "run" / "final"
    save_pretrained(model, out, extra={"steps": 1})
    sigint_after_moving(out)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(model, out, extra={"steps": 2}, overwrite=True)
    assert json.loads((out / "training.json").read_text()) == {"steps": 2}
    load_pretrained(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["final"]


def test_save_pretrained_overwrite_replaces_only_a_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    from alignvar_edge.model.checkpoint import CHECKPOINT_FILES, GOLDEN_FILE
    assert GOLDEN_FILE in CHECKPOINT_FILES            # make_golden writes it beside the weights
    model = load_pretrained(ckpt)
    # someone's folder: overwrite=True must not delete it to put a checkpoint there
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "chapter1.tex").write_text("mine")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        model.save_pretrained(str(theirs), overwrite=True)
    assert (theirs / "chapter1.tex").read_text() == "mine"
    # a checkpoint with someone's file in it: refused, the file kept
    (ckpt / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="notes.txt"):
        model.save_pretrained(str(ckpt), overwrite=True)
    assert (ckpt / "notes.txt").read_text() == "mine"
    # a checkpoint holding only what alignvar-edge writes (golden outputs included): replaced
    (ckpt / "notes.txt").unlink()
    model.save_pretrained(str(ckpt), overwrite=True)
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]
    # a file where the folder would go
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        model.save_pretrained(str(tmp_path / "afile"), overwrite=True)


def _edit_config(ckpt: Path, **change: object) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    for key, value in change.items():
        if key.startswith("degradation_"):
            cfg["degradation"][key.removeprefix("degradation_")] = value
        else:
            cfg[key] = value
    (ckpt / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("change,says", [
    ({"hcc_weight": -2}, "hcc_weight must be >= 0"),
    ({"cond_drop": 2}, "cond_drop must be a probability in [0, 1], got 2"),
    ({"vq_beta": -1}, "vq_beta must be >= 0"),
    ({"norm_eps": 0}, "norm_eps must be > 0"),
    ({"degradation_scale": 8}, "degradation.scale 8 differs from the model's scale 4"),
    ({"degradation_jpeg_quality": [0, 200]}, "degradation: jpeg_quality must satisfy 1 <= low"),
    ({"degradation_blur_prob": 7}, "degradation: blur_prob must be a probability in [0, 1], got 7"),
    ({"degradation_blur_prob": "7"}, "degradation: blur_prob must be a probability in [0, 1], got '7'"),
    ({"degradation_noise_sigma": 5}, "degradation: noise_sigma must be a list, got 5"),
    ({"degradation_bogus": 1}, "degradation: unknown degradation setting(s) ['bogus']"),
])
@pytest.mark.parametrize("verb", [["info", "--no-flops"], ["eval", "--max-side", "64"],
                                  ["train", "transformer", "--steps", "1", "--out", "RUN", "--init"]])
def test_config_json_values_the_flags_refuse_are_refused_on_load(
        ckpt: Path, tmp_path: Path, change: dict, says: str, verb: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A config.json value the model or training cannot use (the bounds of the flags of the same
    names, a degradation block at another scale) is one line naming the file and the key, exit 2,
    for every verb that loads the checkpoint, before any work."""
    _edit_config(ckpt, **change)
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in verb]
    assert cli([*argv, str(ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ckpt / 'config.json'}: {says}" in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_config_at_its_bounds_loads(ckpt: Path) -> None:
    _edit_config(ckpt, hcc_weight=0, cond_drop=1, vq_beta=0, degradation_blur_prob=0)
    model = load_pretrained(ckpt)
    assert (model.config.hcc_weight, model.config.cond_drop) == (0, 1)


def test_overrides_pass_the_same_validation_naming_the_key() -> None:
    """The trainer's overrides (a preset's or an --init checkpoint's config with changes) go through
    AlignVARConfig.validate too, and the error carries the key so a caller can name its flag."""
    from alignvar_edge.model.config import AlignVARConfig, ConfigValueError

    base = AlignVARConfig.from_preset("micro")
    for change, key in (({"cond_drop": 5.0}, "cond_drop"), ({"hcc_weight": -0.1}, "hcc_weight"),
                        ({"hcc_scale_weights": (1.0, -1.0, 1.0, 1.0)}, "hcc_scale_weights"),
                        ({"bogus": 1}, "bogus")):
        for make in (lambda: base.replace(**change), lambda: AlignVARConfig.from_preset("micro", **change)):
            with pytest.raises(ConfigValueError) as e:
                make()
            assert e.value.key == key and key in e.value.detail


def test_a_pickle_named_model_safetensors_says_what_it_is_and_never_runs(ckpt: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"head.weight": Payload()}, ckpt / "model.safetensors")
    assert cli(["info", "--no-flops", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a PyTorch (pickle) file, not safetensors" in err[0]
    assert "alignvar-edge import" in err[0] and not marker.exists()
    (ckpt / "model.safetensors").write_bytes(b"")
    assert cli(["info", "--no-flops", str(ckpt)]) == 2
    assert "model.safetensors is empty (0 bytes)" in capsys.readouterr().err


@pytest.mark.parametrize("text,says", [
    ('{"depth": ' + "9" * 400 + "}", "depth must lie in [1, 256], got 9999999999999999... (400 characters)"),
    ('{"rope_base": ' + "9" * 400 + "}", "rope_base must be float, got 9999999999999999... (400 characters)"),
    ('{"depth": ' + "9" * 5000 + "}", "not a valid AlignVAR config: it holds an integer of more than 4300 digits"),
    ("[" * 100000 + "]" * 100000, "not a valid AlignVAR config: it is nested too deeply to read")])
def test_a_hostile_config_json_is_one_line(ckpt: Path, text: str, says: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A config.json nested 100,000 deep, or holding a huge integer (one a float cannot hold, or
    longer than Python converts), gave a RecursionError / OverflowError / ValueError traceback."""
    if text.startswith("{"):
        cfg = json.loads((ckpt / "config.json").read_text())
        key = text[2:text.index('"', 2)]
        text = json.dumps(cfg).replace(f'"{key}": {json.dumps(cfg[key])}', text[1:-1])
        assert len(text) > 400
    (ckpt / "config.json").write_text(text)
    capsys.readouterr()
    assert cli(["info", str(ckpt), "--no-flops"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ckpt / 'config.json'}" in err[0] and says in err[0], err


@pytest.mark.parametrize("weights", ["theirs", "ours"])
def test_force_never_replaces_a_folder_of_someone_elses_config_and_weights(ckpt: Path, tmp_path: Path, weights: str,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    hf = tmp_path / "hf"                   # a Hugging Face snapshot: the same two file names, not ours
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    if weights == "theirs":
        save_file({"embeddings.weight": torch.ones(4, 4)}, str(hf / "model.safetensors"), metadata={"format": "pt"})
    else:                                  # our weights file copied in beside their config
        shutil.copy(ckpt / "model.safetensors", hf / "model.safetensors")
    before = {p.name: p.read_bytes() for p in hf.iterdir()}
    # import refuses before reading its inputs, so the upstream file need not exist
    assert cli(["import", "var", "--vae", str(tmp_path / "vae.pth"), "--out", str(hf), "--force"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "alignvar-edge did not write" in err[0] and "--force replaces only" in err[0]
    with pytest.raises(CheckpointError, match="overwrite=True replaces only checkpoints alignvar-edge wrote"):
        load_pretrained(ckpt).save_pretrained(str(hf), overwrite=True)
    assert {p.name: p.read_bytes() for p in hf.iterdir()} == before


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"stage": ' + "9" * 5000 + "}"])
def test_a_hostile_training_or_run_json_reads_as_no_record(ckpt: Path, text: str) -> None:
    """training.json and the run's run.json are read as jsonsafe reads them: one nested 100,000 deep
    (a RecursionError) or with an integer longer than Python converts is no record, not a traceback."""
    from alignvar_edge.manifest import RUN_FILE
    from alignvar_edge.model.checkpoint import checkpoint_source, training_lineage, training_record
    (ckpt.parent / RUN_FILE).write_text(text)               # the run folder the checkpoint sits in
    assert training_lineage(ckpt)["stage"] == "transformer"  # its cwd unknown: --images as recorded
    (ckpt / "training.json").write_text(text)
    assert training_record(ckpt) == {} and training_lineage(ckpt) == {}
    assert checkpoint_source(ckpt, hashed=False).kind == "checkpoint"
