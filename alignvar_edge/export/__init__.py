"""torch -> ONNX export of the AlignVAR rollout (single and staged graphs), parity, lint, inspect
(the manifest each export writes is the core layer's `manifest.py`).

Public names are imported lazily so that `alignvar-edge --help` and manifest-only users do not pay
for importing torch and the exporter.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

from alignvar_edge.lazy import import_host

if TYPE_CHECKING:       # what the lazy names below are, for type checkers (the package ships py.typed)
    from alignvar_edge.export.onnx_export import export_onnx, load_onnx_models
    from alignvar_edge.export.staged import StagedRunner

__all__ = ["StagedRunner", "export_onnx", "load_onnx_models"]

_WHERE = {"export_onnx": "onnx_export", "load_onnx_models": "onnx_export", "StagedRunner": "staged"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_host(f"alignvar_edge.export.{_WHERE[name]}", f"alignvar_edge.export.{name}"), name)
    raise AttributeError(f"module 'alignvar_edge.export' has no attribute {name!r}")


class _CallableExportModule(types.ModuleType):
    """`from alignvar_edge import export` is this package, and calling it exports: the public API's
    `export(model, out_dir, ...)` is `export_onnx` (the package name would shadow a plain function).
    `inspect.signature(export)`, `help(export)` and a notebook's `export?` show `export_onnx`'s
    signature and docstring (imported when asked; without PyTorch, the package's own docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # without PyTorch (a device install): one error naming the host extra, not a bare import error
        return import_host("alignvar_edge.export.onnx_export", "alignvar_edge.export").export_onnx(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(_export_onnx_or_missing(AttributeError))

    @property
    def __doc__(self) -> str | None:          # type: ignore[override]  # read-only: derived
        package_doc = self.__dict__.get("__doc__")
        try:
            function = _export_onnx_or_missing(LookupError)
        except LookupError:
            return package_doc
        return (f"export{inspect.signature(function)}\n\nCalling this package is calling export_onnx:\n\n"
                f"{inspect.getdoc(function)}\n\n{package_doc}")


def _export_onnx_or_missing(missing: type[Exception]) -> Any:
    """`export_onnx`, or `missing` raised where it cannot be imported (no PyTorch here)."""
    try:
        return importlib.import_module("alignvar_edge.export.onnx_export").export_onnx
    except ImportError as e:
        raise missing("export_onnx needs the host extra (PyTorch)") from e


sys.modules[__name__].__class__ = _CallableExportModule
