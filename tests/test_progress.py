"""Long steps say they are running: a stage writes a start and an end line to stderr in a log, and
never touches stdout."""
from __future__ import annotations

import sys

import pytest

from alignvar_edge.progress import stage


def test_a_stage_in_a_log_says_when_it_starts_if_long_and_when_it_ends(capsys, monkeypatch):
    import alignvar_edge.progress as progress
    with stage("a quick step"):
        pass
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [err.strip()] and err.startswith("a quick step: done in ")
    monkeypatch.setattr(progress, "START_AFTER_S", 0.01)
    with stage("a long step"):
        import time
        time.sleep(0.2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "a long step ..." and lines[-1].startswith("a long step: done in ")


def test_a_failing_stage_adds_no_line_to_the_error(capsys):
    with pytest.raises(ValueError, match="boom"):
        with stage("converting"):
            raise ValueError("boom")
    assert capsys.readouterr().err == ""


_ON_A_TERMINAL = """
import fcntl, struct, sys, termios, time
fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))   # a pty starts 0 columns wide
from alignvar_edge.progress import note, stage
with stage("evaluating X"):
    time.sleep(1.2)
    note("coffee.png (1/2)")
    time.sleep(0.7)
"""


def _on_a_terminal(script: str, timeout: float) -> tuple[str, list[str]]:
    """What `python -c script` writes to stderr on a pseudo-terminal: all of it, and each line as it
    is left on the screen (after its last carriage return)."""
    import os
    import pty
    import subprocess
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:         # Linux: the terminal's other end closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=timeout) == 0, seen
    return seen.decode(), [line.rsplit("\r", 1)[-1] for line in seen.decode().split("\r\n")]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_note_inside_a_stage_on_a_terminal_is_a_line_of_its_own() -> None:
    """On a terminal the stage's clock redraws `\\revaluating X: 00:01` in place: a note must clear it
    first, not be written on after its text."""
    seen, shown = _on_a_terminal(_ON_A_TERMINAL, timeout=60)
    assert "evaluating X: 00:0" in seen           # the clock did run on the terminal
    assert "coffee.png (1/2)" in shown and shown[-2].startswith("evaluating X: done in "), seen


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_warning_inside_a_stage_on_a_terminal_is_a_line_of_its_own(tmp_path) -> None:
    """The CLI's warnings were a plain print: `eval --images` on a terminal showed
    `\\revaluating alignvar-tiny: 00:00alignvar-edge eval: warning: skipping 1 file(s) ...`."""
    import numpy as np
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    script = ("import fcntl, struct, sys, termios\n"
              "fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))\n"
              "from alignvar_edge.cli import main\n"
              f"sys.exit(main(['eval', 'alignvar-tiny', '--images', {str(tmp_path)!r}, '--max-side', '64']))\n")
    seen, shown = _on_a_terminal(script, timeout=300)
    warned = [line for line in shown if "warning: skipping 1 file" in line]
    assert warned and all(line.startswith("alignvar-edge eval: warning: ") for line in warned), seen


def test_build_shows_its_stage(micro_export_for_progress, tmp_path, capsys):
    from alignvar_edge.cli import main
    assert main(["build", str(micro_export_for_progress), "--target", "onnxruntime", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "building the onnxruntime fp32 engine: done in" in err


@pytest.fixture(scope="module")
def micro_export_for_progress(pytestconfig):
    from _runtime_fixtures import cache_root, export_dir, sharp_model
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


def test_an_estimate_reads_in_seconds_minutes_or_hours():
    from alignvar_edge.progress import duration
    assert [duration(s) for s in (42, 89.4, 90, 3000, 5400, 12240)] == ["42 s", "89 s", "2 min", "50 min", "1.5 h", "3.4 h"]


def test_pace_writes_in_a_log_only_and_never_the_end(capsys, monkeypatch):
    import alignvar_edge.progress as progress
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    for log in (False, True):
        pace = progress.Pace("big.jpg", 4, "tiles", log=log)
        for done in range(1, 5):
            pace.update(done)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["big.jpg: 1/4 tiles", "big.jpg: 2/4 tiles", "big.jpg: 3/4 tiles"]
