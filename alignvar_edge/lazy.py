"""Optional third-party packages (onnxruntime, openvino, nncf, tensorrt, coremltools, and torch on
the device side), named at a module's top and imported on first use.

    ort = lazy_import("onnxruntime")     # nothing imported yet
    ort.InferenceSession(...)            # imports onnxruntime here; ImportError if it is absent

So `import alignvar_edge.runtimes` imports none of them, and a module says what it depends on where
its other imports are. A missing package raises the ordinary ImportError (ModuleNotFoundError with
`.name`) at first use, which the backends turn into their "not installed" message.

Importing this module also turns ONNX Runtime's usage telemetry off for this process
(`keep_runtimes_local`), before it is imported; OpenVINO's is turned off where the toolkit first
imports openvino or nncf (`keep_openvino_local`).
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from traceback import walk_tb
from types import ModuleType
from typing import Any

from alignvar_edge.errors import host_tools_error

__all__ = ["HOST_ONLY", "LazyModule", "host_package", "import_host", "keep_openvino_local", "keep_runtimes_local",
           "lazy_import", "needs_host"]

# packages of the `host` extra, which a device install (the `device` extra alone) does not have
HOST_ONLY = ("torch", "onnx", "onnxscript", "skimage")


def keep_runtimes_local() -> None:
    """No usage telemetry from ONNX Runtime in this process, and so nothing of its written into
    $HOME, no network connection and no warnings of its where HOME is read-only. Per process: the
    user's own consent settings are left as they are. Takes effect only before onnxruntime is first
    imported (it reads its switch once)."""
    # ONNX Runtime's opt-out: no device ID in ~/.cache/Microsoft/DeveloperTools, no uploader, no events
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def keep_openvino_local() -> None:
    """The same for OpenVINO and NNCF, called where the toolkit first imports them (the OpenVINO
    backend's package, the bench's peak): not at `import alignvar_edge`, so that a program embedding
    the toolkit that never runs OpenVINO can still import openvino_telemetry itself. Takes effect
    only before openvino is first imported (it binds its telemetry at import)."""
    # OpenVINO's opt-out (`opt_in_out --opt_out`) writes the user's consent for every program; without
    # the openvino_telemetry package, openvino and nncf use their own no-op stand-ins, in this process only
    sys.modules.setdefault("openvino_telemetry", None)      # type: ignore[arg-type]


keep_runtimes_local()        # here: every import of a runtime comes after this module's


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


def host_package(error: ImportError) -> str | None:
    """The host-only package (torch, onnx, ...) that `error` is about, or None: the one it names
    (missing, or missing a module of its own), else the one whose code raised it (an installed
    onnxscript that imports an absent onnx_ir). Only the raising frame counts: torch calling back
    into code that imports an absent module of its own is no fault of torch's."""
    top = (error.name or "").split(".")[0]
    if top in HOST_ONLY:
        return top
    # CPython strips its import machinery's frames; importlib.import_module's own is not the raiser
    tops = [str(frame.f_globals.get("__name__", "")).split(".")[0] for frame, _ in walk_tb(error.__traceback__)]
    raised_in = next((module for module in reversed(tops) if module != "importlib"), None)
    return raised_in if raised_in in HOST_ONLY else None


@contextmanager
def needs_host(what: str) -> Iterator[None]:
    """Inside it, an import of a host-only package that is missing (a device install), or installed
    but unable to import what it needs (too old, or not for this torch), raises HostToolsError:
    `what` needs it, and the pip command that installs one that works."""
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
