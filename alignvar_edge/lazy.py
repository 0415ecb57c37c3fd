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
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from alignvar_edge.errors import host_tools_error

__all__ = ["HOST_ONLY", "LazyModule", "host_package", "import_host", "is_installed", "lazy_import",
           "needs_host"]

# packages of the `host` extra, which a device install (alignvar-edge[device]) does not have
HOST_ONLY = ("torch", "onnx", "onnxscript", "skimage")


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


def host_package(error: ImportError) -> str | None:
    """The host-only package (torch, onnx, ...) whose absence `error` reports, or None."""
    top = (error.name or "").split(".")[0]
    return top if top in HOST_ONLY else None


@contextmanager
def needs_host(what: str) -> Iterator[None]:
    """Inside it, an import of a host-only package that is missing (a device install) raises
    HostToolsError: `what` needs it, and the extra that installs it."""
    try:
        yield
    except ModuleNotFoundError as e:
        package = host_package(e)
        if package is None:
            raise
        raise host_tools_error(what, package) from e


def import_host(module: str, what: str) -> ModuleType:
    """Module `module`, imported now, under `needs_host(what)`."""
    with needs_host(what):
        return importlib.import_module(module)
