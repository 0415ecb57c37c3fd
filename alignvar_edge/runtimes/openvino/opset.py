"""The OpenVINO op factories (opset 13) that builds write ops with, from where the installed
openvino keeps them: `openvino.opset13` from 2025.0 on, `openvino.runtime.opset13` in 2024.x (which
builds and runs our engines too; `openvino>=2024.4` is the `openvino` extra's floor)."""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["opset13"]


def opset13() -> ModuleType:
    """openvino's opset 13 module, imported now (ModuleNotFoundError where openvino is absent)."""
    try:
        return importlib.import_module("openvino.opset13")
    except ModuleNotFoundError as e:
        if e.name != "openvino.opset13":        # openvino itself is missing: say that
            raise
        return importlib.import_module("openvino.runtime.opset13")
