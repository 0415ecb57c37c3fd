"""An OpenVINO IR that cannot be written is one line naming --out and why (exit 1, nothing left),
told from the disk, whatever OpenVINO's bare 'iostream error' says: the file-size limit and a full
disk. Needs OpenVINO (skipped without it)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed: the `openvino` extra builds these engines")


def _build(export: Path, out: Path, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "alignvar_edge", "build", str(export), "--target", "openvino",
                           "--precision", "fp32", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_an_ir_over_the_file_size_limit_is_one_line_naming_out(micro_export: Path, tmp_path: Path):
    out = tmp_path / "ov"
    r = _build(micro_export, out, fsize=512 << 10)        # the micro IR's files are about 0.9 MB each
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"alignvar-edge build: error: {out}: File too large (over the file-size limit of 512 KiB set with "
        "`ulimit -f` in the shell that ran it; it is also the hard limit, which this shell cannot raise: run "
        "the command from a shell without that limit)"), r.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_an_ir_on_a_full_disk_is_one_line_naming_out(micro_export: Path, small_disk):
    disk = small_disk("3M")
    subprocess.run(["fallocate", "-l", "1700K", str(disk / "filler")], check=True)   # room for the graph, not the IR
    out = disk / "ov"
    r = _build(micro_export, out)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"alignvar-edge build: error: no space left on the device writing {out}; free some space or choose "
        "another output"), r.stderr
    assert sorted(os.listdir(disk)) == ["filler"]
