"""VARSR's AdaIN colour fix: the torch-free one every engine's `upscale` applies, against the output
of VARSR's own `adain_color_fix` (tests/data/upstream/varsr/color_fix.safetensors, written by
scripts/make_reference.py running upstream's function on upstream's SR images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from alignvar_edge.images.color_fix import adain_color_fix, color_fixed, color_reference

VARSR = Path(__file__).parent / "data" / "upstream" / "varsr"


@pytest.fixture(scope="module")
def upstream() -> dict[str, np.ndarray]:
    return {**load_file(str(VARSR / "reference.safetensors")), **load_file(str(VARSR / "color_fix.safetensors"))}


def _script_inputs(upstream: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray]:
    """What VARSR's test script hands its colour fix for image i, as uint8: the SR rounded to
    8 bits and the LR resized to 512 px by Pillow's default filter."""
    sr = np.round(upstream["sr_refined"][i].astype(np.float32).transpose(1, 2, 0) * 255).astype(np.uint8)
    lr = np.round(upstream["lr"][i].transpose(1, 2, 0) * 255).astype(np.uint8)
    return sr, np.asarray(Image.fromarray(lr, "RGB").resize((512, 512)))


@pytest.mark.parametrize("i", [0, 1])
def test_the_colour_fix_is_varsrs(upstream: dict[str, np.ndarray], i: int) -> None:
    sr, reference = _script_inputs(upstream, i)
    ours = adain_color_fix(sr / 255.0, reference / 255.0).astype(np.float64) * 255
    theirs = upstream["sr_color_fixed"][i].astype(np.float64)
    assert np.abs(sr - theirs).mean() > 10           # the fix really moves this image
    # VARSR's script truncates its float result to 8 bits (ToPILImage); ours stays float, and every
    # sample truncates to upstream's level (1e-4 for float rounding at whole levels)
    diff = ours - theirs
    assert diff.min() > -1e-3 and diff.max() < 1 + 1e-3
    assert np.array_equal(np.floor(ours + 1e-4), theirs)


def test_the_colour_reference_is_the_lr_resized_by_pillow(upstream: dict[str, np.ndarray]) -> None:
    _, reference = _script_inputs(upstream, 0)
    lr = upstream["lr"][0].transpose(1, 2, 0)
    assert np.array_equal(np.round(color_reference(lr, 4) * 255).astype(np.uint8), reference)
    sr = upstream["sr_refined"][0].astype(np.float32).transpose(1, 2, 0)
    assert np.allclose(color_fixed(sr, lr, 4), adain_color_fix(sr, reference / 255.0), atol=1e-6, rtol=0)


def test_the_statistics_summed_a_strip_at_a_time_are_numpys_of_the_whole_image() -> None:
    """Mean and deviation (sample variance + EPS, as VARSR's calc_mean_std) of an image several
    strips tall, its last strip short; the reference's 8-bit samples give their floats' statistics."""
    from alignvar_edge.images.color_fix import EPS, _mean_std, _reference_floats, _strips
    rng = np.random.default_rng(3)
    x = (rng.random((2000, 64, 3)) * [0.2, 0.5, 1.0] + [0.7, 0.3, 0.0]).astype(np.float32)
    u8 = (rng.random((2000, 64, 3)) * 255).astype(np.uint8)
    assert len(_strips(x)) >= 3 and x.shape[0] % _strips(x).step
    for (mean, std), floats in ((_mean_std(x), x), (_mean_std(u8, _reference_floats), u8 / np.float32(255))):
        whole = floats.reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(std, np.sqrt(whole.var(axis=0, ddof=1) + EPS), rtol=0, atol=1e-12)


def test_an_engine_upscales_a_varsr_image_as_the_model_does(varsr_dir: Path,
                                                            upstream: dict[str, np.ndarray]) -> None:
    """`upscale` of one 128 px image (one tile) equals `super_resolve`, whose colour fix is on
    by default for VARSR; `color_fix=False` gives the raw image."""
    import torch

    from alignvar_edge import runtimes
    from alignvar_edge.model import AlignVAR
    lr = upstream["lr"][:1]
    model = AlignVAR.from_pretrained(str(varsr_dir))
    assert model.config.color_fix
    with torch.no_grad():
        fixed = model.super_resolve(torch.from_numpy(lr))[0].numpy().transpose(1, 2, 0)
        raw = model.super_resolve(torch.from_numpy(lr), color_fix=False)[0].numpy().transpose(1, 2, 0)
    assert np.abs(fixed - raw).mean() > 0.02
    u8 = np.round(lr[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    with runtimes.load(varsr_dir, backend="torch") as engine:
        x = u8 / 255.0
        assert np.abs(engine.upscale(x) - fixed).max() < 1e-4
        assert np.abs(engine.upscale(x, color_fix=False) - raw).max() < 1e-4
        # a larger image: the fix's statistics are the whole image's, as VARSR's script takes them
        wide = np.concatenate([x, x[:, :48]], axis=1)
        plain = engine.upscale(wide, color_fix=False)
        assert np.abs(engine.upscale(wide) - color_fixed(plain, wide, 4)).max() < 1e-6
        (got,) = engine.upscale_many([wide])
        assert np.abs(got - color_fixed(plain, wide, 4)).max() < 1e-6


def test_alignvar_models_get_no_colour_fix() -> None:
    from alignvar_edge import runtimes
    x = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    with runtimes.load("alignvar-tiny", backend="torch") as engine:
        assert not engine.config.color_fix
        assert np.array_equal(engine.upscale(x), engine.upscale(x, color_fix=False))
        assert not np.array_equal(engine.upscale(x), engine.upscale(x, color_fix=True))


def test_the_cli_applies_the_fix_by_default_and_drops_it_on_request(varsr_dir: Path, tmp_path: Path,
                                                                    upstream: dict[str, np.ndarray]) -> None:
    from alignvar_edge import runtimes
    from alignvar_edge.cli import main as cli
    u8 = np.round(upstream["lr"][1].transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(u8, "RGB").save(tmp_path / "lr.png")
    for flags, name in (([], "fixed.png"), (["--no-color-fix"], "raw.png")):
        assert cli(["upscale", str(tmp_path / "lr.png"), str(tmp_path / name), "--engine", str(varsr_dir),
                    "--threads", "1", "--quiet", *flags]) == 0
    with runtimes.load(varsr_dir, backend="torch") as engine:
        for name, fix in (("fixed.png", True), ("raw.png", False)):
            assert np.array_equal(np.asarray(Image.open(tmp_path / name)), engine.upscale(u8, color_fix=fix))
