"""Every JSON the toolkit writes is strict JSON: no bare NaN or Infinity."""
from __future__ import annotations

import json
import math

import numpy as np

from alignvar_edge.export.parity import SSIM_WINDOW, psnr_y, ssim_y
from alignvar_edge.jsonsafe import dumps


def _strict(text: str):
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_strings_at_any_depth():
    doc = {"a": math.inf, "b": [-math.inf, np.float32("nan"), (np.float64(0.25), 1)], 3: {"c": float("nan")}}
    assert _strict(dumps(doc)) == {"a": "inf", "b": ["-inf", "nan", [0.25, 1]], "3": {"c": "nan"}}


def test_finite_numpy_floats_are_numbers_not_strings():
    assert _strict(dumps({"x": np.float32(0.5), "n": 3, "ok": True})) == {"x": 0.5, "n": 3, "ok": True}


def test_scores_of_images_too_small_for_the_border_or_window_are_nan():
    rng = np.random.default_rng(0)
    side = 2 * 4 + SSIM_WINDOW                  # the smallest SR side SSIM is defined on at border 4
    a, b = rng.random((3, side, side)), rng.random((3, side, side))
    assert math.isfinite(ssim_y(a, b, border=4)) and math.isfinite(psnr_y(a, b, border=4))
    assert math.isnan(ssim_y(a[:, 1:, 1:], b[:, 1:, 1:], border=4))
    assert math.isnan(psnr_y(a[:, :8, :8], b[:, :8, :8], border=4))      # nothing left after the crop
    assert math.isfinite(psnr_y(a[:, :9, :9], b[:, :9, :9], border=4))
