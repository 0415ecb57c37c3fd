"""The decoder's nearest x2 + 3x3 convolution as one transposed convolution in OpenVINO IRs:
the same function as PyTorch's interpolate + conv2d, and only where that pattern really is."""
from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
torch = pytest.importorskip("torch")
ops = pytest.importorskip("openvino.opset13")

from alignvar_edge.runtimes.openvino.rewrite import upsample_conv_as_deconvolution  # noqa: E402

F32 = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}


def _upsample(x, mode="nearest", nearest_mode="floor"):
    return ops.interpolate(x, ops.constant(np.array([2.0, 2.0], np.float32)), mode, "scales",
                           axes=ops.constant(np.array([2, 3], np.int64)), nearest_mode=nearest_mode,
                           coordinate_transformation_mode="asymmetric")


def _conv(x, weights, stride=1, pad=1, name="conv"):
    conv = ops.convolution(x, ops.constant(weights), [stride, stride], [pad, pad], [pad, pad], [1, 1])
    conv.set_friendly_name(name)
    return conv


def _types(model):
    return [op.get_type_name() for op in model.get_ordered_ops()]


def test_nearest_x2_and_3x3_conv_become_one_transposed_conv_with_pytorchs_output():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 5, 7)).astype(np.float32)          # odd, unequal sides: the edges
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 6, 1, 1)).astype(np.float32)
    p = ops.parameter(list(x.shape), ov.Type.f32)
    out = ops.add(_conv(_upsample(p), w, name="decoder.conv"), ops.constant(b))
    model = ov.Model([out], [p])
    assert upsample_conv_as_deconvolution(model) == 1
    kinds = _types(model)
    assert "Interpolate" not in kinds and "Convolution" not in kinds and kinds.count("ConvolutionBackpropData") == 1
    deconv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "ConvolutionBackpropData")
    assert deconv.get_friendly_name() == "decoder.conv"
    got = ov.Core().compile_model(model, "CPU", F32)({0: x})[0]
    with torch.no_grad():
        up = torch.nn.functional.interpolate(torch.from_numpy(x).double(), scale_factor=2.0, mode="nearest")
        want = (torch.nn.functional.conv2d(up, torch.from_numpy(w).double(), padding=1)
                + torch.from_numpy(b).double()).numpy()
    assert got.shape == (2, 6, 10, 14)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("case", ["bilinear", "round_prefer_floor", "stride 2", "no padding", "1x1 kernel",
                                  "upsampled map read twice"])
def test_other_patterns_are_left_as_they_are(case):
    rng = np.random.default_rng(1)
    p = ops.parameter([1, 4, 6, 6], ov.Type.f32)
    w = rng.standard_normal((4, 4, 1, 1) if case == "1x1 kernel" else (4, 4, 3, 3)).astype(np.float32)
    up = _upsample(p, "linear" if case == "bilinear" else "nearest",
                   "round_prefer_floor" if case == "round_prefer_floor" else "floor")
    conv = _conv(up, w, stride=2 if case == "stride 2" else 1,
                 pad=0 if case in ("no padding", "1x1 kernel") else 1)
    outs = [conv, ops.relu(up)] if case == "upsampled map read twice" else [conv]
    model = ov.Model(outs, [p])
    before = _types(model)
    assert upsample_conv_as_deconvolution(model) == 0
    assert _types(model) == before


def test_outputs_named_as_spared_keep_their_upsampling():
    rng = np.random.default_rng(2)
    p = ops.parameter([1, 4, 6, 6], ov.Type.f32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    spared = ops.relu(_conv(_upsample(p), w, name="kept"))
    spared.output(0).set_names({"tokens"})
    free = ops.relu(_conv(_upsample(p), w, name="freed"))
    free.output(0).set_names({"sr"})
    model = ov.Model([spared, free], [p])
    assert upsample_conv_as_deconvolution(model, spare_outputs=("tokens",)) == 1
    names = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert names["kept"] == "Convolution" and names["freed"] == "ConvolutionBackpropData"
