"""Tiling: exact 4x sizes for any image, layouts, batching, streaming and seam-free blending.

These tests use a stand-in tile runner (nearest x4 plus a per-tile brightness offset that plays
the part of a model's tile-edge effects), so they check the tiling itself; the engine tests
run the same code with real engines.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from alignvar_edge.errors import InputError
from alignvar_edge.runtimes import tiling


class OffsetRunner:
    """Upscales each tile (bicubic) and adds an offset that differs between tiles."""

    def __init__(self, tile: int = 8, scale: int = 4, batch: int = 3, offset: float = 0.08):
        self.tile_size, self.scale, self.batch, self.offset = tile, scale, batch, offset
        self.calls: list[int] = []

    def run(self, lr: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        assert lr.shape[1:] == (3, self.tile_size, self.tile_size)
        assert lr.shape[0] <= self.batch
        self.calls.append(lr.shape[0])
        sr = np.stack([np.stack([tiling.upscale_plane_bicubic(c, self.scale) for c in t]) for t in lr])
        # deterministic per-tile offset from the tile's content (a stand-in for edge effects)
        # (summed tile by tile in float64, so a tile's offset does not depend on its batch)
        off = self.offset * np.sin(np.array([float(t.astype(np.float64).sum()) for t in lr]) * 7.0)
        return sr + off[:, None, None, None], []


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.3 * np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], axis=2)
    return np.clip(img + 0.01 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 8), (8, 8), (9, 9), (23, 41), (37, 13)])
def test_output_is_exactly_4x(h: int, w: int) -> None:
    out = tiling.upscale_image(OffsetRunner(), smooth_image(h, w))
    assert out.shape == (4 * h, 4 * w, 3)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_tiles_cover_the_image_and_align_to_edges() -> None:
    assert tiling.tile_starts(5, 8, 2) == [0]
    assert tiling.tile_starts(8, 8, 2) == [0]
    assert tiling.tile_starts(23, 8, 2) == [0, 6, 12, 15]
    for n in range(8, 60):
        st = tiling.tile_starts(n, 8, 2)
        assert st[0] == 0 and st[-1] == n - 8
        assert all(b - a <= 6 for a, b in zip(st, st[1:]))      # every overlap >= 2


def test_blend_windows_sum_to_one_across_equal_overlaps() -> None:
    starts = [0, 6, 12]
    w = np.zeros(20 * 4)
    for i, st in enumerate(starts):
        w[st * 4:(st + 8) * 4] += tiling.blend_window(starts, 8, i, 4)
    np.testing.assert_allclose(w, 1.0, atol=1e-12)


def test_constant_image_stays_constant() -> None:
    img = np.full((19, 27, 3), 0.4, np.float32)
    out = tiling.upscale_image(OffsetRunner(offset=0.0), img)
    np.testing.assert_allclose(out, 0.4, atol=1e-5)


def test_gray_and_rgba_layouts() -> None:
    r = OffsetRunner(offset=0.0)
    gray = smooth_image(11, 13)[..., 0]
    assert tiling.upscale_image(r, gray).shape == (44, 52)
    assert tiling.upscale_image(r, gray[..., None]).shape == (44, 52, 1)
    rgba = np.concatenate([smooth_image(11, 13), np.linspace(0, 1, 11 * 13).reshape(11, 13, 1)], axis=2)
    out = tiling.upscale_image(r, rgba.astype(np.float32))
    assert out.shape == (44, 52, 4)
    # alpha is upscaled on its own (bicubic), never through the model: the runner saw 3 channels
    alpha = out[..., 3]
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert abs(float(alpha.mean()) - 0.5) < 0.02


def test_bad_inputs_are_refused_with_a_reason() -> None:
    r = OffsetRunner()
    with pytest.raises(InputError, match="float"):
        tiling.upscale_image(r, np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        tiling.upscale_image(r, np.full((9, 9, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="shape"):
        tiling.upscale_image(r, np.zeros((9, 9, 5), np.float32))
    with pytest.raises(InputError, match="no pixels"):
        tiling.upscale_image(r, np.zeros((0, 9, 3), np.float32))
    with pytest.raises(InputError, match="overlap"):
        tiling.upscale_image(r, smooth_image(9, 9), overlap=8)


def test_tiles_are_batched_up_to_the_engine_batch() -> None:
    r = OffsetRunner(batch=3)
    tiling.upscale_image(r, smooth_image(23, 23))       # 4 x 4 = 16 tiles
    assert sum(r.calls) == 16 and max(r.calls) == 3 and r.calls.count(3) == 5


def test_a_float_image_streams_its_memory_growing_by_its_result_alone() -> None:
    """Strips are blended one tile row at a time and written into the float32 result: nothing else
    image-sized is held, so the peak grows with the image by the result."""
    short, tall = smooth_image(64, 96), smooth_image(256, 96)
    grown = _peak_growth(lambda image: tiling.upscale_image(NearestRunner(tile=16, batch=16), image), short, tall)
    result_grown = 16 * tall[64:].nbytes
    assert grown < 1.5 * result_grown, grown / result_grown


def _peak_growth(upscale: Callable[[np.ndarray], object], short: np.ndarray, tall: np.ndarray) -> int:
    """How much more Python and numpy held at once during `upscale(tall)` than `upscale(short)`
    (short first once: the first call's buffers)."""
    import tracemalloc

    def peak(image: np.ndarray) -> int:
        tracemalloc.start()
        try:
            upscale(image)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    peak(short)
    return peak(tall) - peak(short)


def test_a_files_samples_are_found_with_one_float_copy() -> None:
    """The CLI hands `upscale_samples` the file's own samples (`file_samples`): a float that is k /
    full in float32 becomes k, and any other float keeps the image float, even in its last row. The
    check held two float copies and a boolean mask at once (2.25x the input's bytes); now one."""
    import tracemalloc

    from alignvar_edge.images.read import file_samples
    rng = np.random.default_rng(5)
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        k = rng.integers(0, np.iinfo(dtype).max + 1, (1000, 70, 3)).astype(dtype)
        x = k.astype(np.float32) / np.float32(np.iinfo(dtype).max)
        tracemalloc.start()
        try:
            got = file_samples(x, bits)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert got.dtype == dtype and np.array_equal(got, k)
        # the input, one float copy, the samples and a few rows' check
        assert peak < 1.15 * x.nbytes + got.nbytes, (peak - got.nbytes) / x.nbytes
        x[-1, -1, -1] = np.nextafter(x[-1, -1, -1], np.float32(2))
        assert file_samples(x, bits) is x


def test_blending_removes_seams_that_hard_stitching_shows() -> None:
    img = smooth_image(40, 46, seed=1)
    tiles, ys, xs = tiling.extract_tiles(img, 8, 2)
    r = OffsetRunner(offset=0.08)
    blended = tiling.upscale_image(r, img)
    assert tiling.seam_ratio(blended, ys, xs, 8, 4) < 1.5
    # the same offsets without overlap: hard seams, which the metric must catch
    _, ys0, xs0 = tiling.extract_tiles(img, 8, 0)
    hard = tiling.upscale_image(OffsetRunner(offset=0.08), img, overlap=0)
    assert tiling.seam_ratio(hard, ys0, xs0, 8, 4) > 3.0
    assert tiles.shape == (len(ys) * len(xs), 3, 8, 8)


def test_blend_tiles_matches_the_streamed_result() -> None:
    r = OffsetRunner(batch=4)
    img = smooth_image(21, 30)
    tiles, ys, xs = tiling.extract_tiles(img, 8)
    sr, _ = r.run(tiles[:4])
    sr = np.concatenate([sr] + [r.run(tiles[i:i + 4])[0] for i in range(4, len(tiles), 4)])
    np.testing.assert_allclose(tiling.blend_tiles(sr, ys, xs, (21, 30), 8, 4),
                               tiling.upscale_image(r, img), atol=1e-4)


def test_small_images_share_calls_and_come_out_as_one_at_a_time() -> None:
    """upscale_images pools small images' tiles into full calls (only the pool's last call is
    short) and streams large ones; every result equals upscale_image on that image alone."""
    rng = np.random.default_rng(3)
    images = [smooth_image(5, 7, seed=1)[..., 0],                        # gray, 1 tile
              smooth_image(9, 9, seed=2),                                 # 4 tiles
              np.dstack([smooth_image(12, 10, seed=3), rng.random((12, 10, 1), np.float32)]),  # RGBA
              smooth_image(40, 40, seed=4),                               # 49 tiles > 4 calls: streams
              smooth_image(8, 8, seed=5), smooth_image(14, 20, seed=6)]
    alone = [tiling.upscale_image(OffsetRunner(), im) for im in images]
    runner = OffsetRunner()
    seen: list[int] = []
    pooled = list(tiling.upscale_images(runner, iter(images),
                                        progress=lambda i, d, n: seen.append(i) if d == n else None))
    assert len(pooled) == len(images) and seen == list(range(len(images)))
    for got, want in zip(pooled, alone):
        assert got.shape == want.shape and np.array_equal(got, want)
    # 1 + 4 + 4 pooled tiles: three full calls of 3; the 40 x 40 image streams in calls of 3 (its
    # last one short); 1 + 6 tiles after it: two full calls and a short last one
    big = len(tiling.extract_tiles(images[3], 8)[0])
    assert runner.calls == [3, 3, 3] + [3] * (big // 3) + ([big % 3] if big % 3 else []) + [3, 3, 1]
    one_at_a_time = OffsetRunner()
    for im in images:
        tiling.upscale_image(one_at_a_time, im)
    assert len(runner.calls) < len(one_at_a_time.calls)


def test_an_unusable_image_first_finishes_the_pooled_ones_before_it() -> None:
    """A folder run keeps every image read before a bad one: the pool is flushed, then the error."""
    def images():
        yield smooth_image(6, 6, seed=1)
        yield smooth_image(9, 7, seed=2)
        yield np.zeros((4, 4, 5), np.float32)                 # no such layout
    got = []
    with pytest.raises(InputError, match="HxWx4"):
        for out in tiling.upscale_images(OffsetRunner(batch=4), images()):     # 3 tiles wait in the pool
            got.append(out)
    assert [g.shape for g in got] == [(24, 24, 3), (36, 28, 3)]
    # None is an unusable image too, not the end of the input: the images after it are not lost
    # silently
    got = []
    with pytest.raises(InputError, match="got shape"):
        for out in tiling.upscale_images(OffsetRunner(batch=4), [smooth_image(6, 6, seed=1), None,
                                                                  smooth_image(9, 7, seed=2)]):
            got.append(out)
    assert [g.shape for g in got] == [(24, 24, 3)]


class NearestRunner(OffsetRunner):
    """Nearest x4 of each tile: every blend of overlapping tiles is a weighted mean of equal values."""

    def run(self, lr: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        assert lr.dtype == np.float32 and lr.shape[1:] == (3, self.tile_size, self.tile_size)
        self.calls.append(lr.shape[0])
        return lr.repeat(self.scale, axis=2).repeat(self.scale, axis=3), []


class TintRunner(NearestRunner):
    """Nearest x4 with each output channel scaled on its own: a gray input's three outputs differ."""

    GAINS = (1.0, 0.5, 0.25)

    def run(self, lr: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        sr, _ = super().run(lr)
        return sr * np.array(self.GAINS, np.float32)[None, :, None, None], []


def test_a_gray_result_is_the_mean_of_the_models_three_channels() -> None:
    gray = smooth_image(19, 23)[..., 0]
    want = gray.repeat(4, axis=0).repeat(4, axis=1) * (sum(TintRunner.GAINS) / 3)
    for image in (gray, gray[..., None]):
        got = tiling.upscale_image(TintRunner(), image)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,full", [(np.uint8, 255), (np.dtype(">u2"), 65535)], ids=["uint8", "uint16-big-endian"])
def test_upscale_samples_fills_the_result_in_its_own_dtype_strip_by_strip(dtype, full) -> None:
    """Integer images are converted tile by tile and their result strip by strip (a whole float32
    result and float32 copies of the input made the peak about 12x the result): nearest x4 of 8-
    and 16-bit samples must come back as exactly those samples, over every strip and layout."""
    from alignvar_edge.images.arrays import as_samples
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, full + 1, (37, 29, 3)).astype(dtype)
    for image in (rgb, rgb[..., 0], rgb[..., :1], np.dstack([rgb, rgb[..., 1]])):
        r = NearestRunner(batch=2)
        got = tiling.upscale_samples(r, as_samples(image))
        assert got.dtype == image.dtype and len(r.calls) > 4            # many calls: many strips
        want = image.repeat(4, axis=0).repeat(4, axis=1)
        if image.ndim == 3 and image.shape[2] == 4:                  # alpha is bicubic, never the model's
            # and the colour under alpha 0 is the visible pixels' (`fill_transparent`)
            seen = want[..., 3] > 0
            want, got = want[..., :3][seen], got[..., :3][seen]
        assert np.array_equal(got, want)


@pytest.mark.parametrize("color_fix", [False, True])
def test_a_pooled_image_is_converted_whole_only_for_the_colour_fix(color_fix) -> None:
    """A pooled image's finish converted the whole input to float32 before the colour fix, off or on,
    looked at it: without the fix only tiles (and the alpha plane) are converted."""
    import dataclasses
    from alignvar_edge.images.arrays import Samples, as_samples
    rgb = (smooth_image(9, 7) * 255).round().astype(np.uint8)
    converted: list[tuple[int, ...]] = []

    def recording(image: np.ndarray) -> Samples:
        s = as_samples(image)
        return dataclasses.replace(s, to_float=lambda block: converted.append(np.shape(block)) or s.to_float(block))
    out = next(tiling.upscale_images(NearestRunner(batch=4), [rgb], color_fix=color_fix, convert=recording))
    assert out.shape == (36, 28, 3) and out.dtype == np.uint8
    assert (rgb.shape in converted) == color_fix, converted


def test_a_16_bit_result_is_rounded_as_save_image_rounds_a_float_one() -> None:
    """16-bit results were rounded from float32 (x * 65535 lands on the other side of a half in about
    0.1% of samples), save_image's of a float result from float64: the CLI, given the file's 16-bit
    samples, would have written other bytes than from its floats."""
    from alignvar_edge.images.arrays import as_samples
    x16 = np.random.default_rng(6).integers(0, 65536, (37, 29, 3)).astype(np.uint16)
    floats = tiling.upscale_samples(OffsetRunner(), as_samples(x16.astype(np.float32) / np.float32(65535)))
    want = np.round(np.clip(floats.astype(np.float64), 0.0, 1.0) * 65535).astype(np.uint16)
    assert np.array_equal(tiling.upscale_samples(OffsetRunner(), as_samples(x16)), want)


def test_the_colour_fix_holds_the_float_result_and_little_besides() -> None:
    """The fix held the float32 result, a float32 reference, and float64 copies of both: its peak
    was 28x the uint8 result (355.6 MB at 512x512), then 7.3x with its statistics summed strip by
    strip but its resized reference made beside the float32 result (4.7x here). The reference's
    statistics are taken before the float32 result exists now: it is all the peak grows by (4x)."""
    from alignvar_edge.images.arrays import as_samples
    rng = np.random.default_rng(7)
    short, tall = ((rng.random((h, 384, 3)) * 255).astype(np.uint8) for h in (64, 256))
    grown = _peak_growth(lambda image: tiling.upscale_samples(NearestRunner(tile=16, batch=16), as_samples(image),
                                                              color_fix=True), short, tall)
    result_grown = 16 * tall[64:].size
    assert grown < 4.4 * result_grown, grown / result_grown


def test_an_overlap_near_the_tile_is_said_with_the_tiles_it_costs(tmp_path, capsys, one_torch_thread) -> None:
    """`upscale --overlap 15` on a 16 px tile (a stride of 1 px) took a 48x32 image 561 tiles, not
    12: minutes instead of half a second, without a word. Where an --overlap takes at least 4x
    the default's tiles, the run says so once, before that image's work, with the count."""
    from PIL import Image

    from alignvar_edge.cli import main
    assert tiling.overlap_cost((32, 48), 16, 15) == (
        "--overlap 15 leaves a stride of 1 px of this engine's 16 px tile: 561 tiles, 47x the 12 of the default "
        "overlap (4) and as much longer; a smaller --overlap, or none, takes fewer")
    assert tiling.overlap_cost((32, 48), 16, 8) is None          # 24 tiles: 2x, what a wider blend costs
    assert tiling.overlap_cost((8, 8), 16, 15) is None           # one tile whatever the overlap
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(tmp_path / "in" / name)
    for overlap, said in (("12", True), ("8", False)):
        out = tmp_path / f"out{overlap}"
        assert main(["upscale", str(tmp_path / "in"), str(out), "--overlap", overlap, "--quiet", "--threads", "1"]) == 0
        notes = [line for line in capsys.readouterr().err.splitlines() if "leaves a stride" in line]
        assert notes == ([f"{tmp_path / 'in' / 'a.png'}: --overlap 12 leaves a stride of 4 px of this engine's 16 px "
                          "tile: 49 tiles, 5x the 9 of the default overlap (4) and as much longer; a smaller "
                          "--overlap, or none, takes fewer"] if said else []), notes
        assert Image.open(out / "b.png").size == (160, 160)


def test_a_gray_and_alpha_array_upscales_as_its_pil_image_does() -> None:
    """`np.asarray` of a PIL LA image is HxWx2: it was refused ("expected an image HxW, HxWx1, HxWx3
    or HxWx4") though the LA image itself is taken. Its gray is the gray image's result, its alpha the
    alpha plane's bicubic, the layout kept; a channels-first array is told how to turn it."""
    from PIL import Image

    from alignvar_edge import runtimes
    r = OffsetRunner()
    gray, alpha = smooth_image(9, 7)[..., 0], np.linspace(0.2, 1.0, 63, dtype=np.float32).reshape(9, 7)
    out = tiling.upscale_image(r, np.dstack([gray, alpha]))
    assert out.shape == (36, 28, 2)
    np.testing.assert_array_equal(out[..., 0], tiling.upscale_image(r, gray))
    np.testing.assert_array_equal(out[..., 1], tiling.upscale_plane_bicubic(alpha, 4))
    la = Image.fromarray(np.dstack([np.full((9, 7), 90, np.uint8), np.full((9, 7), 200, np.uint8)]), "LA")
    with runtimes.load("alignvar-tiny") as engine:
        np.testing.assert_array_equal(np.asarray(engine.upscale(la)), engine.upscale(np.asarray(la)))
    with pytest.raises(InputError, match=r"got shape \(3, 9, 7\); its channels come first: pass "
                                         r"np\.asarray\(x\)\.transpose\(1, 2, 0\) \(HxWx3\)$"):
        tiling.upscale_image(r, np.zeros((3, 9, 7), np.float32))


@pytest.mark.parametrize(("shape", "fix"), [((3, 9, 7), "np.asarray(x).transpose(1, 2, 0)"),
                                            ((1, 3, 9, 7), "np.asarray(x)[0].transpose(1, 2, 0)"),
                                            ((1, 9, 7, 3), "x[0]")])
def test_a_tensor_of_another_layout_is_told_a_fix_that_runs_on_it(shape: tuple[int, ...], fix: str) -> None:
    """The channels-first refusal said to pass x.transpose(1, 2, 0), a TypeError on a torch tensor
    (which upscale takes), and a 1x3xHxW batch of one image got no fix at all. The fix named, run on
    the tensor, gives the image in its layout."""
    import torch
    x = torch.rand(shape)
    with pytest.raises(InputError) as refused:
        tiling.upscale_image(OffsetRunner(), x)
    named = re.search(r": pass (.+?)( \(HxWx\d\))?$", str(refused.value))
    assert named is not None and named[1] == fix, str(refused.value)
    fixed = eval(named[1], {"np": np, "x": x})           # the message's own words, run
    assert tiling.upscale_image(OffsetRunner(), fixed).shape == (36, 28, 3)
