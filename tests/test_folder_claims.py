"""Folder runs of `upscale` that overlap or stop: a run does not start an image another live run is
working on (a claim: a lock on the output's hidden `.NAME.inflight.tmp`), removes what a killed run
left of an output (its `.NAME.xxxxxxxx.tmp`, where its claim file is left unlocked), leaves another
writer's alone; an interrupt counts
the images finished and dropped, a full disk says the finished ones are kept.

The engine here is a stub that repeats each pixel (no model): what is tested is which images a run
starts, and it logs every image it computes by its value."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import outputs, runtimes
from alignvar_edge.cli import main
from alignvar_edge.outputs import OutputClaims
from alignvar_edge.runtimes.upscale_record import RECORD_NAME

SCALE = 4


class _StubEngine:
    """An engine that upscales by repeating pixels, `per_call` images at once (as small images share
    calls), appending each image's value to `log`; `gate`: a file its first call waits for."""

    scale, tile_size, batch, backend, device = SCALE, 16, 1, "stub", "cpu"
    metadata = SimpleNamespace(precision="fp32", files={}, source=SimpleNamespace(sha256={}),
                               model=SimpleNamespace(display_name="stub", weights_sha256=None))

    def __init__(self, log: Path, per_call: int = 1, gate: Path | None = None, stop_at_call: int | None = None):
        self.log, self.per_call, self.gate, self.stop_at_call = log, per_call, gate, stop_at_call

    def __enter__(self) -> _StubEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def upscale_many(self, images, overlap=None, progress=None, color_fix=None, max_megapixels=None):
        images, calls = iter(images), 0
        while batch := [img for _, img in zip(range(self.per_call), images)]:
            calls += 1
            with open(self.log, "a") as f:
                f.write("".join(f"{os.getpid()} {int(img.flat[0])}\n" for img in batch))
            if self.stop_at_call == calls:
                raise KeyboardInterrupt("SIGINT")
            while self.gate is not None and not self.gate.exists():
                time.sleep(0.05)
            self.gate = None
            yield from (np.repeat(np.repeat(img, SCALE, 0), SCALE, 1) for img in batch)


def _stub(monkeypatch, log: Path, **kw) -> None:
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _StubEngine(log, **kw))


def _folder(root: Path, n: int) -> Path:
    """n 6x5 images, image i of the value 10 * i (how the stub's log names it)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((5, 6, 3), 10 * i, np.uint8)).save(root / f"img{i}.png")
    return root


def _computed(log: Path) -> list[int]:
    """The images the stub computed, by index, in order (each once per computing)."""
    return [int(line.split()[1]) // 10 for line in log.read_text().splitlines()] if log.exists() else []


def _hidden(folder: Path) -> list[str]:
    """The hidden files left under `folder`, but the record of what made the outputs that a run keeps."""
    return sorted(p.name for p in folder.rglob(".*") if p.name != RECORD_NAME)


def _listed(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != RECORD_NAME)


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_a_claim_is_one_runs_until_released_and_leaves_no_file(tmp_path):
    out = tmp_path / "out" / "a.png"
    with OutputClaims() as first, OutputClaims() as second:     # two runs: two open files, two locks
        assert first.take(out) and not second.take(out)
        assert _hidden(tmp_path / "out") == [".a.png.inflight.tmp"]
        first.release(out)
        assert second.take(out)
    assert _hidden(tmp_path / "out") == []


def test_without_flock_every_claim_is_granted_and_no_file_is_made(tmp_path, monkeypatch):
    """Windows has no fcntl: two runs may both do an image, as before, and nothing is left beside it."""
    monkeypatch.setattr(outputs, "fcntl", None)
    out = tmp_path / "a.png"
    with OutputClaims() as first, OutputClaims() as second:
        assert first.take(out) and second.take(out)
    assert _hidden(tmp_path) == []


def test_a_killed_claimants_leftover_goes_and_other_files_stay(tmp_path, monkeypatch):
    """A SIGKILLed run leaves its claim file, unlocked, and what it was writing: both go."""
    monkeypatch.setattr(outputs, "_CLAIM_GRACE_S", -1.0)          # the claim file was made long ago
    out = tmp_path / "a.png"
    others = [".a.png.notes.tmp", ".a.png.0123abcd.tmp.bak", "a.png.0123abcd.tmp", ".b.png.0123abcd.tmp",
              ".a.png.0123ABCD.tmp"]
    for name in [".a.png.inflight.tmp", ".a.png.0123abcd.tmp", *others]:
        (tmp_path / name).write_bytes(b"")
    os.symlink(tmp_path / "b.png.keep", tmp_path / ".a.png.89abcdef.tmp")      # a link: never removed
    with OutputClaims() as claims:
        assert claims.take(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, ".a.png.89abcdef.tmp"])


def test_a_temporary_without_a_stale_claim_is_left_to_its_writer(tmp_path):
    """No writer locks its temporary file: without a killed claimant's claim file it may be a live
    process's (a file run, a Python save_image), and is kept."""
    out = tmp_path / "a.png"
    (tmp_path / ".a.png.0123abcd.tmp").write_bytes(b"")
    with OutputClaims() as claims:
        assert claims.take(out)
    assert _hidden(tmp_path) == [".a.png.0123abcd.tmp"]


