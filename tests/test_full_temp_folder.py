"""A full $TMPDIR is the system failing (exit 1) and is named as the temporary folder, with the fix:
not the input export blamed (exit 2 'bad input'), and no library traceback before the line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


# ONNX Runtime's write fails / its C++ writer truncates / an empty disk too small for the two copies it
# holds at once (the room it had is back once it has failed: measured before)
@pytest.mark.parametrize("disk, filler", [("3M", "2M"), ("3M", "1M"), ("2600k", None)])
def test_quantize_with_a_full_temp_folder_names_it_and_exits_1(micro_export: Path, small_disk, tmp_path, disk,
                                                              filler):
    temp = small_disk(disk)                       # the micro export (2.3 MB) fits once, not with the filler or twice
    if filler:
        subprocess.run(["fallocate", "-l", filler, str(temp / "filler")], check=True)
    out = tmp_path / "q"
    r = subprocess.run([sys.executable, "-m", "alignvar_edge", "quantize", str(micro_export), "--calib", "builtin",
                        "--precision", "int8", "--target", "onnxruntime", "--tiles", "4", "--val-tiles", "4",
                        "--no-search", "--out", str(out)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Optimization Failed" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line == (f"alignvar-edge quantize: error: no space left on the device of the temporary folder {temp} "
                    "($TMPDIR); free some space there or set TMPDIR to a folder on a disk with room "
                    "(`TMPDIR=DIR alignvar-edge ...`)"), line
    assert not out.exists() and sorted(p.name for p in temp.iterdir()) == (["filler"] if filler else [])


def test_an_openvino_split_build_with_a_full_temp_folder_names_it(micro_export: Path, small_disk, tmp_path):
    """A split OpenVINO build (int8 here; bf16 on a CPU with bf16 units) writes its two parts as ONNX
    scratch files under $TMPDIR: a full disk there was said to be the output's ('no space left on the
    device writing OUT; free some space or choose another output'), on a disk with room."""
    temp = small_disk("1M")                       # the micro export's parts (2.3 MB) do not fit
    out = tmp_path / "ov"
    r = subprocess.run([sys.executable, "-m", "alignvar_edge", "build", str(micro_export), "--target", "openvino",
                        "--precision", "int8", "--calib", "builtin", "--calib-tiles", "4",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line == (f"alignvar-edge build: error: no space left on the device of the temporary folder {temp} "
                    "($TMPDIR); free some space there or set TMPDIR to a folder on a disk with room "
                    "(`TMPDIR=DIR alignvar-edge ...`)"), line
    assert not out.exists() and list(temp.iterdir()) == []


def test_a_host_verb_with_no_writable_temp_folder_says_to_set_tmpdir_and_exits_2(tmp_path: Path) -> None:
    """A container with a read-only root has no writable /tmp: `export` (PyTorch finds its cache
    folder there) ended in Python's own "[Errno 2] No usable temporary directory found in [...]",
    exit 1, naming no fix. Every temp candidate unwritable here: /proc takes no files."""
    code = ("import sys, tempfile; tempfile._candidate_tempdir_list = lambda: ['/proc']\n"
            "from alignvar_edge.cli import main\n"
            f"sys.exit(main(['export', 'alignvar-tiny', '--out', {str(tmp_path / 'e')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "TMPDIR"} | {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "alignvar-edge export: error: no writable temporary folder, which PyTorch and the builds need (No usable "
        "temporary directory found in ['/proc']); set TMPDIR to a writable folder (`TMPDIR=DIR alignvar-edge ...`)")
    assert not (tmp_path / "e").exists()


def test_no_writable_temp_folder_is_found_behind_the_error_that_wraps_it() -> None:
    """torch.onnx.export imports torch.export on first use, inside its own error handling: Python's
    error reached the CLI as the cause of a TorchExportError, a traceback."""
    from alignvar_edge.cli import _os_error_line
    try:
        try:
            raise FileNotFoundError(2, "No usable temporary directory found in ['/proc']")
        except FileNotFoundError as inner:
            raise RuntimeError("Failed to export the model with torch.export.") from inner
    except RuntimeError as wrapped:
        assert _os_error_line(wrapped).startswith("no writable temporary folder, which PyTorch and the builds need")
