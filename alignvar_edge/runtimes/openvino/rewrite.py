"""Rewrites of a converted OpenVINO model that compute the same function in less CPU time.

`argmax_as_reductions` (exact: the same outputs bit for bit): OpenVINO converts ONNX ArgMax into a
stable TopK with k = 1. On the CPU plugin that TopK costs about 4.6 ns per logit: 15% of the
bundled default's token path at batch 8 (six calls over 1024-way logits), more than its attention.
A row's first maximum is also min(i where x_i == max x): reductions and element-wise ops that run
at memory speed.

`group_norm_channels_last` (the same function, rounded differently): the exported GroupNorm is
Reshape(N, G, -1) -> MVN -> Reshape -> Multiply -> Add. That first Reshape needs channel-major
memory, so the CPU plugin reorders every convolution's channels-last output to NCHW and back
around each norm: 26% of the VQ decoder's time in the int8 + bf16 image suffix, 73% with f32
float ops. Written with per-channel spatial means instead (group statistics from the small
[N, C] tensors, two passes for the variance), no op needs NCHW. Used on CPU IRs off the token
path (`spare_outputs`), where it cannot change a token and build-time parity measures the pixels.

`upsample_conv_as_deconvolution` (the same function, rounded differently): the decoder's x2
upsampling is a nearest Resize and a 3x3 convolution. Each output pixel of that pair sees only a
2x2 window of the input, so it is one stride-2 transposed convolution with 4x4 kernels made from
sums of the 3x3 taps: 16 multiply-adds per input pixel instead of 36, and no upsampled copy in
memory. The CPU plugin runs it with the same AMX bf16 or AVX-512 kernels as a convolution.

`bf16_islands` (a precision choice, not a rewrite: build-time parity decides whether it ships):
the CPU plugin compiles one inference precision per model and ignores per-node f32 marks under a
bf16 hint, but it keeps explicit Converts. So in a model compiled f32, a MatMul whose input and
weights are converted to bf16 runs bf16 (its runtimePrecision says so), and the rest stays f32.

Build hosts need only openvino for this module.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov

from alignvar_edge.runtimes.openvino.opset import opset13

ops = opset13()

__all__ = ["argmax_as_reductions", "bf16_islands", "group_norm_channels_last", "matmul_in_bf16",
           "upsample_conv_as_deconvolution"]


def argmax_as_reductions(model: Any) -> int:
    """Replace every TopK that is an argmax (k = 1, mode max, values unused) over the last axis.

    Ties resolve to the first index, as ONNX ArgMax (select_last_index = 0) and a stable TopK do.
    Returns the number of TopK nodes replaced."""
    replaced = 0
    for node in model.get_ordered_ops():
        if not _is_argmax(node):
            continue
        logits = node.input(0).get_source_output()
        width = logits.get_partial_shape()[-1].get_length()
        last = np.array([-1], np.int64)
        top = ops.reduce_max(logits, last, keep_dims=True)
        position = ops.constant(np.arange(width, dtype=np.int32))
        beyond = ops.constant(np.array(width, np.int32))
        first = ops.reduce_min(ops.select(ops.equal(logits, top), position, beyond), last, keep_dims=True)
        # a row of NaN matches nowhere: clamp so the index stays a valid token, as TopK's would
        first = ops.minimum(first, ops.constant(np.array(width - 1, np.int32)))
        node.output(1).replace(ops.convert(first, node.output(1).get_element_type()).output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def _is_argmax(node: Any) -> bool:
    if node.get_type_name() != "TopK" or node.output(0).get_target_inputs():
        return False
    attrs = node.get_attributes()
    k = node.input(1).get_source_output().get_node()
    rank = node.input(0).get_partial_shape().rank
    width = node.input(0).get_partial_shape()[-1] if rank.is_static else None
    return (attrs.get("mode") == "max" and k.get_type_name() == "Constant"
            and np.asarray(k.get_data()).size == 1 and int(np.asarray(k.get_data()).ravel()[0]) == 1
            and rank.is_static and attrs.get("axis") in (-1, rank.get_length() - 1)
            and width is not None and width.is_static)


def group_norm_channels_last(model: Any, spare_outputs: tuple[str, ...] = ()) -> int:
    """Rewrite every exported GroupNorm (Reshape -> MVN -> Reshape, then a per-channel Multiply and
    Add where present) without the channel-major Reshape, except those any output named in
    `spare_outputs` depends on. Returns the number of norms rewritten."""
    spared = _ancestors(model, spare_outputs)
    replaced = 0
    for mvn in model.get_ordered_ops():
        found = None if mvn.get_friendly_name() in spared else _group_norm(mvn)
        if found is None:
            continue
        x, groups, eps, gamma, beta, last = found
        last.output(0).replace(_group_norm_from_channel_means(x, groups, eps, gamma, beta).output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def _ancestors(model: Any, outputs: tuple[str, ...]) -> set[str]:
    """Friendly names of every op the named model outputs depend on."""
    todo = [o.get_node() for o in model.outputs if set(o.get_names()) & set(outputs)]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        todo += [node.input(i).get_source_output().get_node() for i in range(node.get_input_size())]
    return seen


def _group_norm(mvn: Any) -> tuple[Any, int, float, np.ndarray, np.ndarray, Any] | None:
    """(input, groups, eps, gamma, beta, the Add it ends in) when `mvn` is an exported GroupNorm."""
    if mvn.get_type_name() != "MVN":
        return None
    attrs = mvn.get_attributes()
    into = mvn.input(0).get_source_output().get_node()
    axes = mvn.input(1).get_source_output().get_node()
    if (into.get_type_name() != "Reshape" or axes.get_type_name() != "Constant"
            or list(np.asarray(axes.get_data()).ravel()) not in ([2], [-1])
            or not attrs.get("normalize_variance") or attrs.get("eps_mode") != "INSIDE_SQRT"):
        return None
    x = into.input(0).get_source_output()
    shape, grouped = x.get_partial_shape(), mvn.get_output_partial_shape(0)
    # the batch and the image size may be dynamic; the channels and the groups may not
    if (shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[1].is_dynamic
            or grouped.rank.is_dynamic or grouped.rank.get_length() != 3 or grouped[1].is_dynamic):
        return None
    channels, groups = shape[1].get_length(), grouped[1].get_length()
    space = [shape[2], shape[3]]
    if all(d.is_static for d in space) and (grouped[2].is_dynamic or grouped[2].get_length()
                                            != channels // max(groups, 1) * space[0].get_length() * space[1].get_length()):
        return None              # not [N, G, C/G * H * W]: some other reshape feeds this MVN
    back = _only_consumer(mvn)
    if (channels % groups or back is None or back.get_type_name() != "Reshape"
            or not back.get_output_partial_shape(0).same_scheme(shape)):
        return None
    # the affine part, where the conversion kept it (a weight of ones or a bias of zeros folds away)
    end, affine = back, {"Multiply": np.ones(channels, np.float32), "Add": np.zeros(channels, np.float32)}
    for kind in ("Multiply", "Add"):
        user = _only_consumer(end)
        values = _per_channel(user, channels) if user is not None and user.get_type_name() == kind else None
        if values is not None:
            end, affine[kind] = user, values
    return x, groups, float(attrs["eps"]), affine["Multiply"], affine["Add"], end


def _only_consumer(node: Any) -> Any | None:
    users = list(node.output(0).get_target_inputs())
    return users[0].get_node() if len(users) == 1 and node.get_output_size() == 1 else None


def _per_channel(node: Any, channels: int) -> np.ndarray | None:
    """The [C] values of `node`'s constant operand when it is constant over batch and space."""
    const = node.input(1).get_source_output().get_node()
    if const.get_type_name() != "Constant":
        return None
    values = np.asarray(const.get_data(), np.float32)
    if values.ndim != 4 or values.shape[0] != 1 or values.shape[1] not in (1, channels):
        return None
    per_channel = values[:, :, :1, :1]
    if not np.array_equal(values, np.broadcast_to(per_channel, values.shape)):
        return None
    return np.broadcast_to(per_channel.ravel(), (channels,)).copy()


