"""alignvar-edge: AlignVAR super-resolution from PyTorch to the edge.

The public API, each name imported on first use (so `import alignvar_edge` needs no PyTorch):

    from alignvar_edge import AlignVAR, export, build, load
    model = AlignVAR.from_pretrained("alignvar-tiny")         # PyTorch model (host)
    export(model, "out/tiny")                                   # validated ONNX artifact
    build("out/tiny", "openvino", out="out/tiny-ov")            # an engine directory
    sr = load("out/tiny-ov").upscale(image)                     # any backend, uint8/float/PIL in and out

The exception classes (`AlignVAREdgeError` and its subclasses, e.g. `InputError`; `OutOfMemoryError`,
a MemoryError) and `PrecisionWarning` are importable from here too; they need neither PyTorch nor a runtime.
The subpackages the docs import from (`alignvar_edge.images`, `.runtimes`, ...) are attributes too,
each imported on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignvar_edge.errors import (AlignVAREdgeError, ArtifactError, BackendUnavailableError, CheckpointError,
                                  ConfigError, EngineClosedError, HalfPrecisionError, HostToolsError, InputError,
                                  OutOfMemoryError, OutputExistsError, ParityError, PrecisionWarning,
                                  SkippedInputsError)

if TYPE_CHECKING:       # what the lazy names below are, for type checkers (the package ships py.typed)
    from alignvar_edge.export.onnx_export import export_onnx as export
    from alignvar_edge.model.alignvar import AlignVAR
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.runtimes import build, load

__version__ = "0.1.0"

# public name -> (module, attribute)
_API: dict[str, tuple[str, str | None]] = {
    "AlignVAR": ("alignvar_edge.model.alignvar", "AlignVAR"),
    "AlignVARConfig": ("alignvar_edge.model.config", "AlignVARConfig"),
    "export": ("alignvar_edge.export", None),          # the package, callable as export_onnx
    "build": ("alignvar_edge.runtimes", "build"),
    "load": ("alignvar_edge.runtimes", "load"),
}
# the subpackages and modules the docs import from: what dir() offers besides __all__, and attributes
# before they are imported (`alignvar_edge.images.load_image` after `import alignvar_edge`)
_SUBMODULES = ("bench", "export", "images", "model", "quantize", "runtimes", "samples", "train")
# a literal list: what `from alignvar_edge import *` and linters read (the lazy names, then the errors)
__all__ = ["__version__", "AlignVAR", "AlignVARConfig", "build", "export", "load",
           "AlignVAREdgeError", "ArtifactError", "BackendUnavailableError", "CheckpointError", "ConfigError",
           "EngineClosedError", "HalfPrecisionError", "HostToolsError", "InputError", "OutOfMemoryError",
           "OutputExistsError", "ParityError", "PrecisionWarning", "SkippedInputsError"]


def __getattr__(name: str) -> Any:
    if name in _API or name in _SUBMODULES:
        from alignvar_edge.lazy import import_host
        module, attr = _API.get(name, (f"alignvar_edge.{name}", None))
        # AlignVAR and export need PyTorch: on a device install, one error naming the host extra
        found = import_host(module, f"alignvar_edge.{name}")
        return found if attr is None else getattr(found, attr)
    raise AttributeError(f"module 'alignvar_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    # what completion in a REPL or notebook should offer: the public names (the lazy ones too) and
    # the documented subpackages, not what this module imports for itself (Any, TYPE_CHECKING,
    # annotations) nor the package's internal modules (muted, jsonsafe, ...)
    return sorted({*__all__, *_SUBMODULES})
