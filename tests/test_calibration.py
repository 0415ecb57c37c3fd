"""Calibration sets (tiles, splits, hash, bad input) and the activation-range statistics."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.errors import ConfigError, InputError
from alignvar_edge.model.config import AlignVARConfig
from alignvar_edge.quantize.calibration import CalibrationSet
from alignvar_edge.quantize.calibration.ranges import collect_ranges, entropy_threshold, percentile_range

MICRO = AlignVARConfig.from_preset("micro")          # 32 px HR tile, 8 px LR tile


def _photo(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)


def test_builtin_is_deterministic_and_splits_are_disjoint() -> None:
    a = CalibrationSet.builtin(MICRO, n=6, n_val=3, seed=1)
    b = CalibrationSet.builtin(MICRO, n=6, n_val=3, seed=1)
    assert a.hash == b.hash and len(a.hash) == 64
    np.testing.assert_array_equal(a.calibration.lr, b.calibration.lr)
    assert a.calibration.lr.shape == (6, 3, 8, 8) and a.calibration.hr.shape == (6, 3, 32, 32)
    assert a.validation.lr.shape == (3, 3, 8, 8)
    assert a.calibration.lr.dtype == np.float32 and 0 <= a.calibration.lr.min() <= a.calibration.lr.max() <= 1
    cal_imgs = {n.split("@")[0] for n in a.calibration.names}
    val_imgs = {n.split("@")[0] for n in a.validation.names}
    assert not cal_imgs & val_imgs                        # no picture in both splits
    assert CalibrationSet.builtin(MICRO, n=6, n_val=3, seed=2).hash != a.hash
    feeds = a.feeds()
    assert len(feeds) == 6 and feeds[0]["lr"].shape == (1, 3, 8, 8)
    assert len(a.feeds(batch=4)) == 1               # static batch: the short tail is dropped
    s = a.summary()
    assert s["hash"] == a.hash and s["skipped"] == 0 and s["degradation"]["scale"] == 4


def test_lr_is_made_by_the_recorded_degradation() -> None:
    # no blur, noise or JPEG: LR must be the plain bicubic downsample of its HR tile
    cfg = AlignVARConfig.from_preset("micro", degradation={"blur_prob": 0.0, "noise_prob": 0.0, "jpeg_prob": 0.0,
                                                           "downsample_modes": ["bicubic"]})
    from alignvar_edge.degrade import DegradationConfig, degrade
    cs = CalibrationSet.builtin(cfg, n=2, n_val=1)
    hr = cs.calibration.hr[0].transpose(1, 2, 0)
    want = degrade(hr, DegradationConfig.from_dict(cfg.degradation), 0)
    np.testing.assert_allclose(cs.calibration.lr[0].transpose(1, 2, 0), want, atol=1e-6)
    assert cs.summary()["degradation"]["blur_prob"] == 0.0


def test_folder_skips_bad_files_and_counts_them(tmp_path: Path) -> None:
    for i in range(3):
        _photo(tmp_path / f"ok{i}.png", 40, 48, i)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _photo(tmp_path / "small.png", 16, 16, 9)            # smaller than the 32 px HR tile
    with pytest.warns(UserWarning, match="skipped 3 file"):
        cs = CalibrationSet.from_folder(tmp_path, MICRO, n=2, n_val=2)
    assert sorted(n for n, _ in cs.skipped) == ["broken.png", "empty.jpg", "small.png"]
    assert cs.summary()["skipped"] == 3 and cs.recipe["images"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert CalibrationSet.from_folder(tmp_path, MICRO, n=2, n_val=2).hash == cs.hash


def test_tile_pairs_of_a_folder_go_past_a_file_they_cannot_read(tmp_path: Path) -> None:
    """`bench --images` and `export --images` cut their tiles from load_photos: one corrupt file is
    named in one warning and left out; the tiles are those of the readable photographs alone."""
    from alignvar_edge.quantize.calibration.tiles import tile_pairs
    mixed, clean, bad = (tmp_path / d for d in ("mixed", "clean", "bad"))
    for d in (mixed, clean, bad):
        d.mkdir()
    for d in (mixed, clean):
        _photo(d / "a.png", 40, 48, 0)
    for d in (mixed, bad):
        (d / "b.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match=r"skipping 1 file\(s\) .* cannot be read: b.png \(") as caught:
        lr, hr = tile_pairs(MICRO, 3, images=mixed)
    assert len(caught) == 1
    lr_ok, hr_ok = tile_pairs(MICRO, 3, images=clean)
    np.testing.assert_array_equal(hr, hr_ok)
    np.testing.assert_array_equal(lr, lr_ok)
    with pytest.raises(InputError, match=r"no usable images in --images .*bad .*b.png \("):
        tile_pairs(MICRO, 3, images=bad)


def test_a_photo_over_the_size_limit_is_skipped_without_naming_a_flag_the_verb_lacks(tmp_path: Path) -> None:
    """bench, export and the calibrating verbs keep the 25 MP limit and have no --max-megapixels:
    the skip reason says to downscale or crop the file, not to raise a flag they do not take."""
    from PIL import Image

    from alignvar_edge.quantize.calibration.tiles import tile_pairs
    _photo(tmp_path / "a.png", 64, 64, 0)
    Image.new("L", (5100, 5100)).save(tmp_path / "huge.png")          # 26 MP, a few KB on disk
    for read in (lambda: tile_pairs(MICRO, 3, images=tmp_path),
                 lambda: CalibrationSet.from_folder(tmp_path, MICRO, n=2, n_val=1)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read()
        said = " ".join(str(w.message) for w in caught)
        assert "huge.png" in said and "over the 25 MP limit; downscale or crop it" in said, said
        assert "max-megapixels" not in said and "max_megapixels" not in said, said


def test_a_fifo_in_the_folder_is_skipped_with_a_warning_never_opened(tmp_path: Path) -> None:
    """quantize --calib DIR hung in open() on a FIFO in the folder."""
    from _fifo import fifo_fed_if_opened
    for name in ("a.png", "b.png"):
        _photo(tmp_path / name, 64, 64, 0)
    with fifo_fed_if_opened(tmp_path / "z.png"), pytest.warns(UserWarning) as caught:
        cs = CalibrationSet.from_folder(tmp_path, MICRO, n=2, n_val=1)
    said = " ".join(str(w.message) for w in caught)
    assert "z.png is a FIFO (named pipe), not an image file" in said, said
    assert sorted(f["file"] for f in cs.summary()["files"]) == ["a.png", "b.png"]


def test_single_image_folder_works_with_a_warning(tmp_path: Path) -> None:
    _photo(tmp_path / "one.png", 64, 64, 0)
    with pytest.warns(UserWarning, match="only 1 image"):
        cs = CalibrationSet.from_folder(tmp_path, MICRO, n=5, n_val=2)
    assert len(cs.calibration) == 5 and cs.recipe["validation_shares_images"] is True
    assert cs.summary()["files"] == [{"file": "one.png", "split": "both",
                                      "sha256": hashlib.sha256((tmp_path / "one.png").read_bytes()).hexdigest()}]


def test_folder_set_records_which_files_in_which_split_and_their_sha256(tmp_path: Path) -> None:
    """The manifest's calibration entry names the photographs to keep for a rebuild: each used file,
    its split and the SHA-256 of its bytes; a skipped file is not among them."""
    (tmp_path / "sub").mkdir()
    for i, name in enumerate(["a.png", "b.png", "c.png", "sub/d.png"]):
        _photo(tmp_path / name, 40, 48, i)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        cs = CalibrationSet.from_folder(tmp_path, MICRO, n=3, n_val=2)
    files = cs.summary()["files"]
    assert sorted(f["file"] for f in files) == ["a.png", "b.png", "c.png", "sub/d.png"]
    for f in files:
        assert f["sha256"] == hashlib.sha256((tmp_path / f["file"]).read_bytes()).hexdigest()
    by_split = {s: {f["file"] for f in files if f["split"] == s} for s in ("calibration", "validation")}
    assert by_split["calibration"] == {n.split("@")[0] for n in cs.calibration.names}
    assert by_split["validation"] == {n.split("@")[0] for n in cs.validation.names}
    assert len(by_split["validation"]) == 1 and len(by_split["calibration"]) == 3


def test_calibration_path_that_is_a_file_says_so(tmp_path: Path) -> None:
    _photo(tmp_path / "photo.png", 64, 64, 0)
    with pytest.raises(InputError, match=r"photo.png' is a file, not a folder; pass a folder of photographs "
                                         r"\(--calib FOLDER\)"):
        CalibrationSet.from_folder(tmp_path / "photo.png", MICRO)


def test_bad_calibration_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        CalibrationSet.from_folder(tmp_path / "nope", MICRO)
    with pytest.raises(InputError, match=r"holds no images \(looked for .*\.gif"):     # read as folder runs read
        CalibrationSet.from_folder(tmp_path, MICRO)
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="no usable calibration image.*2 skipped"):
        CalibrationSet.from_folder(tmp_path, MICRO)
    with pytest.raises(ConfigError):
        CalibrationSet.builtin(MICRO, n=0)


def test_python_calibration_given_as_the_clis_value_says_what_python_takes(tmp_path: Path) -> None:
    """calibration="builtin" (or a folder) is the CLI's --calib; in Python it was a raw
    "could not convert string to float" from numpy."""
    from alignvar_edge.runtimes.artifacts import check_calibration
    for given in ("builtin", tmp_path):
        with pytest.raises(InputError, match=r"in Python pass a CalibrationSet .*CalibrationSet.builtin\(config\)"):
            check_calibration(given, MICRO, needed=True)
    tiles, info = check_calibration(CalibrationSet.builtin(MICRO, n=2), MICRO, needed=True)
    assert tiles is not None and tiles.shape[0] == 2 and info is not None and info["hash"]


def test_entropy_and_percentile_clip_outliers_unlike_minmax() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(200_000), [60.0, -45.0]])
    amax = 60.0
    hist, _ = np.histogram(np.abs(x), bins=2048, range=(0, amax))
    t = entropy_threshold(hist, amax)
    assert 2.5 < t < 8.0                                   # a Gaussian's KL threshold, not the outlier
    h, _ = np.histogram(x, bins=4096, range=(x.min(), x.max()))
    lo, hi = percentile_range(h, x.min(), x.max(), 99.9)
    want = np.percentile(x, [0.1, 99.9])
    assert abs(lo - want[0]) < 0.05 and abs(hi - want[1]) < 0.05


def test_collect_ranges_runs_the_graph_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import TensorProto, helper

    # y = relu(x) * 2 with one big outlier in the data: minmax keeps it, percentile does not
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 1000)).astype(np.float32)} for _ in range(3)]
    feeds[1]["x"][0, 0] = 500.0
    monkeypatch.chdir(tmp_path)
    mm = collect_ranges(model, ["r", "y"], feeds, "minmax")
    assert mm["r"][0] == 0.0 and mm["r"][1] == pytest.approx(500.0) and mm["y"][1] == pytest.approx(1000.0)
    pc = collect_ranges(model, ["r"], feeds, "percentile", percentile=99.0)
    assert pc["r"][1] < 10.0
    en = collect_ranges(model, ["r"], feeds, "entropy")
    assert en["r"][1] < 100.0 and en["r"] != mm["r"]
    assert list(tmp_path.iterdir()) == []                 # nothing written into the working directory
    with pytest.raises(ConfigError, match="unknown calibration method"):
        collect_ranges(model, ["r"], feeds, "kl")
    onnx.checker.check_model(model)


def test_fewer_tiles_than_one_call_of_the_batch_is_one_clear_error() -> None:
    """A static-batch graph takes whole batches only: every path that cuts tiles into calls (the
    quantize search's evaluators, OpenVINO's calibration) refuses a split smaller than one call."""
    from alignvar_edge.errors import InputError
    from alignvar_edge.quantize.calibration.sets import TileSplit
    from alignvar_edge.runtimes.openvino.nncf import tile_batches
    split = TileSplit(np.zeros((8, 3, 4, 4), np.float32), np.zeros((8, 3, 16, 16), np.float32), ("t",) * 8)
    assert [lr.shape[0] for lr, _ in split.batches(3)] == [3, 3]              # the short tail is dropped
    for cut in (lambda: list(split.batches(16)), lambda: tile_batches(split.lr, 16)):
        with pytest.raises(InputError, match="8 tiles cannot fill one call of a batch-16 graph.*--tiles"):
            cut()
