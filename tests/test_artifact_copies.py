"""Artifacts copied to a device the ways people copy them: one folder out of an archive of several
(whose ONNX graphs a build shares by hard links), a copy only its maker may read, and a git checkout
that converts line endings. Each is refused in one line saying what happened and what to do, and
the fix it names works."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge import runtimes
from alignvar_edge.cli import main
from alignvar_edge.errors import ArtifactError
from alignvar_edge.manifest import HARD_LINKED, load_verified
from alignvar_edge.runtimes import golden, readme

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def built(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding an export and the onnxruntime engine built from it, whose graph is a hard
    link to the export's (as a deploy output holds them)."""
    base = tmp_path_factory.mktemp("copies")
    shutil.copytree(export_dir(sharp_model("micro"), cache_root(pytestconfig)), base / "export")
    runtimes.build(base / "export", "onnxruntime", out=base / "engine", threads=1)
    return base


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one line a verb refusing with exit status 2 says."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def _tar(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tar", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_one_engine_extracted_from_an_archive_of_several_is_told_how_to_pack_it(built, tmp_path, capsys):
    """tar holds a file with two names once and the second name as a link to the first: one engine
    extracted alone from an archive of a deploy output lacks its model.onnx, and 'copy the whole
    directory again' was all verification said, though it had been. The refusal says it of the files
    a build shares by a hard link only, and the packing the engine README gives arrives whole."""
    if shutil.which("tar") is None:
        pytest.skip("tar is not installed")
    engine = built / "engine"
    linked = sorted(p.name for p in engine.iterdir() if p.stat().st_nlink > 1)
    assert linked == ["model.onnx"] and all(name.endswith(HARD_LINKED) for name in linked)
    assert _tar("-czf", tmp_path / "rel.tgz", "export", "engine", cwd=built).returncode == 0
    device = tmp_path / "device"
    device.mkdir()
    res = _tar("-xzf", tmp_path / "rel.tgz", "engine", cwd=device)
    assert res.returncode != 0 and "Cannot hard link to" in res.stderr, res.stderr
    line = _error(capsys, "inspect", str(device / "engine"))
    assert ("model.onnx is missing (an archive may have held it as a hard link to a file outside this folder, which "
            "extracting the folder alone cannot make: extract the whole archive, or pack the folder on its own, "
            "`tar -czf DIR.tgz -C PARENT DIR`)") in line, line
    partial = shutil.copytree(engine, tmp_path / "partial")        # a file no build shares
    (partial / "README.md").unlink()
    line = _error(capsys, "inspect", str(partial))
    assert "README.md is missing. Copy the whole directory again" in line and "archive" not in line, line
    # the engine README's two ways: the folder packed on its own, or every name in full
    text = (engine / "README.md").read_text()
    alone = re.search(r"`(tar -czf DIR\.tgz -C PARENT DIR)`", text)
    assert alone and "GNU tar's `--hard-dereference`" in text, text
    packed = alone.group(1).replace("DIR", "engine").replace("PARENT", str(built)).split()[1:]
    assert _tar(*packed, cwd=tmp_path).returncode == 0
    assert _tar("--hard-dereference", "-czf", tmp_path / "full.tgz", "export", "engine", cwd=built).returncode == 0
    for archive in ("engine.tgz", "full.tgz"):
        to = tmp_path / archive.split(".")[0]
        to.mkdir()
        assert _tar("-xzf", tmp_path / archive, "engine", cwd=to).returncode == 0
        load_verified(to / "engine")


