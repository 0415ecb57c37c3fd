"""What a folder run reads and what it counts as finished: symlinked folders (followed once, a loop
named), hidden entries (named, never read, our temporaries never named), outputs that do not decode
whole; and a file name read as an option."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _runtime_fixtures import cache_root, export_dir, sharp_model
from alignvar_edge.cli import main
from alignvar_edge.errors import InputError
from alignvar_edge.images import save_image
from alignvar_edge.images.folders import list_folder, not_a_result, usable_images
from alignvar_edge.runtimes.upscale_record import RECORD_NAME

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def export(pytestconfig) -> Path:
    return export_dir(sharp_model("micro"), cache_root(pytestconfig))


def _png(path: Path, size: tuple[int, int] = (11, 9), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != RECORD_NAME)


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _finished_folder_run(export: Path, tmp_path: Path, images: int) -> tuple[Path, Path, list[str]]:
    """A folder of `images` PNGs upscaled into tmp_path/out: (input folder, output folder, the argv)."""
    inp = tmp_path / "in"
    for i in range(images):
        _png(inp / f"img{i}.png", seed=i)
    out = tmp_path / "out"
    argv = ["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]
    assert main(argv) == 0
    return inp, out, argv


def test_symlinked_folders_are_read_once_a_loop_is_named_and_the_output_never_read(export, tmp_path, capsys):
    """os.walk's default left every symlinked folder out without a word (and a folder holding only
    one had "no images"): they are followed now, each real folder once, a link back up named as
    the loop it is, and the run's own output not read through a link either."""
    photos = tmp_path / "photos"
    _png(photos / "x.png", seed=1)
    _png(photos / "y.png", seed=2)
    inp = tmp_path / "in"
    _png(inp / "a.png")
    (inp / "linked").symlink_to("../photos")
    (inp / "relinked").symlink_to("linked")       # the same real folder: read once, at the first link
    (inp / "cycle").symlink_to("..")              # back up, above the input itself
    out = inp / "x4"
    (inp / "outlink").symlink_to("x4")            # the run's own output, through a link
    argv = ["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert _files(out) == ["a.png", "linked/x.png", "linked/y.png"], err
    loop = ("not following 1 symbolic link(s) back to a folder above them (cycle/): a loop, which would read "
            "that folder again")
    assert err.count(loop) == 1 and "upscaled 3 image(s)" in err, err
    assert main(argv) == 0                        # the outputs, now there, are not read back as inputs
    assert "skipping 3 finished output(s)" in capsys.readouterr().err
    assert _files(out) == ["a.png", "linked/x.png", "linked/y.png"]

    # an output folder outside the input, linked from it: its results would be read back, one
    # folder deeper on every run
    (tmp_path / "o2").mkdir()
    (tmp_path / "in2").mkdir()
    _png(tmp_path / "in2" / "a.png")
    (tmp_path / "in2" / "results").symlink_to("../o2")
    argv = ["upscale", str(tmp_path / "in2"), str(tmp_path / "o2"), "--engine", str(export), "--quiet"]
    assert main(argv) == 0 and main(argv) == 0
    assert _files(tmp_path / "o2") == ["a.png"]

    only_link = tmp_path / "onlylink"
    only_link.mkdir()
    (only_link / "photos").symlink_to("../photos")
    assert main(["upscale", str(only_link), str(tmp_path / "ol"), "--engine", str(export), "--quiet"]) == 0
    assert _files(tmp_path / "ol") == ["photos/x.png", "photos/y.png"]


def test_a_folder_is_read_at_its_own_path_before_a_link_to_it(tmp_path):
    """Reached through a link and where it is, a folder is read once, at its own path (whatever the
    names' order), so a folder run's outputs mirror the real tree."""
    _png(tmp_path / "in" / "z" / "deep" / "a.png")
    (tmp_path / "in" / "0").mkdir()
    (tmp_path / "in" / "0" / "l").symlink_to("../z/deep")
    (tmp_path / "in" / "b").symlink_to("z")
    listing = list_folder(tmp_path / "in")
    assert [p.relative_to(tmp_path / "in").as_posix() for p in listing.images] == ["z/deep/a.png"]
    assert listing.loops == [] and listing.hidden == []


def test_eval_and_compare_read_a_symlinked_folder_once_past_a_loop(tmp_path):
    """`eval --images`, `compare --images` and training read folders through `usable_images`
    (calibration through the same listing): a symlinked folder is read, a loop does not hang them."""
    _png(tmp_path / "photos" / "x.png", seed=1)
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "linked").symlink_to("../photos")
    (tmp_path / "in" / "self").symlink_to(".")
    with pytest.warns(UserWarning, match=r"--images .*in: not following 1 symbolic link\(s\) back to a folder above "
                                         r"them \(self/\)"):
        images, skipped = usable_images(tmp_path / "in", "--images")
    assert [name for name, _ in images] == ["a.png", "linked/x.png"] and skipped == []
    np.testing.assert_allclose(images[1][1], np.asarray(Image.open(tmp_path / "photos" / "x.png")) / 255.0,
                               atol=1e-6)


