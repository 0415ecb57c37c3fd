"""Image CFG as VARSR trains it: the negative label learns degraded low-quality targets (opt-in)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from alignvar_edge.degrade import DegradationConfig, low_quality
from alignvar_edge.errors import ConfigError
from alignvar_edge.model import AlignVARConfig
from alignvar_edge.samples import sample_images
from alignvar_edge.train.losses import negative_targets
from alignvar_edge.train.trainer import make_batches


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_low_quality_is_a_degraded_image_at_hr_size() -> None:
    photos = dict(sample_images("train"))
    deg = DegradationConfig(blur_prob=1.0, blur_sigma=(1.5, 2.0))
    for i, name in enumerate(("grass", "gravel", "brick", "chelsea")):
        x = np.ascontiguousarray(photos[name][100:164, 100:164])
        lq = low_quality(x, deg, seed=i)
        assert lq.shape == x.shape and lq.dtype == np.float32
        assert np.array_equal(lq, low_quality(x, deg, seed=i))               # seeded
        # genuinely degraded (blur sigma >= 1.5 HR px, x4 resolution lost), yet the same picture
        assert 15 < psnr(lq, x) < 32, psnr(lq, x)
        # and it lost high frequencies: gradient energy drops
        assert np.abs(np.diff(lq, axis=1)).mean() < 0.8 * np.abs(np.diff(x, axis=1)).mean()


def test_negative_targets_replace_only_negative_samples() -> None:
    c = AlignVARConfig.from_preset("micro", cfg_negative="degraded")
    hr, _ = make_batches(None, c, 4, 0)(0)
    negative = torch.tensor([True, False, True, False])
    t = negative_targets(hr, negative, c, torch.Generator().manual_seed(0))
    assert t is not None and t.shape == hr.shape
    assert torch.equal(t[~negative], hr[~negative])
    assert all((t[i] - hr[i]).abs().mean() > 0.005 for i in (0, 2))
    again = negative_targets(hr, negative, c, torch.Generator().manual_seed(0))
    assert torch.equal(t, again)                                                # resume stays exact
    # today's behaviour (VAR's null class): the negative label keeps the real target
    assert negative_targets(hr, negative, c.replace(cfg_negative="dropout"), torch.Generator()) is None
    with pytest.raises(ConfigError, match="cfg_negative"):
        c.replace(cfg_negative="null")
