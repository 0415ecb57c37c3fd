"""Artifacts whose checkpoint moved: the bundled model recorded by name (or recognised by its
content where an older build recorded its install path), and a moved checkpoint named as gone."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alignvar_edge.cli import main as cli
from alignvar_edge.manifest import read_manifest
from alignvar_edge.model.checkpoint import PRETRAINED_DIR, checkpoint_source
from alignvar_edge.runtimes.artifacts import source_checkpoint

BUNDLED_DIR = PRETRAINED_DIR / "alignvar-tiny"


def _torch_engine(ckpt: Path, out: Path) -> Path:
    assert cli(["build", str(ckpt), "--target", "torch", "--out", str(out)]) == 0
    return out


def test_the_bundled_model_reached_by_its_folder_is_recorded_by_name() -> None:
    # what `build alignvar-tiny --target torch` (and coreml) hands on: the name resolved to its folder
    source = checkpoint_source(BUNDLED_DIR, hashed=False)
    assert (source.kind, source.name, source.reference) == ("bundled", "alignvar-tiny", "alignvar-tiny")


def test_an_engine_that_recorded_the_bundled_model_at_a_gone_path_finds_it_by_content(tmp_path: Path) -> None:
    # an older build recorded the bundled model as a checkpoint at the install path: a copy of the
    # bundled folder, then removed, is that manifest as a reinstall or another machine sees it
    copy = tmp_path / "old-site" / "alignvar-tiny"
    shutil.copytree(BUNDLED_DIR, copy)
    engine = _torch_engine(copy, tmp_path / "torch")
    assert read_manifest(engine).source.kind == "checkpoint"
    shutil.rmtree(copy.parent)
    assert source_checkpoint(read_manifest(engine)) == BUNDLED_DIR
    assert cli(["compare", str(engine), "--limit", "1", "--max-size", "48"]) == 0


def test_the_bundled_model_is_recognised_by_its_files_as_they_are_now(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Its SHA-256s were kept for the process: a bundled model changed in place (a reinstall of
    another version) was still recognised by the content it no longer had."""
    from alignvar_edge.model import checkpoint
    install = tmp_path / "pretrained"
    shutil.copytree(BUNDLED_DIR, install / "alignvar-tiny")
    monkeypatch.setattr(checkpoint, "PRETRAINED_DIR", install)
    recorded = checkpoint_source(BUNDLED_DIR).sha256
    assert checkpoint.bundled_by_content(recorded) == "alignvar-tiny"
    config = install / "alignvar-tiny" / "config.json"
    config.write_text(config.read_text().replace("{", '{"edited": 1, ', 1))
    assert checkpoint.bundled_by_content(recorded) is None