def _group_norm_from_channel_means(x: Any, groups: int, eps: float, gamma: np.ndarray, beta: np.ndarray) -> Any:
    c = x.get_partial_shape()[1].get_length()
    space = np.array([2, 3], np.int64)

    def over_groups(per_channel: Any) -> Any:        # [N, C, 1, 1] -> its group's mean, per channel
        # a 0 in a Reshape target keeps that input dimension: the batch, static or not
        grouped = ops.reshape(per_channel, ops.constant(np.array([0, groups, c // groups], np.int64)), True)
        mean = ops.reduce_mean(grouped, np.array([2], np.int64), keep_dims=True)
        spread = ops.broadcast(mean, ops.shape_of(grouped))
        return ops.reshape(spread, ops.constant(np.array([0, c, 1, 1], np.int64)), True)

    # every channel of a group covers the same H x W pixels, so the mean of channel means is the group mean
    centred = ops.subtract(x, over_groups(ops.reduce_mean(x, space, keep_dims=True)))
    variance = over_groups(ops.reduce_mean(ops.multiply(centred, centred), space, keep_dims=True))
    inv_std = ops.divide(ops.constant(np.float32(1.0)), ops.sqrt(ops.add(variance, ops.constant(np.float32(eps)))))
    scale = ops.multiply(inv_std, ops.constant(gamma.reshape(1, c, 1, 1)))
    return ops.add(ops.multiply(centred, scale), ops.constant(beta.reshape(1, c, 1, 1)))


# One axis of nearest x2 then a 3-tap convolution (pad 1), as a stride-2 transposed convolution
# (pad 1): row r of this matrix says which of the 3 taps add up into each of its 4 taps. An even
# output row 2i reads input rows i-1 (tap 0) and i (taps 1 + 2); an odd one 2i+1 reads i (taps
# 0 + 1) and i+1 (tap 2); the transposed convolution puts input row j at output 2j - 1 + its tap.
_TAPS_3_TO_4 = np.array([[0, 0, 1, 1],
                         [0, 1, 1, 0],
                         [1, 1, 0, 0]], np.float32)


def upsample_conv_as_deconvolution(model: Any, spare_outputs: tuple[str, ...] = ()) -> int:
    """Replace every nearest x2 Interpolate feeding only a 3x3, stride-1, pad-1 Convolution with
    constant f32 weights by one stride-2 ConvolutionBackpropData, except where an output named in
    `spare_outputs` depends on it. Returns the number of pairs replaced."""
    spared = _ancestors(model, spare_outputs)
    replaced = 0
    for conv in model.get_ordered_ops():
        up = conv.input(0).get_source_output().get_node() if conv.get_type_name() == "Convolution" else None
        if up is None or conv.get_friendly_name() in spared or not _nearest_x2(up) or not _same_3x3(conv):
            continue
        weights = np.asarray(conv.input(1).get_source_output().get_node().get_data(), np.float32)
        # (out, in, 3, 3) -> (in, out, 4, 4), the layout ConvolutionBackpropData reads
        kernel = np.einsum("oiyx,ya,xb->ioab", weights, _TAPS_3_TO_4, _TAPS_3_TO_4).astype(np.float32)
        deconv = ops.convolution_backprop_data(up.input(0).get_source_output(), ops.constant(kernel), [2, 2],
                                               pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1])
        deconv.set_friendly_name(conv.get_friendly_name())      # the manifest's groups find it by name
        conv.output(0).replace(deconv.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def _nearest_x2(node: Any) -> bool:
    """`node` is an Interpolate that copies each pixel into a 2x2 block, feeding one op only."""
    if node.get_type_name() != "Interpolate" or _only_consumer(node) is None:
        return False
    attrs = node.get_attributes()
    before, after = node.input(0).get_partial_shape(), node.get_output_partial_shape(0)
    if (attrs.get("mode") != "nearest" or attrs.get("antialias")
            or attrs.get("coordinate_transformation_mode") != "asymmetric" or attrs.get("nearest_mode") != "floor"
            or any(attrs.get("pads_begin") or ()) or any(attrs.get("pads_end") or ())
            or before.rank.is_dynamic or before.rank.get_length() != 4 or after.rank.is_dynamic):
        return False
    if not all(before[i].is_static and after[i].is_static for i in (1, 2, 3)):
        return False
    return (after[1].get_length() == before[1].get_length()
            and all(after[i].get_length() == 2 * before[i].get_length() for i in (2, 3)))


def _same_3x3(conv: Any) -> bool:
    """`conv` is a 3x3, stride-1, pad-1, undilated Convolution with constant f32 weights."""
    attrs = conv.get_attributes()
    weights = conv.input(1).get_source_output()
    return (weights.get_node().get_type_name() == "Constant" and weights.get_element_type() == ov.Type.f32
            and list(weights.get_shape())[2:] == [3, 3] and list(attrs["strides"]) == [1, 1]
            and list(attrs["dilations"]) == [1, 1] and list(attrs["pads_begin"]) == [1, 1]
            and list(attrs["pads_end"]) == [1, 1] and attrs.get("auto_pad") in ("explicit", "notset"))


def bf16_islands(model: Any, names: set[str]) -> int:
    """Compute the constant-weight MatMuls whose friendly name (or its part before '/') is in
    `names` in bf16: input and weights converted to bf16, the product converted back to f32.
    Returns the number of MatMuls changed."""
    changed = 0
    for node in model.get_ordered_ops():
        name = node.get_friendly_name()
        if node.get_type_name() != "MatMul" or (name not in names and name.split("/")[0] not in names):
            continue
        weights = node.input(1).get_source_output()
        if weights.get_node().get_type_name() != "Constant" or weights.get_element_type() != ov.Type.f32:
            continue
        matmul_in_bf16(node)
        changed += 1
    if changed:
        model.validate_nodes_and_infer_types()
    return changed


def matmul_in_bf16(node: Any) -> None:
    """Replace the MatMul `node` by one of its inputs converted to bf16, the product converted back to
    f32; the bf16 MatMul keeps the friendly name (the manifest's per-group precision finds it by name)."""
    name, attrs = node.get_friendly_name(), node.get_attributes()
    a, b = (ops.convert(node.input(i).get_source_output(), "bf16") for i in range(2))
    product = ops.matmul(a, b, attrs["transpose_a"], attrs["transpose_b"])
    product.set_friendly_name(name)
    back = ops.convert(product, "f32")
    back.set_friendly_name(f"{name}/f32")
    node.output(0).replace(back.output(0))
