"""A resumed folder run judges a finished output by what made it: the input's bytes, the engine and
the options that change the result. It judged by existence, size and times alone, and kept an
output made from another photo of the same name (copied with its older time) or made without
--strip-metadata (publishing the GPS the rerun was asked to strip)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.cli import main
from alignvar_edge.runtimes.upscale_record import RECORD_NAME

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(path: Path, seed: int, gps: bool = False) -> Path:
    """An 8 x 6 JPEG of random pixels, with a camera's GPS block where asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    return path


def _upscale(inp: Path, out: Path, *flags: str) -> int:
    return main(["upscale", str(inp), str(out), "--engine", "alignvar-tiny", "--quiet", *flags])


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_another_photo_copied_in_with_an_older_time_is_redone(tmp_path: Path, capsys) -> None:
    """A second card's DSC_0001.jpg copied over the first's with its time kept (`cp -p`): older
    than the output, so the size and time rule skipped it, and the output was the old photo's."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _photo(inp / "DSC_0001.jpg", seed=1)
    _photo(inp / "DSC_0002.jpg", seed=2)
    assert _upscale(inp, out) == 0
    old = (out / "DSC_0001.jpg").read_bytes()
    other = _photo(tmp_path / "card2" / "DSC_0001.jpg", seed=3)
    os.utime(other, (1_000_000_000, 1_000_000_000))         # shot in 2001: older than every output
    shutil.copy2(other, inp / "DSC_0001.jpg")                # as `cp -p` copies it
    capsys.readouterr()
    assert _upscale(inp, out) == 0
    err = _lines(capsys.readouterr().err)
    assert err[:2] == [f"redoing 1 output(s) in {out} whose input changed since they were written: "
                       f"{out / 'DSC_0001.jpg'}",
                       f"skipping 1 finished output(s) in {out} (pass --force to redo them)"], err
    assert err[2].startswith("upscaled 1 image(s)"), err
    # the new photo's result, as a run of it alone writes it
    assert _upscale(tmp_path / "card2", tmp_path / "alone") == 0
    assert (out / "DSC_0001.jpg").read_bytes() == (tmp_path / "alone" / "DSC_0001.jpg").read_bytes() != old


@pytest.mark.parametrize("then", [["--strip-metadata", "--quality", "70"], ["--engine", "other"]])
def test_a_rerun_with_other_options_or_another_engine_redoes_the_outputs(then: list[str], tmp_path: Path,
                                                                         capsys) -> None:
    """The README's publishing example after a plain run into the same folder: 'nothing to do', and
    the published gps.jpg still carried its GPS block, at quality 95; so with another --engine."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _photo(inp / "gps.jpg", seed=1, gps=True)
    assert _upscale(inp, out) == 0
    with Image.open(out / "gps.jpg") as im:
        assert 0x8825 in im.getexif()                        # the plain run keeps it, as it should
    before = (out / "gps.jpg").read_bytes()
    if then[0] == "--engine":
        from _runtime_fixtures import nano_model
        nano_model(seed=3).save_pretrained(tmp_path / "other")
        then = ["--engine", str(tmp_path / "other")]
    capsys.readouterr()
    assert main(["upscale", str(inp), str(out), "--engine", "alignvar-tiny", "--quiet", *then]) == 0
    err = _lines(capsys.readouterr().err)
    assert err[0] == (f"redoing 1 output(s) in {out} made by another engine or with other options (--strip-metadata, "
                      f"--quality, --overlap, ...) than this run's: {out / 'gps.jpg'}"), err
    assert err[1].startswith("upscaled 1 image(s)"), err
    assert (out / "gps.jpg").read_bytes() != before
    if "--strip-metadata" in then:
        with Image.open(out / "gps.jpg") as im:
            assert "exif" not in im.info
    capsys.readouterr()
    assert main(["upscale", str(inp), str(out), "--engine", "alignvar-tiny", "--quiet", *then]) == 0
    assert _lines(capsys.readouterr().err) == [f"skipping 1 finished output(s) in {out} (pass --force to redo them)",
                                               f"nothing to do: every output in {out} exists"]


