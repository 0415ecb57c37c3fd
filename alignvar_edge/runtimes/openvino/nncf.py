"""NNCF, OpenVINO's own quantizer, as the OpenVINO backend uses it: `nncf_quantize` (INT8
activations + weights, calibrated on LR tiles, the precision policy's float components kept out by
an ignored scope mapped from ONNX node names to OpenVINO ops) and `nncf_compress_weights`
(INT8 weight-only). The ONNX-level quantizers (Q/DQ, FP16, the policy and the fidelity search)
are in `alignvar_edge.quantize`; this adapter lives with the backend whose IR it rewrites.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from alignvar_edge.cpuinfo import has_vnni, is_x86
from alignvar_edge.lazy import lazy_import
from alignvar_edge.muted import loggers_at, muted
from alignvar_edge.quantize.policy import Policy, classify
from alignvar_edge.runtimes.openvino.opset import opset13

nncf = lazy_import("nncf")
onnx = lazy_import("onnx")

__all__ = ["IGNORED_TYPES", "ignored_scope_names", "nncf_compress_weights", "nncf_quantize", "overflow_fix", "tile_batches",
           "widen_head_scales"]

# Float-only op types: NNCF must not put quantizers on their inputs.
# Gather: NNCF would store embedding tables (token path) as int8 weights. ReduceMax/ReduceMin/
# Equal/Select: the argmax as `rewrite.argmax_as_reductions` writes it (the logits stay float).
IGNORED_TYPES = ["Softmax", "MVN", "NormalizeL2", "ReduceL2", "GroupNormalization", "TopK",
                 "ReduceMax", "ReduceMin", "Equal", "Select", "ScaledDotProductAttention", "Gather"]


def ignored_scope_names(onnx_path: Path, ov_model: Any,
                        policy: Policy | None = None) -> tuple[list[str], dict[str, str]]:
    """OV op names of the MatMul/Convolution ops the policy keeps in float, and their components
    (groups the policy returns to float on top of its components are reported as 'search').

    The policy classifies ONNX nodes by the module scope the exporter recorded (the logits head,
    AdaLN, attention products, SCA and resampling matrices stay float). OpenVINO keeps the ONNX
    node name as the op's friendly name (Convolution gets a '/WithoutBiases' suffix) and the
    ONNX output names as tensor names, which is how an OV op finds its ONNX node.
    """
    proto = onnx.load(str(onnx_path), load_external_data=False)
    policy = policy or Policy()
    nodes = classify(proto)
    comp_of = {q.name: "search" if q.group in policy.float_groups else q.component for q in nodes}
    keep_float = {q.name for q in nodes if not policy.selects(q)}
    by_output = {o: n.name for n in proto.graph.node for o in n.output}
    names, why = [], {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in ("MatMul", "Convolution"):
            continue
        fname = op.get_friendly_name()
        cands = [fname, fname.split("/")[0]] + [by_output.get(t, "") for t in op.output(0).get_names()]
        onnx_name = next((c for c in cands if c in comp_of), None)
        if onnx_name is None:
            # an op OpenVINO made itself (e.g. a constant Multiply folded into a conv on the SCA
            # path): its role is unknown, so it stays float
            names.append(fname)
            why[fname] = "unmapped"
        elif onnx_name in keep_float:
            names.append(fname)
            why[fname] = comp_of[onnx_name]
    return names, why


def widen_head_scales(ov_model: Any) -> int:
    """Broadcast per-head (1, H, 1, 1) multiplier constants to (1, H, 1, head_dim); same values.

    Works around an OpenVINO 2026.4 CPU compile failure on INT8 models: with a trained per-head
    attention scale (a (1, H, 1, 1) Multiply before the rotary embedding), the CPU plugin's
    low-precision passes reshape it into a (1, H, H, L, hd) tensor and compilation fails
    ("Requested output shape ... is incompatible"). Random-init models, whose head scales are
    all equal and fold to a scalar, do not show it. Returns the number of constants widened.
    """
    ops = opset13()
    n = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Multiply":
            continue
        out = list(op.get_output_partial_shape(0).to_shape()) if op.get_output_partial_shape(0).is_static else []
        for i in range(2):
            src = op.input(i).get_source_output().get_node()
            if src.get_type_name() != "Constant" or len(out) != 4:
                continue
            shp = list(src.get_output_shape(0))
            if len(shp) == 4 and shp[0] == 1 and shp[1] > 1 and shp[2:] == [1, 1] and out[3] > 1:
                wide = np.broadcast_to(src.get_data(), (1, shp[1], 1, out[3])).copy()
                op.input(i).replace_source_output(ops.constant(wide).output(0))
                n += 1
    return n


def tile_batches(tiles: np.ndarray, batch: int) -> list[np.ndarray]:
    """Calibration tiles as the engine's batches (a last partial batch is dropped)."""
    from alignvar_edge.quantize.calibration.sets import full_batches
    return [tiles[i:i + batch] for i in full_batches(tiles.shape[0], batch)]


def overflow_fix(vnni: bool | None, x86: bool) -> tuple[bool, str]:
    """Whether NNCF's overflow fix is needed on this CPU, and why: x86 without VNNI/AMX saturates
    int8 dot products, an Arm CPU's do not, and an x86 whose flags cannot be read is taken for one
    that saturates. (`vnni`: `has_vnni()`; an engine built without the fix warns where it is
    loaded on an x86 CPU that saturates.)"""
    if vnni is not None:
        return (False, "CPU has VNNI/AMX") if vnni else (True, "CPU without VNNI/AMX")
    return (True, "x86 CPU whose features could not be read") if x86 else (False, "not an x86 CPU")


def nncf_quantize(ov_model: Any, onnx_path: Path, items: list[Any], preset: str = "performance",
                  policy: Policy | None = None) -> tuple[Any, dict[str, Any]]:
    """INT8 activations + weights with NNCF (see the module docstring); returns (model, recipe).
    `items`: the model's calibration inputs, one per call (an array, or a dict by input name);
    `onnx_path`: the ONNX graph the model was converted from, whose scopes the policy judges."""
    policy = policy or Policy()
    names, why = ignored_scope_names(onnx_path, ov_model, policy)
    widened = widen_head_scales(ov_model)
    overflow, reason = overflow_fix(has_vnni(), is_x86())
    # SmoothQuant off: it rescales activations and weights of float matmuls too (exact in theory,
    # not in fp32 rounding), which flipped 1.4% of alignvar-tiny's tokens with no op in int8
    adv = nncf.AdvancedQuantizationParameters(
        overflow_fix=nncf.OverflowFix.ENABLE if overflow else nncf.OverflowFix.DISABLE,
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1, convolution=-1))
    scope = nncf.IgnoredScope(names=names, types=IGNORED_TYPES, validate=False)
    with _quiet_nncf():
        q = nncf.quantize(ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                          preset=nncf.QuantizationPreset(preset), subset_size=len(items),
                          ignored_scope=scope, advanced_parameters=adv)
    recipe = {"tool": "nncf.quantize", "model_type": "TRANSFORMER", "preset": preset,
              "overflow_fix": "ENABLE" if overflow else "DISABLE",
              "overflow_fix_reason": reason, "built_on_x86": is_x86(),
              "subset_size": len(items), "ignored_types": IGNORED_TYPES, "smooth_quant": False,
              "ignored_ops": len(names), "ignored_by_component": _count(why.values()),
              "widened_head_scales": widened, "policy": policy.to_dict()}
    return q, recipe


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF prints tables and progress bars on stdout (rich, with no setting that turns them off);
    builds report their own summary."""
    # its own logger's level, put back as found (nncf.set_log_level would leave INFO, whatever the host set)
    with muted("stdout"), loggers_at(("nncf",), logging.ERROR):
        yield


def nncf_compress_weights(ov_model: Any, onnx_path: Path, policy: Policy | None = None) -> tuple[Any, dict[str, Any]]:
    """INT8 weight-only compression (no calibration data) of the weights the policy quantizes; the
    ones it keeps float (the logits head above all: its rounding flips greedy choices) stay f32.
    Returns (model, recipe)."""
    policy = policy or Policy()
    names, why = ignored_scope_names(onnx_path, ov_model, policy)
    with _quiet_nncf():
        q = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                  ignored_scope=nncf.IgnoredScope(names=names, validate=False))
    return q, {"tool": "nncf.compress_weights", "mode": "INT8_ASYM", "weights_only": True,
               "ignored_ops": len(names), "ignored_by_component": _count(why.values()), "policy": policy.to_dict()}


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))