def test_a_moved_checkpoint_is_named_as_gone_with_the_way_on(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ck"
    shutil.copytree(BUNDLED_DIR, ckpt)
    (ckpt / "config.json").write_text((ckpt / "config.json").read_text() + "\n")   # not the bundled model's
    engine = _torch_engine(ckpt, tmp_path / "torch")
    moved = ckpt.rename(tmp_path / "ck-renamed")
    capsys.readouterr()
    assert cli(["compare", str(engine), "--limit", "1", "--max-size", "48"]) == 2
    err = capsys.readouterr().err
    assert f"'{ckpt}'" in err and "no longer exists" in err and "--reference" in err
    assert "does not name" not in err
    assert cli(["build", str(engine), "--target", "torch", "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert f"'{ckpt}'" in err and "no longer exists" in err and "where it is now" in err
    # bench says it as compare does (it took the engine's name, then said it could not tell)
    assert cli(["bench", str(engine), "--out", str(tmp_path / "bench.json"), "--runs", "1", "--tiles", "1",
                "--image-size", "0", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"'{ckpt}'" in err and "no longer exists" in err and "--reference" in err
    # the way on works as printed
    assert cli(["compare", str(engine), "--limit", "1", "--max-size", "48", "--reference", str(moved)]) == 0


def _train(out: Path, stage: str, steps: int, **kw: object) -> None:
    from alignvar_edge.model import AlignVARConfig
    from alignvar_edge.train.trainer import TrainOptions, make_batches, train
    base: dict = dict(preset="micro", batch=2, lr=3e-3, warmup=1, log_every=1, save_every=1, progress=False)
    train(TrainOptions(stage=stage, out=out, steps=steps, **{**base, **kw}),
          make_batches(None, AlignVARConfig.from_preset("micro"), 2, 0))


@pytest.mark.filterwarnings("ignore:--warmup .* is not shorter than --steps")
def test_resume_finds_a_renamed_init_by_its_content(tmp_path: Path) -> None:
    import json

    from alignvar_edge.errors import InputError, OutputExistsError
    _train(tmp_path / "vqA", "vqvae", 1)
    _train(tmp_path / "tf", "transformer", 1, init=str(tmp_path / "vqA" / "final"))
    (tmp_path / "vqA").rename(tmp_path / "vqB")
    _train(tmp_path / "tf", "transformer", 2, init=str(tmp_path / "vqB" / "final"), resume=True)
    assert json.loads((tmp_path / "tf" / "final" / "training.json").read_text())["steps"] == 2
    # other content under the new name is still another option
    _train(tmp_path / "vqC", "vqvae", 1, seed=1)
    with pytest.raises(OutputExistsError, match="started with --init"):
        _train(tmp_path / "tf", "transformer", 3, init=str(tmp_path / "vqC" / "final"), resume=True)
    # a run that did not record its --init's content (older versions): the gone path and the way on
    run_file = tmp_path / "tf" / "run.json"
    run = json.loads(run_file.read_text())
    del run["init_sha256"]
    run_file.write_text(json.dumps(run))
    with pytest.raises(InputError, match=f"no longer at '{tmp_path / 'vqA' / 'final'}'.*put it back there"):
        _train(tmp_path / "tf", "transformer", 3, init=str(tmp_path / "vqB" / "final"), resume=True)


@pytest.mark.filterwarnings("ignore:--warmup .* is not shorter than --steps")
def test_init_is_hashed_once_with_ctrl_c_acting_and_not_again_on_a_resume_from_the_same_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from alignvar_edge.train import trainer
    # SIGINT's handler while --init is hashed: a stop held around it (a multi-GB checkpoint) is a swapped one
    handlers = []
    hash_init = trainer.checkpoint_source

    def noting_the_handler(path: str, hashed: bool = True) -> object:
        handlers.append(signal.getsignal(signal.SIGINT))
        return hash_init(path, hashed)

    _train(tmp_path / "vq", "vqvae", 1)
    monkeypatch.setattr(trainer, "checkpoint_source", noting_the_handler)
    _train(tmp_path / "tf", "transformer", 1, init=str(tmp_path / "vq" / "final"))
    assert handlers == [signal.getsignal(signal.SIGINT)]
    _train(tmp_path / "tf", "transformer", 2, init=str(tmp_path / "vq" / "final"), resume=True)
    assert len(handlers) == 1         # the path it started from: nothing to find by content


def _as_an_older_build(engine: Path) -> Path:
    """The engine as a version before golden outputs shipped wrote it: no golden file, no record of one."""
    from alignvar_edge.manifest import write_manifest
    m = read_manifest(engine)
    (engine / "golden.safetensors").unlink(missing_ok=True)
    m.extra.pop("golden", None)
    write_manifest(engine, m)
    return engine


def test_selftest_checks_an_older_torch_engine_of_the_bundled_model_against_its_golden_outputs(
        tmp_path: Path) -> None:
    from alignvar_edge.runtimes.selftest import selftest_engine
    site = tmp_path / "old-site" / "alignvar-tiny"      # the install path an older build recorded
    shutil.copytree(BUNDLED_DIR, site)
    engine = _as_an_older_build(_torch_engine(site, tmp_path / "torch"))
    report = selftest_engine(engine, runs=1, threads=1)
    assert report["result"] == "PASS"
    assert report["golden_file"] == str(BUNDLED_DIR / "golden.safetensors")


def test_selftest_of_a_torch_engine_without_golden_outputs_says_how_to_rebuild_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ck"
    shutil.copytree(BUNDLED_DIR, ckpt)
    (ckpt / "config.json").write_text((ckpt / "config.json").read_text() + "\n")   # not the bundled model's
    engine = _as_an_older_build(_torch_engine(ckpt, tmp_path / "torch"))
    capsys.readouterr()
    assert cli(["selftest", "--engine", str(engine), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"`alignvar-edge build {ckpt} --target torch`" in err
    # a torch engine is PyTorch itself, and the host tools are installed here: neither is offered
    assert "--backend onnxruntime" not in err and "pip install" not in err