def test_an_output_with_no_record_keeps_the_size_and_time_rule(tmp_path: Path, capsys) -> None:
    """An output made before records were kept (or rewritten since, here by a touch) is judged by
    its size and time as before: kept, while one the record names as made otherwise is redone."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _photo(inp / "old.jpg", seed=1, gps=True)
    _photo(inp / "new.jpg", seed=2, gps=True)
    assert _upscale(inp, out) == 0
    os.utime(out / "old.jpg")                   # no longer the file its entry describes
    kept = (out / "old.jpg").read_bytes()
    capsys.readouterr()
    assert _upscale(inp, out, "--strip-metadata") == 0
    err = _lines(capsys.readouterr().err)
    assert err[:2] == [f"redoing 1 output(s) in {out} made by another engine or with other options (--strip-metadata, "
                       f"--quality, --overlap, ...) than this run's: {out / 'new.jpg'}",
                       f"skipping 1 finished output(s) in {out} (pass --force to redo them)"], err
    assert (out / "old.jpg").read_bytes() == kept


def test_an_unchanged_rerun_does_nothing_even_where_an_input_was_touched(tmp_path: Path, capsys) -> None:
    """A rerun with the same inputs, engine and options does no work, also where an input's time
    moved past its output's while its bytes stayed (copied again): the record knows its bytes. The
    record is reported nowhere, nor read by a run whose input folder is this output."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        _photo(inp / f"img{i}.jpg", seed=i)
    assert _upscale(inp, out) == 0
    assert (out / RECORD_NAME).is_file()
    future = (out / "img0.jpg").stat().st_mtime + 60
    os.utime(inp / "img0.jpg", (future, future))             # newer than its output, the same bytes
    times = _times(out)
    capsys.readouterr()
    assert _upscale(inp, out) == 0
    assert _lines(capsys.readouterr().err) == [f"skipping 2 finished output(s) in {out} (pass --force to redo them)",
                                               f"nothing to do: every output in {out} exists"]
    assert _times(out) == times
    assert _upscale(out, tmp_path / "again") == 0         # the outputs as inputs
    assert RECORD_NAME not in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [RECORD_NAME, "img0.jpg", "img1.jpg"]


@pytest.mark.parametrize("garbled", [b"{\"outputs\": {\"img0.jpg\": ", b"\xff\xfe not json", b"[1, 2]",
                                     b'{"outputs": {"img0.jpg": {"input_sha256": 1, "size": "x"}}}'])
def test_a_damaged_record_is_no_record(garbled: bytes, tmp_path: Path, capsys) -> None:
    """A record cut short or garbled is read as none (its outputs judged by size and time), with no
    traceback, and the run writes a whole one again."""
    inp, out = tmp_path / "in", tmp_path / "out"
    _photo(inp / "img0.jpg", seed=0)
    assert _upscale(inp, out) == 0
    (out / RECORD_NAME).write_bytes(garbled)
    _photo(inp / "img1.jpg", seed=1)
    capsys.readouterr()
    assert _upscale(inp, out) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"skipping 1 finished output(s) in {out}" in err, err
    assert _upscale(inp, out, "--strip-metadata") == 0        # img1's record is whole: it is redone
    err = _lines(capsys.readouterr().err)
    assert err[0].endswith(f"than this run's: {out / 'img1.jpg'}"), err
    assert err[1] == f"skipping 1 finished output(s) in {out} (pass --force to redo them)", err


def test_a_run_over_another_folder_into_the_same_output_does_not_replace_its_results(tmp_path: Path,
                                                                                    capsys) -> None:
    """`upscale cam1 out`, then `upscale cam2 out`, both with a DSC_0001.jpg (cameras count alike):
    cam1's result is no result of cam2's run, so it is named and kept unless --force, as before
    records were kept (the record's entry vouched for it and the run replaced it)."""
    out = tmp_path / "out"
    _photo(tmp_path / "cam1" / "DSC_0001.jpg", seed=1)
    cam2 = tmp_path / "cam2" / "DSC_0001.jpg"
    cam2.parent.mkdir()
    Image.fromarray(np.full((7, 9, 3), 90, np.uint8)).save(cam2)      # another size: its result is another size
    assert _upscale(tmp_path / "cam1", out) == 0
    kept = (out / "DSC_0001.jpg").read_bytes()
    capsys.readouterr()
    assert _upscale(tmp_path / "cam2", out) == 2
    assert "not finished results of it" in capsys.readouterr().err
    assert (out / "DSC_0001.jpg").read_bytes() == kept


def test_a_rerun_with_nothing_to_do_reads_no_input_whose_file_is_as_it_was(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    """Each recorded input was hashed again on every rerun (a cron job over a NAS of photos read them
    all); one whose device, inode, size and times are those recorded is not read, one copied over
    (a new change time) still is."""
    from alignvar_edge.runtimes import upscale_record
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        _photo(inp / f"p{i}.jpg", seed=i)
    assert _upscale(inp, out) == 0
    read: list[str] = []
    real = upscale_record.sha256_file
    monkeypatch.setattr(upscale_record, "sha256_file", lambda path, **kw: read.append(Path(path).name) or real(path, **kw))
    capsys.readouterr()
    assert _upscale(inp, out) == 0 and read == []
    assert "nothing to do" in capsys.readouterr().err
    shutil.copy2(inp / "p1.jpg", tmp_path / "p1.jpg")
    shutil.copy2(tmp_path / "p1.jpg", inp / "p1.jpg")           # the same bytes copied over: hashed, kept
    assert _upscale(inp, out) == 0 and read == ["p1.jpg"]
