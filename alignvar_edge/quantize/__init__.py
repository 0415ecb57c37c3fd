"""The quantization room: calibration data, INT8 Q/DQ and FP16 ONNX, precision policies, the
fidelity search, and the `quantize` verb. Backend-native quantizers (NNCF, Core ML weight
quantization) live with their backends under `alignvar_edge.runtimes`."""
