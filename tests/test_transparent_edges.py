"""Transparent images: the colour under fully transparent pixels (black in most editors) never
reaches the model, which bled it into the visible edge as a dark fringe; images without such
pixels are upscaled as before, bit for bit. On the bundled model, from the API and the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignvar_edge import runtimes
from alignvar_edge.images.transparency import fill_transparent

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DISC = 235          # a light disc, its edge anti-aliased by the x4 alpha


def _disc(hidden: tuple[int, int, int]) -> np.ndarray:
    """A 64x48 RGBA cutout: an opaque disc of gray DISC on alpha 0 that hides the colour `hidden`."""
    yy, xx = np.mgrid[0:48, 0:64]
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = hidden
    rgba[(yy - 23.5) ** 2 + (xx - 31.5) ** 2 <= 18 ** 2] = (DISC, DISC, DISC, 255)
    return rgba


def _edge_error_over_white(rgba: np.ndarray) -> float:
    """The most an 8-bit RGBA result composited over white strays, on its partly transparent edge,
    from the disc's own gray composited with the result's alpha (a light edge, no fringe)."""
    a = rgba[..., 3:].astype(np.float64) / 255
    shown = rgba[..., :3] * a + 255 * (1 - a)
    edge = (rgba[..., 3] > 0) & (rgba[..., 3] < 255)
    assert edge.sum() > 200                    # the disc's rim, all around
    return float(np.abs(shown - (DISC * a + 255 * (1 - a)))[edge].max())


@pytest.fixture(scope="module")
def engine():
    with runtimes.load("alignvar-tiny") as e:
        yield e


HIDDEN = pytest.mark.parametrize("hidden", [(0, 0, 0), (255, 0, 0)], ids=["black", "red"])


@HIDDEN
def test_a_cutouts_edge_over_white_keeps_its_own_colour_from_the_api(engine, hidden) -> None:
    """The edge fell to 179 of 235 over white with black hidden under alpha 0 (Pillow's RGBA
    bicubic gives 234)."""
    assert _edge_error_over_white(engine.upscale(_disc(hidden))) <= 3


@HIDDEN
def test_a_cutouts_edge_over_white_keeps_its_own_colour_from_the_cli(tmp_path: Path, hidden) -> None:
    """The CLI reads alpha apart from the RGB it hands the engine: the same fill."""
    from alignvar_edge.cli import main
    Image.fromarray(_disc(hidden)).save(tmp_path / "cutout.png")
    assert main(["upscale", str(tmp_path / "cutout.png"), str(tmp_path / "x4.png"), "--engine", "alignvar-tiny",
                 "--quiet"]) == 0
    with Image.open(tmp_path / "x4.png") as out:
        assert out.mode == "RGBA"
        assert _edge_error_over_white(np.asarray(out)) <= 3


def test_an_image_with_no_fully_transparent_pixel_upscales_as_its_rgb_alone(engine) -> None:
    """Opaque, or translucent everywhere: the model sees the RGB as it is, as before the fill."""
    rng = np.random.default_rng(3)
    rgb = (np.clip(np.cumsum(rng.normal(0, 9, (20, 26, 3)), axis=1) + 128, 0, 255)).astype(np.uint8)
    alone = engine.upscale(rgb)
    for alpha in (np.full((20, 26), 255, np.uint8), rng.integers(1, 256, (20, 26)).astype(np.uint8)):
        np.testing.assert_array_equal(engine.upscale(np.dstack([rgb, alpha]))[..., :3], alone)


def test_alpha_that_is_data_leaves_the_colour_under_it_to_the_model(engine, tmp_path: Path) -> None:
    """A mask or packed texture's colour under alpha 0 is the image's own: with `alpha_is_data` (the
    CLI's --alpha-is-data) the model sees the RGB as it is, and its result is the RGB's alone, in the
    API, in a batch and from the CLI. Without it that colour is replaced (red under alpha 0 here)."""
    from alignvar_edge.cli import main
    from alignvar_edge.errors import InputError
    rgba = _disc((255, 0, 0))
    alone = engine.upscale(np.ascontiguousarray(rgba[..., :3]))
    np.testing.assert_array_equal(engine.upscale(rgba, alpha_is_data=True)[..., :3], alone)
    [batched] = engine.upscale_many([rgba], alpha_is_data=True)
    np.testing.assert_array_equal(batched[..., :3], alone)
    assert np.abs(engine.upscale(rgba)[..., :3].astype(int) - alone).max() > 100      # filled by default
    Image.fromarray(rgba).save(tmp_path / "mask.png")
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(tmp_path / "rgb.png")
    for name, flags in (("mask.png", ["--alpha-is-data"]), ("rgb.png", [])):
        assert main(["upscale", str(tmp_path / name), str(tmp_path / f"x4-{name}"), "--engine", "alignvar-tiny",
                     "--quiet", *flags]) == 0
    with Image.open(tmp_path / "x4-mask.png") as kept, Image.open(tmp_path / "x4-rgb.png") as plain:
        np.testing.assert_array_equal(np.asarray(kept)[..., :3], np.asarray(plain))
    with pytest.raises(InputError, match="^alpha_is_data= must be True or False, got 'yes'"):
        engine.upscale(rgba, alpha_is_data="yes")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_the_fill_keeps_visible_pixels_and_gives_hidden_ones_their_colour(dtype) -> None:
    full = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    rgba = _disc((0, 0, 0)).astype(np.float64) / 255 * full
    rgb, alpha = rgba[..., :3].astype(dtype), rgba[..., 3] / full
    filled = fill_transparent(rgb, alpha)
    assert filled.dtype == rgb.dtype and not np.shares_memory(filled, rgb)
    np.testing.assert_array_equal(filled[alpha > 0], rgb[alpha > 0])
    np.testing.assert_allclose(filled, DISC / 255 * full, rtol=1e-6)     # the disc's one colour everywhere
    gray = fill_transparent(rgb[..., 0], alpha)                          # a gray+alpha file's plane
    np.testing.assert_array_equal(gray, filled[..., 0])


def test_the_fill_leaves_an_image_without_fully_transparent_pixels_as_it_is() -> None:
    rgb = np.zeros((6, 7, 3), np.uint8)
    for alpha in (np.full((6, 7), 0.01, np.float32), np.zeros((6, 7), np.float32)):    # none hidden; none visible
        assert fill_transparent(rgb, alpha) is rgb


def _fill_peak(rgb: np.ndarray, alpha: np.ndarray) -> float:
    """The most memory `fill_transparent` held at once, its result included, in `rgb`'s bytes."""
    import tracemalloc
    tracemalloc.start()
    try:
        fill_transparent(rgb, alpha)
        return tracemalloc.get_traced_memory()[1] / rgb.nbytes
    finally:
        tracemalloc.stop()


def test_the_fill_holds_little_more_than_its_result() -> None:
    """A few transparent pixels in a large image took 3.1x its bytes (8000x8000: 565 MB): float32
    sums and counts of the whole image, and full-size temporaries of each. Now the pixels around
    each small group alone are pulled: the result and the mask of hidden pixels (1/3) remain; with
    hidden pixels all over, the whole image's float32 levels (4/3 of an 8-bit RGB image) besides."""
    rgb = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    alpha = np.ones((2000, 2000), np.float32)
    alpha[100:103, 200:205] = 0                    # a hole near one corner, a pixel near the other
    alpha[1000, 1999] = 0
    assert _fill_peak(rgb, alpha) < 1.5            # measured 1.33
    striped = np.zeros((2000, 2000), np.float32)
    striped[::7] = 1                               # every 7th row visible
    assert _fill_peak(rgb, striped) < 2.95         # measured 2.85
