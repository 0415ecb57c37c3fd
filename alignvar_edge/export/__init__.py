"""torch -> ONNX export of the AlignVAR rollout (single and staged graphs), parity, manifest, lint.

Public names are imported lazily so that `alignvar-edge --help` and manifest-only users do not pay
for importing torch and the exporter.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from alignvar_edge.lazy import import_host

__all__ = ["StagedRunner", "export_onnx", "load_onnx_models"]

_WHERE = {"export_onnx": "onnx_export", "load_onnx_models": "onnx_export", "StagedRunner": "staged"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_host(f"alignvar_edge.export.{_WHERE[name]}", f"alignvar_edge.export.{name}"), name)
    raise AttributeError(f"module 'alignvar_edge.export' has no attribute {name!r}")


class _CallableExportModule(types.ModuleType):
    """`from alignvar_edge import export` is this package, and calling it exports: the public API's
    `export(model, out_dir, ...)` is `export_onnx` (the package name would shadow a plain function)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # without PyTorch (a device install): one error naming the host extra, not a bare import error
        return import_host("alignvar_edge.export.onnx_export", "alignvar_edge.export").export_onnx(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableExportModule
