"""Core ML weight compression, coremltools' own quantizers: `int8-weights` (symmetric per-channel
linear quantization) and `paletteN` (k-means palettization to N bits). The ONNX-level quantizers
are in `alignvar_edge.quantize`; this adapter lives with the backend whose package it rewrites.
"""
from __future__ import annotations

from typing import Any

from alignvar_edge.lazy import lazy_import
from alignvar_edge.runtimes.coreml.ct import quiet

cto = lazy_import("coremltools.optimize.coreml")

__all__ = ["WEIGHT_OPS", "compress"]

# the ops whose constant inputs are compressed: the layers' weights, as the Linux proxy does. A
# global config also took the rotary cos/sin tables and the positional constants conversion folds
# to (batch, L, C) tensors, and the VQ codebook of the token gathers (32 KB in alignvar-tiny): not
# layer weights, and none of them in the proxy
WEIGHT_OPS = ("linear", "conv")


def compress(ml: Any, precision: str) -> tuple[Any, dict[str, Any] | None]:
    """Weight-only INT8 or k-means palettization of a converted model."""
    if precision == "int8-weights":
        q = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        with quiet():
            return cto.linear_quantize_weights(ml, config=cto.OptimizationConfig(
                op_type_configs={t: q for t in WEIGHT_OPS})), {
                "tool": "coremltools.optimize.coreml.linear_quantize_weights", "mode": "linear_symmetric",
                "dtype": "int8", "granularity": "per_channel", "weights_only": True, "op_types": list(WEIGHT_OPS)}
    if precision.startswith("palette"):
        nbits = int(precision[len("palette"):])
        p = cto.OpPalettizerConfig(mode="kmeans", nbits=nbits)
        with quiet():
            return cto.palettize_weights(ml, config=cto.OptimizationConfig(op_type_configs={t: p for t in WEIGHT_OPS})), {
                "tool": "coremltools.optimize.coreml.palettize_weights", "mode": "kmeans", "nbits": nbits,
                "weights_only": True, "op_types": list(WEIGHT_OPS)}
    return ml, None
