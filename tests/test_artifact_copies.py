"""Artifacts copied to a device the ways people copy them: a copy only its maker may read is refused
in one line saying what happened and what to do."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import sharp_model
from alignvar_edge.cli import main
from alignvar_edge.errors import ArtifactError
from alignvar_edge.runtimes import golden

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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

if os.geteuid() == 0:
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