# what each verb and `load` say of an engine, run as another user where this one is root (who reads
# every file): first as root on a copy anyone may read, so that every module they import is loaded
# before the switch (and no hash of the engine's files is remembered)
_AS_ANOTHER_USER = r"""
import contextlib, io, json, os, sys
from alignvar_edge import load
from alignvar_edge.cli import main
engine, readable_copy, image, out = sys.argv[1:]

def said(engine, tag):
    seen = {}
    for argv in (["inspect", engine], ["selftest", "--engine", engine, "--runs", "1"],
                 ["upscale", image, os.path.join(out, tag + ".png"), "--engine", engine]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        seen[argv[0]] = [code, err.getvalue().strip()]
    try:
        load(engine).close()
        seen["load"] = "loaded"
    except Exception as e:
        seen["load"] = [type(e).__name__, str(e)]
    return seen

if os.geteuid() != 0:      # the maker itself reads its 0600 files: nothing to refuse
    print(json.dumps({"skip": "needs root to switch to another user; not tested as the files' owner"})); sys.exit()
said(readable_copy, "root")
try:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
except OSError as e:
    print(json.dumps({"skip": f"cannot run as another user here ({e})"})); sys.exit()
print(json.dumps(said(engine, "user")))
"""


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_copy_only_its_maker_may_read_is_named_by_every_verb_as_load_names_it(what, tmp_path):
    """An engine made under umask 077, extracted by root, run as another user: inspect named a Core ML
    probe (Data/com.apple.CoreML) that no ONNX Runtime engine holds, selftest said its golden file
    did not exist (safetensors' words for EACCES, read before the engine was verified), upscale exited
    1 and load() raised a bare PermissionError. Now one line, the same everywhere: exit 2, ArtifactError."""
    with tempfile.TemporaryDirectory() as d:      # a folder another user can reach (pytest's is root's own)
        base = Path(d)
        base.chmod(0o755)
        ckpt = base / "micro"
        sharp_model("micro").save_pretrained(str(ckpt))
        golden.make_golden(ckpt, n=2)
        engine = base / "engine"
        assert main(["build", str(ckpt), "--target", "torch", "--out", str(engine)]) == 0
        readable_copy = shutil.copytree(engine, base / "readable")
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(base / "in.png")
        out = base / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        if what == "file":
            (engine / golden.GOLDEN_FILE).chmod(0o600)
            unreadable = str(engine / golden.GOLDEN_FILE)
        else:
            engine.chmod(0o700)
            unreadable = f"the folder {engine}"
        res = subprocess.run([sys.executable, "-c", _AS_ANOTHER_USER, *map(str, (engine, readable_copy, base / "in.png",
                                                                               out))],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        seen = json.loads(res.stdout.strip().splitlines()[-1])
        if "skip" in seen:
            pytest.skip(seen["skip"])
        line = f"cannot read {unreadable}: permission denied: make it readable by the user running this"
        for verb in ("inspect", "selftest", "upscale"):
            assert seen[verb] == [2, f"alignvar-edge {verb}: error: {line}"], seen
        assert seen["load"] == [ArtifactError.__name__, line], seen


def _git(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *map(str, args)], cwd=cwd,
                   check=True, capture_output=True)


def test_a_git_checkout_that_converted_line_endings_says_so_and_its_manifest_checks_by_hand(built, tmp_path, capsys):
    """A checkout with core.autocrlf=true writes README.md (and manifest.json) with CRLF: every verb said
    'truncated or edited' and to copy it again, which converts them again. The refusal names the
    conversion and its fix, which works; and the README's check of manifest.json by hand gives its
    recorded content hash for the CRLF manifest.json the tool accepts, as the tool does."""
    if shutil.which("git") is None or shutil.which("bash") is None:
        pytest.skip("git or bash is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(built / "engine", repo / "engine")
    _git("init", "-q", cwd=repo)
    _git("-c", "core.autocrlf=false", "add", "engine", cwd=repo)
    _git("commit", "-qm", "engine", cwd=repo)
    _git("clone", "-q", "-c", "core.autocrlf=true", repo, tmp_path / "crlf", cwd=tmp_path)
    engine = tmp_path / "crlf" / "engine"
    assert b"\r\n" in (engine / "README.md").read_bytes() and b"\r\n" in (engine / "manifest.json").read_bytes()
    assert _error(capsys, "inspect", str(engine)) == (
        f"alignvar-edge inspect: error: artifact '{engine}' failed verification: the line endings of README.md were "
        "converted to CRLF (git core.autocrlf?), so it does not match the recorded SHA-256: add `* -text` to "
        ".gitattributes, or copy it without conversion")
    # the manifest.json converted too is not what fails: the tool reads its JSON, and so does the check by hand
    (engine / "README.md").write_bytes((built / "engine" / "README.md").read_bytes())
    load_verified(engine)
    recorded = json.loads((engine / "manifest.json").read_text())["content_sha256"]
    by_hand = subprocess.run(["bash", "-c", readme.CONTENT_COMMAND], cwd=engine, capture_output=True, text=True,
                             check=True).stdout.split()[0]
    assert by_hand == recorded
    # the fix it names
    (repo / ".gitattributes").write_text("* -text\n")
    _git("add", ".gitattributes", cwd=repo)
    _git("commit", "-qm", "no conversion", cwd=repo)
    _git("clone", "-q", "-c", "core.autocrlf=true", repo, tmp_path / "kept", cwd=tmp_path)
    load_verified(tmp_path / "kept" / "engine")
