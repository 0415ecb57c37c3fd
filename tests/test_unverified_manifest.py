"""An engine whose manifest.json carries no content_sha256 (an older one, or one edited by hand
with the hash dropped) vouches for its files only: `selftest --engine` and `upscale --engine` say
so in the same line `inspect` gives, and keep their exit codes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import cli, runtimes

UNHASHED = ("manifest.json carries no content_sha256 (written by an older alignvar-edge, or edited by hand), so its "
            "own fields (model, parity, I/O) are unverified")


def _caution(engine: Path, source: Path) -> str:
    """The line said of `engine`, built from `source`: what is unverified, and the command that
    rebuilds it in place (a manifest cannot be re-created alone)."""
    return (f"{UNHASHED}: to be sure, rebuild it: `alignvar-edge build {source} --target onnxruntime --out {engine} "
            "--force`")


@pytest.fixture(scope="module")
def engine(micro_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(runtimes.build(micro_export, "onnxruntime", out=tmp_path_factory.mktemp("eng") / "ort", threads=1))


@pytest.fixture()
def unhashed(engine: Path, tmp_path: Path) -> Path:
    """A copy of the engine whose manifest lost its content hash (every file still matches)."""
    dst = tmp_path / "unhashed"
    shutil.copytree(engine, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    del doc["content_sha256"]
    (dst / "manifest.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return dst


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_inspect_says_it_in_its_verdict(unhashed: Path, micro_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "inspect", str(unhashed))
    assert rc == 0 and out.splitlines()[0].endswith(f"; but {_caution(unhashed, micro_export)}"), out


def test_the_rebuild_it_names_runs_and_replaces_the_engine(unhashed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command the caution names is one that works: it replaces the engine (--force takes an
    engine whose manifest lacks the hash: an older one of ours) with one whose manifest is hashed."""
    import shlex
    rc, out, _ = _run(capsys, "inspect", str(unhashed))
    command = out.splitlines()[0].split("`")[1]
    assert rc == 0 and command.startswith("alignvar-edge build "), out
    assert cli.main(shlex.split(command)[1:]) == 0
    assert "content_sha256" in json.loads((unhashed / "manifest.json").read_text())
    rc, out, _ = _run(capsys, "inspect", str(unhashed))
    assert rc == 0 and "unverified" not in out, out


def test_selftest_says_it_beside_its_result(unhashed: Path, engine: Path, micro_export: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    caution = _caution(unhashed, micro_export)
    report = tmp_path / "selftest.json"
    rc, out, err = _run(capsys, "selftest", "--engine", str(unhashed), "--runs", "1", "--threads", "1",
                        "--json", str(report))
    assert rc == 0, err                                   # PASS stays exit 0
    result = json.loads(report.read_text())
    assert result["result"] == "PASS" and result["manifest_unverified"] == caution
    rc, out, err = _run(capsys, "selftest", "--engine", str(unhashed), "--runs", "1", "--threads", "1")
    text = out.splitlines()
    assert rc == 0 and text[-2:] == [f"caution   {caution}", "RESULT    PASS (manifest unverified)"], out
    # an engine whose manifest records its hash: nothing said
    rc, out, err = _run(capsys, "selftest", "--engine", str(engine), "--runs", "1", "--threads", "1")
    assert rc == 0 and out.splitlines()[-1] == "RESULT    PASS" and "caution" not in out, out


def test_upscale_says_it_before_the_work(unhashed: Path, engine: Path, micro_export: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "in.png"
    Image.fromarray(np.full((12, 10, 3), 120, np.uint8)).save(image)
    rc, out, err = _run(capsys, "upscale", str(image), str(tmp_path / "a.png"), "--engine", str(unhashed), "--quiet")
    assert rc == 0 and f"caution: {unhashed}: {_caution(unhashed, micro_export)}\n" in err, err
    rc, out, err = _run(capsys, "upscale", str(image), str(tmp_path / "b.png"), "--engine", str(engine), "--quiet")
    assert rc == 0 and "caution" not in err, err