_SLOW_WRITER = """
import os, sys, time
from pathlib import Path
import numpy as np
from alignvar_edge.images import write
ready, gate = Path(sys.argv[2]), Path(sys.argv[3])
real = os.fsync
def slow_fsync(fd):                     # mid-write: its temporary file exists, not yet renamed
    ready.touch()
    while not gate.exists():
        time.sleep(0.05)
    real(fd)
write.os.fsync = slow_fsync
write.save_image(sys.argv[1], np.full((4, 4, 3), 200, np.uint8))
"""


def test_a_claim_leaves_a_live_save_image_to_finish_and_publish(tmp_path):
    """save_image in another process, writing the output a run claims: its temporary file was
    removed under it (FileNotFoundError at its rename)."""
    out, ready, gate = tmp_path / "out" / "img0.png", tmp_path / "ready", tmp_path / "gate"
    out.parent.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(out), str(ready), str(gate)],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert writer.poll() is None and time.monotonic() < deadline, writer.stderr
            time.sleep(0.05)
        with OutputClaims() as claims:
            assert claims.take(out)
        assert [n for n in _hidden(out.parent) if n != ".img0.png.inflight.tmp"], "its temporary file went"
    finally:
        gate.touch()
        err = writer.communicate(timeout=120)[1]
    assert writer.returncode == 0, err
    with Image.open(out) as img:
        assert img.getpixel((0, 0)) == (200, 200, 200)
    assert _hidden(out.parent) == []


def test_a_folder_run_removes_a_killed_runs_leftover_and_keeps_a_lone_temporary(tmp_path, monkeypatch, capsys):
    """A SIGKILLed run leaves its claim file and a 0-byte `.img1.png.xxxxxxxx.tmp`: both go. A
    temporary file without a claim file may be a live writer's: it stays."""
    monkeypatch.setattr(outputs, "_CLAIM_GRACE_S", -1.0)          # the claim file was made long ago
    src, out, log = _folder(tmp_path / "in", 3), tmp_path / "out", tmp_path / "log"
    out.mkdir()
    (out / ".img1.png.inflight.tmp").write_bytes(b"")
    (out / ".img1.png.0123abcd.tmp").write_bytes(b"")
    (out / ".img2.png.89abcdef.tmp").write_bytes(b"")
    _stub(monkeypatch, log)
    assert main(["upscale", str(src), str(out), "--quiet"]) == 0
    assert _computed(log) == [0, 1, 2]
    assert _listed(out) == [".img2.png.89abcdef.tmp", "img0.png", "img1.png", "img2.png"]


_DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_folder_claims import _StubEngine
from alignvar_edge import cli, runtimes
log, gate = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] != "-" else None)
runtimes.load = lambda *a, **k: _StubEngine(log, gate=gate)
sys.exit(cli.main(sys.argv[3:]))
"""


def test_two_runs_into_one_folder_never_compute_one_image_twice(tmp_path):
    """A nightly run starting while last night's still runs: it started the image the first was
    working on, computed it and dropped it at the rename, one behind all the way."""
    src, out, log, gate = _folder(tmp_path / "in", 5), tmp_path / "out", tmp_path / "log", tmp_path / "gate"
    driver = [sys.executable, "-c", _DRIVER.format(tests=str(Path(__file__).parent)), str(log)]
    argv = ["upscale", str(src), str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*driver, str(gate), *argv], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while _computed(log) != [0]:            # the first run is working on img0, and waits there
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started img0"
            time.sleep(0.05)
        second = subprocess.run([*driver, "-", *argv], capture_output=True, text=True, env=env, timeout=120)
    finally:
        gate.touch()
        first_err = first.communicate(timeout=120)[1]
    assert second.returncode == 0 and first.returncode == 0, (second.stderr, first_err)
    assert sorted(_computed(log)) == [0, 1, 2, 3, 4], log.read_text()
    assert f"left 1 image(s) to another run that was working on them ({out / 'img0.png'})" in second.stderr
    assert "upscaled 1 image(s) (4 written by another run meanwhile)" in first_err, first_err
    for i in range(5):
        with Image.open(out / f"img{i}.png") as img:
            assert img.size == (6 * SCALE, 5 * SCALE) and img.getpixel((0, 0)) == (10 * i,) * 3
    assert _hidden(out) == []


def test_an_interrupt_counts_the_images_finished_and_those_in_progress(tmp_path, monkeypatch, capsys):
    """Small images share the engine's calls: the line said 'the one in progress is not' kept while
    two were lost each time (9 started, 7 written)."""
    src, out, log = _folder(tmp_path / "in", 5), tmp_path / "out", tmp_path / "log"
    _stub(monkeypatch, log, per_call=2, stop_at_call=2)
    argv = ["upscale", str(src), str(out), "--quiet"]
    assert main(argv) == 130
    assert _lines(capsys.readouterr().err) == [
        "alignvar-edge upscale: interrupted; 2 of 5 image(s) finished and kept; 2 in progress dropped; run the same "
        "command again to finish (it skips the finished ones)"]
    assert _listed(out) == ["img0.png", "img1.png"]        # no claim left behind
    _stub(monkeypatch, log, per_call=2)
    assert main(argv) == 0
    assert "skipping 2 finished output(s)" in capsys.readouterr().err and _computed(log) == [0, 1, 2, 3, 2, 3, 4]


def _full_disk_at(monkeypatch, name: str):
    """Saving the output `name` fails as a full disk does; returns the real save_image."""
    from alignvar_edge import images
    real = images.save_image

    def full_at(dst, *a, **kw):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(dst, *a, **kw)
    monkeypatch.setattr(images, "save_image", full_at)
    return real


def test_a_full_disk_says_the_finished_images_are_kept_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    src, out = _folder(tmp_path / "in", 4), tmp_path / "out"
    _stub(monkeypatch, tmp_path / "log")
    _full_disk_at(monkeypatch, "img2.png")
    assert main(["upscale", str(src), str(out), "--quiet"]) == 1
    assert _lines(capsys.readouterr().err)[-1] == (
        f"alignvar-edge upscale: error: no space left on the device writing {out / 'img2.png'}; free some space or "
        "choose another output; 2 of 4 image(s) were finished and are kept: once that is fixed, the same command "
        "again does the rest (it skips the finished ones)")
    assert _listed(out) == ["img0.png", "img1.png"]


def test_a_full_disk_under_force_says_to_drop_force_to_keep_the_finished_images(tmp_path, monkeypatch, capsys):
    """--force redoes every image: 'the same command again does the rest (it skips the finished
    ones)' would have redone the two it had just finished."""
    from alignvar_edge import images
    src, out, log = _folder(tmp_path / "in", 4), tmp_path / "out", tmp_path / "log"
    _stub(monkeypatch, log)
    real = _full_disk_at(monkeypatch, "img2.png")
    assert main(["upscale", str(src), str(out), "--quiet", "--force"]) == 1
    assert _lines(capsys.readouterr().err)[-1].endswith(
        "; 2 of 4 image(s) were finished and are kept: once that is fixed, the same command without --force does "
        "the rest (it keeps the finished ones)")
    monkeypatch.setattr(images, "save_image", real)         # space freed: the command it names keeps them
    log.unlink()
    assert main(["upscale", str(src), str(out), "--quiet"]) == 0
    assert _computed(log) == [2, 3] and _listed(out) == [f"img{i}.png" for i in range(4)]


def test_an_interrupt_under_force_says_to_drop_force_to_keep_the_finished_images(tmp_path, monkeypatch, capsys):
    src, out, log = _folder(tmp_path / "in", 5), tmp_path / "out", tmp_path / "log"
    _stub(monkeypatch, log, per_call=2, stop_at_call=2)
    assert main(["upscale", str(src), str(out), "--quiet", "--force"]) == 130
    assert _lines(capsys.readouterr().err)[-1].endswith(
        "; 2 of 5 image(s) finished and kept; 2 in progress dropped; run the same command without --force to "
        "finish (it keeps the finished ones)")


def test_a_claim_file_the_run_cannot_lock_leaves_that_image_and_says_how_to_free_it(tmp_path, monkeypatch, capsys):
    """A link or a folder where img1's claim file goes (or another account's unreadable claim)
    stopped the whole run with exit 1 ('out/img1.png: Too many levels of symbolic links'), on every
    rerun."""
    src, out, log = _folder(tmp_path / "in", 3), tmp_path / "out", tmp_path / "log"
    out.mkdir()
    os.symlink("/nonexistent/target", out / ".img1.png.inflight.tmp")
    (out / ".img2.png.inflight.tmp").mkdir()
    _stub(monkeypatch, log)
    # nothing frees them by itself: the images are not done, as an unreadable input is not (exit 4)
    assert main(["upscale", str(src), str(out), "--quiet"]) == 4
    assert _computed(log) == [0]
    said = _lines(capsys.readouterr().err)
    for n in (1, 2):
        assert (f"skipping: {src / f'img{n}.png'}: its claim file {out / f'.img{n}.png.inflight.tmp'} cannot be "
                "locked by this run (another account's, or not a file); if no run is working there, remove it and "
                "run the same command again") in said, said
    assert said[-1].startswith("alignvar-edge upscale: error: of the other images, 1 upscaled by this run; 2 "
                               "file(s) could not be upscaled"), said
    assert _hidden(out) == [".img1.png.inflight.tmp", ".img2.png.inflight.tmp"]


