"""OpenVINO releases the `openvino` extra allows that differ from the pinned one: 2024.x keeps its op
factories in openvino.runtime, and 2025.0-2026.1's convert_model tries every file as a PyTorch model
first. Each is stood in for here on the installed OpenVINO, which has neither."""
from __future__ import annotations

import importlib
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino")


def _argmax_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["i"], axis=-1, keepdims=0)], "argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_builds_take_openvino_2024s_ops_from_where_it_keeps_them(tmp_path: Path, monkeypatch) -> None:
    # OpenVINO 2024.4-2024.6 has no openvino.opset13, only openvino.runtime.opset13: every build
    # stopped at `import openvino.opset13` (ModuleNotFoundError) where 2024.4 builds fine otherwise
    opset13 = importlib.import_module("openvino.opset13")
    monkeypatch.setitem(sys.modules, "openvino.opset13", None)           # import of it: ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "openvino.runtime.opset13", opset13)
    for module in ("alignvar_edge.runtimes.openvino.rewrite", "alignvar_edge.runtimes.openvino.nncf"):
        monkeypatch.delitem(sys.modules, module, raising=False)          # imported afresh, under 2024's layout
    rewrite = importlib.import_module("alignvar_edge.runtimes.openvino.rewrite")
    model = ov.convert_model(str(_argmax_onnx(tmp_path / "a.onnx")))
    assert rewrite.argmax_as_reductions(model) == 1
    x = np.array([[0, 3, 3, 1, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0, 9]], np.float32)
    np.testing.assert_array_equal(ov.Core().compile_model(model, "CPU")({0: x})[0], [1, 7])
    nncf_adapter = importlib.import_module("alignvar_edge.runtimes.openvino.nncf")
    p = opset13.parameter([1, 2, 4, 8], np.float32)
    scale = np.array([1.0, 2.0], np.float32).reshape(1, 2, 1, 1)
    scaled = ov.Model([opset13.multiply(p, opset13.constant(scale))], [p])
    assert nncf_adapter.widen_head_scales(scaled) == 1


def test_a_build_keeps_openvinos_pytorch_probe_of_the_onnx_file_unsaid(tmp_path: Path, monkeypatch) -> None:
    # OpenVINO 2025.0-2026.1's convert_model first loads any path with torch.jit.load and
    # torch.export.load: on an ONNX file torch logged a 13-line 'PytorchStreamReader failed ...
    # checkpoint file is corrupted' traceback and warned that torch.jit.load is deprecated, on
    # every build, which then succeeded. Its words stood in for here, around the real conversion.
    from alignvar_edge.runtimes.openvino import backend
    convert = ov.convert_model

    def probing_convert(path: str) -> object:
        logging.getLogger("torch.export").warning("Ran into the following error when deserializing")
        warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", DeprecationWarning)
        warnings.warn("a warning of the conversion itself", UserWarning)
        return convert(path)

    monkeypatch.setattr(backend.ov, "convert_model", probing_convert)
    level = logging.getLogger("torch.export").level
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append            # type: ignore[method-assign]
    logging.getLogger("torch.export").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            rewrites: dict[str, int] = {}
            backend._read_onnx(_argmax_onnx(tmp_path / "a.onnx"), rewrites)
    finally:
        logging.getLogger("torch.export").removeHandler(handler)
    assert rewrites == {"argmax": 1} and logged == []
    assert [str(w.message) for w in said] == ["a warning of the conversion itself"]
    assert logging.getLogger("torch.export").level == level         # after the call, torch.export speaks again
