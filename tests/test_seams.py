"""The seam figure (`tiling.seam_ratio`, which eval and compare print) is 1 for an image that no tile
touched and clearly above 1 for a step along the tile borders.

The untiled images are Pillow's bicubic x4 (not this package's code) of bundled photographs, cut
into an engine's tiles only on paper: any x4 upscaler has a pattern of its own on every 4th output
column, where tile borders always fall, which the figure must not count as a seam.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alignvar_edge.errors import InputError
from alignvar_edge.model.matrices import bicubic_upscale
from alignvar_edge.runtimes import tiling
from alignvar_edge.runtimes.tiling import bicubic_seam_figure, seam_ratio, tile_starts
from alignvar_edge.samples import sample_images

TILE, SCALE = 16, 4
# textured photographs, whose interior pairs are many and alike, and a held-out one
PHOTOS = ("grass", "gravel", "astronaut")
STEP = 8 / 255


def lr_photo(name: str, side: int) -> Image.Image:
    """A bundled photograph, area-reduced to an LR square of `side` px (8-bit RGB)."""
    x = np.asarray(dict(sample_images("all"))[name])
    x = np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x
    if x.dtype != np.uint8:
        x = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(x).resize((side, side), Image.Resampling.BOX)


def pillow_x4(lr: Image.Image) -> np.ndarray:
    return np.asarray(lr.resize((lr.width * SCALE, lr.height * SCALE), Image.Resampling.BICUBIC), np.float64) / 255


def tiles_of(side: int, overlap: int) -> tuple[list[int], list[int]]:
    starts = tile_starts(side, TILE, overlap)
    return starts, starts


def stepped(image: np.ndarray, starts: list[int], step: float, seed: int = 0) -> np.ndarray:
    """`image` with a step of +-`step` at every HR position where a tile starts or ends, across
    rows and columns alike: what a stitch that leaves each tile a little brighter or darker adds."""
    borders = sorted({s * SCALE for s in starts[1:]} | {(s + TILE) * SCALE for s in starts[:-1]})
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], len(borders))
    pos = np.arange(image.shape[0])          # a square image: the same borders down and across
    profile = sum(sign * step * (pos >= b) for sign, b in zip(signs, borders))
    return image + profile[:, None, None] + profile[None, :, None]


@pytest.mark.parametrize("overlap", [4, 0])
@pytest.mark.parametrize("name", PHOTOS)
def test_an_untiled_bicubic_upscale_of_a_photo_scores_about_one(name: str, overlap: int) -> None:
    # border pairs against all interior pairs scored these 1.40-1.60: the upscaler's own phase
    ys, xs = tiles_of(128, overlap)
    assert 0.9 < seam_ratio(pillow_x4(lr_photo(name, 128)), ys, xs, TILE, SCALE) < 1.15


@pytest.mark.parametrize("name", PHOTOS)
def test_a_step_along_the_tile_borders_scores_clearly_above_one(name: str) -> None:
    """8 levels of 255, about the rms difference between neighbours in these photographs."""
    ys, xs = tiles_of(128, 4)
    clean = pillow_x4(lr_photo(name, 128))
    assert seam_ratio(stepped(clean, ys, STEP), ys, xs, TILE, SCALE) > 1.5
    assert seam_ratio(stepped(clean, ys, STEP), ys, xs, TILE, SCALE, reference=clean) > 1.5


@pytest.mark.parametrize("name", PHOTOS)
def test_over_an_untiled_reference_the_content_on_the_borders_cancels(name: str) -> None:
    """On a 64 px crop few pairs straddle a border and the photograph's own figure strays (0.6-1.5
    for these); over another untiled upscale of the same LR (PyTorch's bicubic, a = -0.75) it is 1."""
    lr = lr_photo(name, 64)
    ys, xs = tiles_of(64, 4)
    own = bicubic_upscale(np.asarray(lr, np.float32) / 255, SCALE)
    assert seam_ratio(pillow_x4(lr), ys, xs, TILE, SCALE, reference=own) == pytest.approx(1.0, abs=0.03)
    assert seam_ratio(stepped(pillow_x4(lr), ys, STEP), ys, xs, TILE, SCALE, reference=own) > 1.5
    # eval's and compare's reference: Pillow's bicubic of the LR (8-bit here), made as a figure
    figure = bicubic_seam_figure(np.asarray(lr), ys, xs, TILE, SCALE)
    assert seam_ratio(pillow_x4(lr), ys, xs, TILE, SCALE, reference=figure) == pytest.approx(1.0, abs=0.03)
    assert seam_ratio(stepped(pillow_x4(lr), ys, STEP), ys, xs, TILE, SCALE, reference=figure) > 1.5


def test_a_flat_image_scores_one_and_a_flat_reference_leaves_the_figure_as_it_is() -> None:
    ys, xs = tiles_of(64, 4)
    flat = np.full((256, 256, 3), 0.5)
    assert seam_ratio(flat, ys, xs, TILE, SCALE) == 1.0
    seam = stepped(flat, ys, STEP)
    assert seam_ratio(seam, ys, xs, TILE, SCALE, reference=flat) == seam_ratio(seam, ys, xs, TILE, SCALE) > 1.5


def test_the_seam_reference_of_a_512_px_lr_holds_no_whole_float64_hr_image() -> None:
    """compare made a 512 px LR's reference with the model's bicubic (dense resampling matrices)
    and scored it as one float64 image: 232 MB traced and 1.7 s (a 1024 px LR took 15.7 s and
    935 MB more); Pillow's bicubic a channel at a time, scored a plane at a time, holds far less."""
    import tracemalloc
    lr = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)
    ys, xs = tiles_of(512, 4)
    whole_hr_float64 = (512 * SCALE) ** 2 * 3 * 8
    tracemalloc.start()
    try:
        figure = bicubic_seam_figure(lr, ys, xs, TILE, SCALE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.6 * whole_hr_float64, peak / whole_hr_float64
    assert figure == pytest.approx(1.0, abs=0.05)


def test_compare_makes_the_seam_reference_once_per_image_and_names_the_figure_it_divides(monkeypatch) -> None:
    from test_runtimes_compare import _Engine
    from alignvar_edge.runtimes.compare import compare_engines
    made: list[tuple[int, ...]] = []

    def counted(lr: np.ndarray, *args: object) -> float:
        made.append(lr.shape)
        return bicubic_seam_figure(lr, *args)
    monkeypatch.setattr(tiling, "bicubic_seam_figure", counted)
    rng = np.random.default_rng(0)
    images = [("a", rng.random((20, 20, 3), np.float32)), ("b", rng.random((14, 26, 3), np.float32))]
    results = compare_engines([("one", _Engine()), ("two", _Engine())], _Engine(), images, overlap=4)
    assert made == [(20, 20, 3), (14, 26, 3)]
    # its JSON names the figure for what it is now: `seam_ratio` held another figure before
    images = [im for r in results for im in r.to_json()["images"]]
    assert [np.isfinite(im["seam_ratio_vs_bicubic"]) and "seam_ratio" not in im for im in images] == [True] * 4


@pytest.fixture(scope="module")
def bundled():
    from alignvar_edge.model import AlignVAR
    return AlignVAR.from_pretrained("alignvar-tiny").eval()


@pytest.mark.usefixtures("one_torch_thread")
def test_eval_scores_seams_about_one_on_small_crops_and_far_above_without_overlap(bundled) -> None:
    """eval's figure is the model's over bicubic's: over the HR's (detail that the LR lost) the
    held-out photographs' 32 px LR crops, blended, scored 1.6, 1.1 and 5.7."""
    from alignvar_edge.bench.evaluate import evaluate
    photos = list(sample_images("heldout"))
    blended = evaluate(bundled, photos, max_side=128)
    assert [0.8 < s["seam_ratio_vs_bicubic"] < 1.3 for s in blended["images"]] == [True] * len(photos)
    hard = evaluate(bundled, photos, max_side=128, overlap=0)
    assert min(s["seam_ratio_vs_bicubic"] for s in hard["images"]) > 5


def smooth_sixteen_bit(side: int, seam_codes: int, starts: list[int]) -> np.ndarray:
    """A near-flat 16-bit gray HR: a ramp of 1 code per column, `seam_codes` more from each tile
    border on (a seam far under a level of 255)."""
    img = np.tile(np.arange(side, dtype=np.float64), (side, 1)) + 30000
    for b in sorted({s * SCALE for s in starts[1:]} | {(s + TILE) * SCALE for s in starts[:-1]}):
        img[:, b:] += seam_codes
    return img.astype(np.uint16)


def test_integer_samples_score_as_their_floats_and_a_seam_of_a_few_16_bit_levels_shows() -> None:
    """uint16 codes scored 121 and the same image as floats 1.0: integers were taken as floats in
    [0, 1], and every difference under a tenth of a level of 255 counted as flat."""
    ys, xs = tiles_of(64, 4)
    codes = smooth_sixteen_bit(256, 10, ys)
    as_floats = seam_ratio(codes / 65535, ys, xs, TILE, SCALE)
    assert seam_ratio(codes, ys, xs, TILE, SCALE) == pytest.approx(as_floats, rel=1e-9)
    assert as_floats > 1.5
    assert seam_ratio(smooth_sixteen_bit(256, 0, ys), ys, xs, TILE, SCALE) == pytest.approx(1.0, abs=0.05)
    eight = np.round(pillow_x4(lr_photo("grass", 64)) * 255).astype(np.uint8)
    assert seam_ratio(eight, ys, xs, TILE, SCALE) == pytest.approx(seam_ratio(eight / 255, ys, xs, TILE, SCALE),
                                                                   rel=1e-9)


def test_an_integer_dtype_without_a_full_scale_is_refused() -> None:
    ys, xs = tiles_of(64, 4)
    with pytest.raises(InputError, match="uint8, uint16 or float"):
        seam_ratio(np.zeros((256, 256), np.int32), ys, xs, TILE, SCALE)