def test_a_claim_file_is_readable_by_others(tmp_path):
    """Another account's run into a group-shared folder must be able to open it to lock it."""
    out = tmp_path / "a.png"
    mask = os.umask(0o022)
    try:
        with OutputClaims() as claims:
            assert claims.take(out)
            assert stat.S_IMODE((tmp_path / ".a.png.inflight.tmp").stat().st_mode) == 0o644
    finally:
        os.umask(mask)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file: no read-only claim file to test with")
def test_a_read_only_claim_file_is_taken(tmp_path):
    """Claims are opened read-only (flock needs no write access): a claim file the run may only
    read (another account's in a shared folder) was 'Permission denied', the whole run's exit 1."""
    out = tmp_path / "a.png"
    (tmp_path / ".a.png.inflight.tmp").write_bytes(b"")
    (tmp_path / ".a.png.inflight.tmp").chmod(0o444)
    with OutputClaims() as claims:
        assert claims.take(out)
    assert _hidden(tmp_path) == []


def test_release_removes_only_its_own_empty_claim_file(tmp_path):
    out = tmp_path / "a.png"
    claim = tmp_path / ".a.png.inflight.tmp"
    with OutputClaims() as claims:
        assert claims.take(out)
        claim.write_text("notes")                   # someone wrote into it meanwhile
    assert claim.read_text() == "notes"
    with OutputClaims() as claims:
        assert claims.take(out)
        claim.unlink()
        claim.write_bytes(b"")                      # another file of that name since: not ours
    assert claim.exists()


class _OutOfMemoryAtThird(_StubEngine):
    def upscale_many(self, images, **kw):
        for n, out in enumerate(super().upscale_many(images, **kw)):
            if n == 2:
                raise MemoryError()
            yield out


def test_out_of_memory_says_the_finished_images_are_kept_and_the_same_command_resumes(tmp_path, monkeypatch,
                                                                                       capsys):
    """Only a full disk's line said what was kept; out of memory said nothing of the two written."""
    src, out = _folder(tmp_path / "in", 4), tmp_path / "out"
    monkeypatch.setattr(runtimes, "load", lambda *a, **k: _OutOfMemoryAtThird(tmp_path / "log"))
    assert main(["upscale", str(src), str(out), "--quiet"]) == 1
    line = _lines(capsys.readouterr().err)[-1]
    assert line.startswith("alignvar-edge upscale: error: ") and "memory" in line, line
    assert line.endswith("; 2 of 4 image(s) were finished and are kept: once that is fixed, the same command again "
                         "does the rest (it skips the finished ones)"), line
    assert _listed(out) == ["img0.png", "img1.png"]


def test_the_exit_4_line_counts_what_became_of_the_other_images(tmp_path):
    """It said "finished every other image" where this run had finished none: the others were left
    to another live run working on them."""
    from alignvar_edge.errors import SkippedInputsError
    from alignvar_edge.runtimes.upscale_jobs import FolderTally
    tally = FolderTally(total=3, unusable=[(tmp_path / "cut.png", "truncated")],
                        left=[tmp_path / "out" / "a.png", tmp_path / "out" / "b.png"])
    with pytest.raises(SkippedInputsError) as e:
        tally.check_all_used(finished_before=0)
    assert str(e.value).startswith("of the other images, 2 left to another run working on them; 1 file(s) could "
                                   f"not be upscaled: {tmp_path / 'cut.png'}"), str(e.value)


def test_a_claim_file_made_just_now_is_not_taken_for_a_killed_runs(tmp_path):
    """Between one run's create of the claim file and its lock, another run may lock the file
    first: it took the file for a killed claimant's and removed a temporary file some live writer
    still held. A claim file younger than the grace period leaves the temporaries alone."""
    out = tmp_path / "a.png"
    (tmp_path / ".a.png.inflight.tmp").write_bytes(b"")          # made now, by a run not yet locked
    (tmp_path / ".a.png.0123abcd.tmp").write_bytes(b"pixels")
    with OutputClaims() as claims:
        assert claims.take(out)
    assert (tmp_path / ".a.png.0123abcd.tmp").read_bytes() == b"pixels"