def test_hidden_images_and_folders_are_named_never_read_and_our_temporaries_never_named(export, tmp_path,
                                                                                        capsys):
    """A hidden image or folder was skipped without a word, and a folder of only hidden images said
    "no images"; they are named now (still not read: our own temporaries are hidden, and those are
    never named)."""
    inp = tmp_path / "in"
    _png(inp / "a.png")
    _png(inp / ".h.png")
    _png(inp / ".dir" / "x.png")
    _png(inp / ".my.holidays" / "x.png")                   # a user's, though 8 letters follow its dot
    _png(inp / ".a.png.tmp-abcd1234" / "x.png")            # an interrupted export's folder: ours
    _png(inp / ".ck.x7k2m9q1.tmp" / "x.png")               # an interrupted checkpoint save's folder: ours
    (inp / ".a.png.k2j4h6g8.tmp").write_bytes(b"partial")  # a killed save's file: ours
    (inp / ".DS_Store").write_bytes(b"not an image")       # hidden, of another kind: not named
    out = tmp_path / "out"
    assert main(["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("not reading 3 hidden image(s) or folder(s) (.dir/, .h.png, .my.holidays/): names that start with '.' "
            "are skipped; "
            "rename one to have it read") in err, err
    assert "abcd1234" not in err and "k2j4h6g8" not in err and "x7k2m9q1" not in err and "DS_Store" not in err, err
    assert _files(out) == ["a.png"], err

    hidden_only = tmp_path / "hidden-only"
    _png(hidden_only / ".a.png")
    assert main(["upscale", str(hidden_only), str(tmp_path / "oh"), "--engine", str(export), "--quiet"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "no images (.png" in err[0] and f"under {hidden_only}; not reading 1 hidden image(s) " \
        "or folder(s) (.a.png)" in err[0], err


def _unlistable(monkeypatch, folder: Path) -> None:
    """`folder` cannot be listed, as a folder without read permission (which root could still
    list, so it is stood in for whoever runs the tests)."""
    scandir = os.scandir

    def refusing(path="."):
        if os.path.realpath(path) == os.path.realpath(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refusing)


def test_a_folder_that_cannot_be_listed_is_named_not_passed_over(export, tmp_path, capsys, monkeypatch):
    """os.walk passes over a subfolder it cannot list without a word: a folder run upscaled the
    rest and exited 0 as if that folder held nothing."""
    inp = tmp_path / "in"
    _png(inp / "a.png")
    _png(inp / "locked" / "b.png")
    _unlistable(monkeypatch, inp / "locked")
    assert main(["upscale", str(inp), str(tmp_path / "out"), "--engine", str(export), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("cannot list 1 folder(s) (locked/ permission denied): their images are not read; give the user "
            "running this read and search permission on them") in err, err
    assert _files(tmp_path / "out") == ["a.png"]

    _unlistable(monkeypatch, inp)
    assert main(["upscale", str(inp), str(tmp_path / "o2"), "--engine", str(export), "--quiet"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "cannot list 1 folder(s) (./ permission denied)" in err[0], err


def test_training_names_what_its_folder_leaves_out(tmp_path, monkeypatch):
    """`train --images` read the folder through the same listing, but said nothing of the hidden
    images, looping links and unlistable folders it left out (eval, compare and upscale named them)."""
    from alignvar_edge.train.data import ImageFolderDataset
    _png(tmp_path / "a.png", size=(40, 40))
    _png(tmp_path / ".b.png", size=(40, 40))
    (tmp_path / "self").symlink_to(".")
    _png(tmp_path / "locked" / "c.png", size=(40, 40))
    _unlistable(monkeypatch, tmp_path / "locked")
    with pytest.warns(UserWarning) as caught:
        ds = ImageFolderDataset(tmp_path, crop=32)
    said = [str(w.message) for w in caught]
    assert [n for n, _ in ds.images] == ["a.png"]
    assert any("not reading 1 hidden image(s) or folder(s) (.b.png)" in s for s in said), said
    assert any("not following 1 symbolic link(s) back to a folder above them (self/)" in s for s in said), said
    assert any("cannot list 1 folder(s) (locked/ permission denied)" in s for s in said), said
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match=r"no usable images .*not reading 1 hidden image\(s\)"):
        ImageFolderDataset(tmp_path, crop=32)


def test_a_truncated_output_is_no_finished_result(export, tmp_path, capsys):
    """An output cut short outside the tool (a copy, a full network disk) kept its header, so the
    resume check, which read only the size, skipped it as finished and the run exited 0."""
    inp, out, argv = _finished_folder_run(export, tmp_path, 3)
    whole = (out / "img0.png").read_bytes()
    (out / "img0.png").write_bytes(whole[:len(whole) * 2 // 3])
    (out / "img1.png").write_bytes((out / "img1.png").read_bytes()[:100])
    capsys.readouterr()
    assert main(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"{out / 'img0.png'} (truncated or damaged: its pixels do not decode), " \
        f"{out / 'img1.png'} (truncated or damaged: its pixels do not decode); remove them" in err[0], err
    assert main([*argv, "--force"]) == 0
    for i in range(3):
        with Image.open(out / f"img{i}.png") as img:
            img.load()
            assert img.size == (44, 36)


def test_removing_the_files_a_folder_run_names_redoes_those_alone(export, tmp_path, capsys):
    """The refusal's only advice was --force, which redoes every image of the folder (minutes on a
    300-frame folder for one bad file): removing the named file redoes that one alone."""
    inp, out, argv = _finished_folder_run(export, tmp_path, 3)
    (out / "img1.png").write_bytes(b"")
    kept = {name: (out / name).stat().st_mtime_ns for name in ("img0.png", "img2.png")}
    capsys.readouterr()
    assert main(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert err == [f"alignvar-edge upscale: error: 1 file(s) in {out} where this run writes its results are not "
                   f"finished results of it: {out / 'img1.png'} (empty); remove them or move them away and run the "
                   "same command again (only they are redone), or pass --force to redo every image"], err
    (out / "img1.png").unlink()                   # as the line says
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipping 2 finished output(s)" in err and "upscaled 1 image(s)" in err, err
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    with Image.open(out / "img1.png") as img:
        assert img.size == (44, 36)


def test_an_output_older_than_its_input_is_redone_not_skipped_as_finished(export, tmp_path, capsys):
    """A frame extracted again (new content, same size) after its output was made: the resumed run
    skipped its stale output as finished and kept it."""
    inp, out, argv = _finished_folder_run(export, tmp_path, 4)
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    made = time.time() - 3600                             # the outputs, an hour ago, of inputs older still
    for name in before:
        os.utime(out / name, (made, made))
        os.utime(inp / name, (made - 60, made - 60))
    _png(inp / "img1.png", seed=9)                        # new content, same size, saved now
    os.utime(inp / "img2.png", (made + 1, made + 1))      # within a FAT disk's 2 s: no change told
    future = time.time() + 86400                          # a camera's clock ahead, kept by a copy
    os.utime(inp / "img3.png", (future, future))
    capsys.readouterr()
    assert main(argv) == 0
    err = _lines(capsys.readouterr().err)
    assert len(err) == 3 and err[2].startswith("upscaled 1 image(s)"), err
    assert err[:2] == [f"redoing 1 output(s) in {out} whose input changed since they were written: {out / 'img1.png'}",
                       f"skipping 3 finished output(s) in {out} (pass --force to redo them)"], err
    assert (out / "img1.png").read_bytes() != before["img1.png"]
    assert {p.name: p.read_bytes() for p in out.glob("*.png") if p.name != "img1.png"} == \
        {name: data for name, data in before.items() if name != "img1.png"}
    assert main(argv) == 0                                # now newer than its input: finished
    assert f"skipping 4 finished output(s) in {out}" in capsys.readouterr().err


def test_a_truncated_jpeg_is_named_and_a_result_past_pillows_ceiling_is_one(tmp_path, monkeypatch):
    src = _png(tmp_path / "src.png", size=(16, 12))
    result = save_image(tmp_path / "r.jpg", np.random.default_rng(3).random((48, 64, 3)))
    assert not_a_result(src, result, 4) is None
    result.write_bytes(result.read_bytes()[:-len(result.read_bytes()) // 3])
    assert not_a_result(src, result, 4) == "truncated or damaged: its pixels do not decode"
    # Pillow refuses to open past twice its MAX_IMAGE_PIXELS (179 MP: a x4 result of an 11 MP photo):
    # a finished result that large was "not an image"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    whole = save_image(tmp_path / "r.png", np.zeros((48, 64, 3)))
    assert not_a_result(src, whole, 4) is None and Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("argv, says", [
    (["upscale", "-dash.png", "out.png", "--engine", "E"], "the following arguments are required: output"),
    (["info", "-dash.png"], "unrecognized arguments: -dash.png"),
])
def test_a_file_whose_name_starts_with_a_dash_gets_the_way_to_pass_it(argv, says, tmp_path, monkeypatch, capsys):
    """`upscale -dash.png out.png` said only that the output was missing: a file name read as an
    option is named, with the two ways to pass it; no file of that name, no advice."""
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "-dash.png")
    assert main(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"error: {says} (-dash.png is a file, read as an option because it starts with '-': " \
        "write it as ./-dash.png, or put -- after the options and before the file names); see" in err[0], err
    os.remove("-dash.png")
    assert main(argv) == 2 and "is a file" not in capsys.readouterr().err


def test_the_advice_for_a_file_named_like_an_option_works_as_printed(export, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "-dash.png")
    assert main(["upscale", "./-dash.png", "a.png", "--engine", str(export), "--quiet"]) == 0
    assert main(["upscale", "--engine", str(export), "--quiet", "--", "-dash.png", "b.png"]) == 0
    assert Image.open("a.png").size == Image.open("b.png").size == (44, 36)


def test_eval_of_a_folder_of_hidden_images_says_they_were_not_read(tmp_path):
    _png(tmp_path / ".a.png")
    with pytest.raises(InputError) as e:
        usable_images(tmp_path, "--images")
    assert f"no usable images in --images {tmp_path} (looked for .png" in str(e.value)
    assert "); not reading 1 hidden image(s) or folder(s) (.a.png): names that start with '.' are skipped; " \
        "rename one to have it read; pass a folder of readable photographs" in str(e.value)


def test_eval_compare_and_calibration_say_what_they_left_out_beside_the_images_they_read(tmp_path):
    """Only upscale named hidden images and link loops; eval's, compare's and --calib's listing left
    them out without a word, and --calib's "holds no images" did not say some were hidden."""
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.quantize.calibration.sets import CalibrationSet
    photos = tmp_path / "photos"
    _png(photos / "a.png", (64, 64))
    _png(photos / ".b.png", (64, 64))
    (photos / "loop").symlink_to("..")
    with pytest.warns(UserWarning) as said:
        images, _ = usable_images(photos, "--images")
    assert [name for name, _ in images] == ["a.png"]
    lines = [str(w.message) for w in said]
    assert any(line.startswith(f"--images {photos}: not reading 1 hidden image(s) or folder(s) (.b.png)")
               for line in lines), lines
    assert any(line.startswith(f"--images {photos}: not following 1 symbolic link(s) back to a folder above them "
                               "(loop/)") for line in lines), lines
    config = AlignVARConfig.from_preset("micro")
    with pytest.warns(UserWarning) as said:
        CalibrationSet.from_folder(photos, config, n=1, n_val=1)
    assert sorted(str(w.message).split(": ")[1][:22] for w in said) == ["not following 1 symbol",
                                                                        "not reading 1 hidden i"]
    assert all(str(w.message).startswith(f"calibration folder '{photos}': ") for w in said)
    hidden = tmp_path / "hidden"
    _png(hidden / ".c.png", (64, 64))
    with pytest.raises(InputError, match=r"holds no images \(looked for .*\); not reading 1 hidden image\(s\) or "
                                         r"folder\(s\) \(\.c\.png\).*; add photographs or use `builtin`"):
        CalibrationSet.from_folder(hidden, config, n=1, n_val=1)


def test_training_data_says_what_the_listing_left_out_at_the_callers_line(tmp_path):
    """The training dataset says what a folder's listing left out as eval, compare and calibration do
    (one rule, `said_not_read`): warned beside the images it read, at the caller's line; in its
    no-usable-images error where none is left."""
    from alignvar_edge.train.data import ImageFolderDataset
    photos = tmp_path / "photos"
    _png(photos / "a.png", (64, 64))
    _png(photos / ".b.png", (64, 64))
    with pytest.warns(UserWarning) as said:
        ImageFolderDataset(photos, crop=16)
    assert [str(w.message) for w in said] == [f"{photos}: not reading 1 hidden image(s) or folder(s) (.b.png): "
                                              "names that start with '.' are skipped; rename one to have it read"]
    assert said[0].filename == __file__
    (photos / "a.png").unlink()
    with pytest.raises(InputError, match=r"^no usable images in .*photos \(looked for .*\); not reading 1 hidden "
                                         r"image\(s\) or folder\(s\) \(\.b\.png\): .* rename one to have it read$"):
        ImageFolderDataset(photos, crop=16)


def test_eval_compare_and_train_read_a_folder_as_upscale_does_and_name_what_they_leave_out(tmp_path) -> None:
    """`upscale` read single-frame GIFs and named files of other kinds; eval, compare and train
    (`usable_images`, `read_images`) passed over both without a word, and a folder of GIFs alone
    was "no usable images ... (looked for .png, ..., .tiff)". One listing rule now: they read the
    GIF and name the other files."""
    import warnings
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (96, 80), (10, 200, 30)).save(folder / "a.png")
    Image.new("RGB", (128, 96), (200, 10, 30)).save(folder / "b.gif")
    (folder / "notes.txt").write_text("shot list\n")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        images, skipped = usable_images(folder, "--images")
    assert [name for name, _ in images] == ["a.png", "b.gif"] and skipped == []
    assert images[1][1].shape == (96, 128, 3)
    assert [str(w.message) for w in said] == [
        f"--images {folder}: not reading 1 file(s) of other kinds (notes.txt); images are "
        ".png .jpg .jpeg .bmp .webp .tif .tiff .gif"]
    (folder / "a.png").unlink()
    (folder / "b.gif").unlink()
    with pytest.raises(InputError, match=r"no usable images in --images .* \(looked for .png, .jpg, .jpeg, .bmp, "
                                         r"\.webp, \.tif, \.tiff, \.gif\); not reading 1 file\(s\) of other kinds "
                                         r"\(notes\.txt\)"):
        usable_images(folder, "--images")


def test_a_folder_run_that_went_past_unreadable_files_exits_4_naming_them_on_every_rerun(export, tmp_path, capsys):
    """It exited 2, "bad input, refused with nothing written", with every good image done, and so did
    every rerun: a nightly job could not tell "nothing done" from "all done but 3 bad files"."""
    from alignvar_edge.errors import SkippedInputsError
    inp, out = tmp_path / "in", tmp_path / "out"
    whole = _png(inp / "cam1" / "a.png").read_bytes()
    _png(inp / "cam2" / "a.png", seed=1)
    bad = [inp / "cam1" / "cut.png", inp / "cam2" / "text.jpg", inp / "empty.webp"]
    bad[0].write_bytes(whole[:len(whole) // 2])
    bad[1].write_text("not a photograph")
    bad[2].write_bytes(b"")
    argv = ["upscale", str(inp), str(out), "--engine", str(export), "--quiet"]
    for finished, others in ((2, "2 upscaled by this run"), (0, "2 finished before")):   # a run, then a rerun
        assert main(argv) == 4
        err = _lines(capsys.readouterr().err)
        assert err[-1] == (f"alignvar-edge upscale: error: of the other images, {others}; 3 file(s) could not be "
                           f"upscaled: {bad[0]}, {bad[1]}, {bad[2]} (each named above with why); fix or remove them "
                           "and run the same command again (it skips the finished images)"), err
        assert f"upscaled {finished} image(s)" in err[-2], err
        assert _files(out) == ["cam1/a.png", "cam2/a.png"]
    with pytest.raises(SkippedInputsError) as info:          # in Python: the outcome, each file with why
        main(["--debug", *argv])
    assert info.value.finished == 0 and [file for file, _ in info.value.skipped] == [str(b) for b in bad]
    assert info.value.skipped[2][1] == f"{bad[2]} is empty (0 bytes); re-export or remove it"
    for good in ("cam1/a.png", "cam2/a.png"):
        (inp / good).unlink()
    capsys.readouterr()
    assert main([*argv[:2], str(tmp_path / "out2"), *argv[3:]]) == 2          # no image usable: nothing written
    assert "error: none of the 3 image file(s) could be upscaled" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_a_folder_runs_lines_name_each_image_by_its_path_under_the_folder(export, tmp_path, capsys):
    """cam1/DSC0001.png and cam2/DSC0001.png were both `DSC0001.png (n/2)` while skip lines gave full paths."""
    inp = tmp_path / "in"
    for seed, cam in enumerate(("cam1", "cam2")):
        _png(inp / cam / "DSC0001.png", seed=seed)
    assert main(["upscale", str(inp), str(tmp_path / "out"), "--engine", str(export)]) == 0
    starts = [line.split(":")[0] for line in _lines(capsys.readouterr().err) if " tiles in " in line]
    assert starts == ["cam1/DSC0001.png (1/2)", "cam2/DSC0001.png (2/2)"], starts
