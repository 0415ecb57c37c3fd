"""The quantization room: calibration data, INT8 Q/DQ and FP16 ONNX, precision policies, the
fidelity search, and the `quantize` verb. Backend-native quantizers (NNCF, Core ML weight
quantization) live with their backends under `alignvar_edge.runtimes`.

From Python, what `alignvar-edge quantize` does (docs/quantization.md, "From Python"):

    >>> from alignvar_edge.quantize import QuantizeOptions, quantize_artifact
    >>> quantize_artifact("out/tiny", "out/tiny-int8", QuantizeOptions(precision="int8", target="onnxruntime"))

Public names are imported lazily: the pass needs the host tools (onnx, PyTorch's exporter).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignvar_edge.lazy import import_host

if TYPE_CHECKING:       # what the lazy names below are, for type checkers (the package ships py.typed)
    from alignvar_edge.quantize.artifact import QuantizeOptions, calibration_for, quantize_artifact
    from alignvar_edge.quantize.sensitivity import FidelityTarget

__all__ = ["FidelityTarget", "QuantizeOptions", "calibration_for", "quantize_artifact"]

_WHERE = {"QuantizeOptions": "artifact", "calibration_for": "artifact", "quantize_artifact": "artifact",
          "FidelityTarget": "sensitivity"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_host(f"alignvar_edge.quantize.{_WHERE[name]}", f"alignvar_edge.quantize.{name}"), name)
    raise AttributeError(f"module 'alignvar_edge.quantize' has no attribute {name!r}")
