"""Optional third-party packages (onnxruntime, openvino, nncf, tensorrt, coremltools, and torch on
the device side), named at a module's top and imported on first use.

    ort = lazy_import("onnxruntime")     # nothing imported yet
    ort.InferenceSession(...)            # imports onnxruntime here; ImportError if it is absent

So `import alignvar_edge.runtimes` imports none of them, and a module says what it depends on where
its other imports are. A missing package raises the ordinary ImportError (ModuleNotFoundError with
`.name`) at first use, which the backends turn into their "not installed" message.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "is_installed", "lazy_import"]


class LazyModule(ModuleType):
    """A stand-in for module `name` that imports it on the first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lazy_name = name
        self._lazy_module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._lazy_module is None:
            self._lazy_module = importlib.import_module(self._lazy_name)
        return self._lazy_module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_lazy_"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())


def lazy_import(name: str) -> Any:
    """Module `name`, imported when first used (typed Any: annotate with a TYPE_CHECKING import)."""
    return LazyModule(name)


def is_installed(name: str) -> bool:
    """Whether `name` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):      # a parent package missing, or a broken install
        return False
