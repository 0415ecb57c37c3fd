"""Core ML weight compression, coremltools' own quantizers: `int8-weights` (symmetric per-channel
linear quantization) and `paletteN` (k-means palettization to N bits). The ONNX-level quantizers
are in `alignvar_edge.quantize`; this adapter lives with the backend whose package it rewrites.
"""
from __future__ import annotations

from typing import Any

from alignvar_edge.lazy import lazy_import
from alignvar_edge.runtimes.coreml.ct import quiet

cto = lazy_import("coremltools.optimize.coreml")

__all__ = ["compress"]


def compress(ml: Any, precision: str) -> tuple[Any, dict[str, Any] | None]:
    """Weight-only INT8 or k-means palettization of a converted model."""
    if precision == "int8-weights":
        cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel"))
        with quiet():
            return cto.linear_quantize_weights(ml, config=cfg), {
                "tool": "coremltools.optimize.coreml.linear_quantize_weights", "mode": "linear_symmetric",
                "dtype": "int8", "granularity": "per_channel", "weights_only": True}
    if precision.startswith("palette"):
        nbits = int(precision[len("palette"):])
        cfg = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=nbits))
        with quiet():
            return cto.palettize_weights(ml, config=cfg), {
                "tool": "coremltools.optimize.coreml.palettize_weights", "mode": "kmeans", "nbits": nbits,
                "weights_only": True}
    return ml, None
