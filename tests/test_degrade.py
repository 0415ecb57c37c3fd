"""HR -> LR degradation: determinism, sizes, ranges, config round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from alignvar_edge.degrade import (
    DegradationConfig,
    degrade,
    degrade_batch,
    gaussian_kernel,
    item_seed,
)
from alignvar_edge.errors import ConfigError, InputError

# Every stage always on, so determinism covers blur, resize, noise and JPEG.
ALL_ON = DegradationConfig(blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Smooth gradient plus texture: something blur and JPEG visibly change.
    y, x = np.mgrid[0:96, 0:128] / 128.0
    base = np.stack([x, y, (x + y) / 2], axis=2)
    return np.clip(base + 0.1 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def test_same_seed_identical_other_seed_differs(hr: np.ndarray) -> None:
    a = degrade(hr, ALL_ON, seed=7)
    b = degrade(hr, ALL_ON, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, degrade(hr, ALL_ON, seed=8))
    assert not np.array_equal(a, degrade(hr, DegradationConfig(), seed=7))


def test_output_size_dtype_range(hr: np.ndarray) -> None:
    for seed in range(5):
        lr = degrade(hr, DegradationConfig(), seed)
        assert lr.shape == (24, 32, 3) and lr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0
    # Non-dividing sizes: LR is exactly floor(H/s) x floor(W/s).
    assert degrade(hr[:95, :127], ALL_ON, 0).shape == (23, 31, 3)
    assert degrade(hr, DegradationConfig(scale=2), 0).shape == (48, 64, 3)
    # Out-of-range HR values (e.g. from a model) still give a clipped LR.
    assert degrade(hr * 3 - 1, ALL_ON, 0).max() <= 1.0


def test_bicubic_only_is_seed_independent_and_area_is_box_mean(hr: np.ndarray) -> None:
    cfg = DegradationConfig.bicubic_only()
    np.testing.assert_array_equal(degrade(hr, cfg, 1), degrade(hr, cfg, 2))
    assert DegradationConfig.none() == cfg
    area = DegradationConfig(downsample_modes=("area",), blur_prob=0, noise_prob=0, jpeg_prob=0)
    box = hr.reshape(24, 4, 32, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(degrade(hr, area, 0), box, atol=1e-6)


def test_degradations_actually_degrade(hr: np.ndarray) -> None:
    clean = degrade(hr, DegradationConfig.bicubic_only(), 0)
    heavy = degrade(hr, ALL_ON, 0)
    assert np.abs(heavy - clean).mean() > 0.01
    noisy = DegradationConfig(blur_prob=0, noise_prob=1, noise_sigma=(20, 20), jpeg_prob=0,
                              downsample_modes=("bicubic",))
    diff = degrade(hr, noisy, 0) - clean
    assert 0.04 < diff.std() < 0.1  # 20/255 = 0.078, a bit less after clipping


def test_stage_streams_are_independent(hr: np.ndarray) -> None:
    # A sigma-0 blur is a no-op but still draws its sigma. If the stages shared one random
    # stream, that extra draw would shift the noise and JPEG draws and change the output.
    off = DegradationConfig(blur_prob=0.0, noise_prob=1.0, jpeg_prob=1.0)
    noop_blur = DegradationConfig(blur_prob=1.0, blur_sigma=(0.0, 0.0), noise_prob=1.0,
                                  jpeg_prob=1.0)
    for seed in range(3):
        np.testing.assert_array_equal(degrade(hr, off, seed), degrade(hr, noop_blur, seed))


def test_batch_matches_items(hr: np.ndarray) -> None:
    batch = np.stack([hr, hr[::-1].copy(), hr[:, ::-1].copy()])
    out = degrade_batch(batch, ALL_ON, seed=5)
    assert out.shape == (3, 24, 32, 3)
    for i in range(3):
        np.testing.assert_array_equal(out[i], degrade(batch[i], ALL_ON, item_seed(5, i)))
    as_list = degrade_batch(list(batch), ALL_ON, seed=5)
    assert isinstance(as_list, list)
    np.testing.assert_array_equal(np.stack(as_list), out)
    # Two identical images in one batch still get different degradations.
    twins = degrade_batch(np.stack([hr, hr]), ALL_ON, seed=5)
    assert not np.array_equal(twins[0], twins[1])


def test_config_json_round_trip() -> None:
    cfg = DegradationConfig(scale=2, blur_sigma=(0.5, 1.5), downsample_modes=("area", "bicubic"),
                            noise_sigma=(0.0, 5.0), jpeg_quality=(70, 90), jpeg_prob=0.25)
    text = json.dumps(cfg.to_dict())
    back = DegradationConfig.from_dict(json.loads(text))
    assert back == cfg and isinstance(back.blur_sigma, tuple)
    assert DegradationConfig.from_dict({}) == DegradationConfig()


@pytest.mark.parametrize(
    "bad",
    [
        {"scale": 0},
        {"blur_sigma": (2.0, 1.0)},
        {"noise_sigma": (-1.0, 5.0)},
        {"jpeg_quality": (0, 90)},
        {"jpeg_quality": (50.5, 90)},
        {"blur_prob": 1.5},
        {"downsample_modes": ("nearest",)},
        {"downsample_modes": ()},
    ],
)
def test_invalid_config(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DegradationConfig(**bad)  # type: ignore[arg-type]


def test_unknown_key_and_bad_input() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        DegradationConfig.from_dict({"scael": 4})
    with pytest.raises(InputError):
        degrade(np.zeros((8, 8)), DegradationConfig(), 0)
    with pytest.raises(InputError):
        degrade(np.zeros((8, 8, 3), np.uint8), DegradationConfig(), 0)
    with pytest.raises(InputError):
        degrade(np.zeros((3, 8, 3), np.float32), DegradationConfig(), 0)


def test_gaussian_kernel() -> None:
    k = gaussian_kernel(1.0)
    assert len(k) == 7 and abs(float(k.sum()) - 1.0) < 1e-6
    np.testing.assert_allclose(k, k[::-1])
    assert k.argmax() == 3
