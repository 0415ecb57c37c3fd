"""The AlignVAR model. Importing this package is torch-free (a device runtime reads configs through
it); `AlignVAR` loads PyTorch on first use."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignvar_edge.model.config import PRESETS, AlignVARConfig

if TYPE_CHECKING:
    from alignvar_edge.model.alignvar import AlignVAR

__all__ = ["AlignVAR", "AlignVARConfig", "PRESETS"]


def __getattr__(name: str) -> Any:
    if name == "AlignVAR":
        from alignvar_edge.model.alignvar import AlignVAR
        return AlignVAR
    raise AttributeError(f"module 'alignvar_edge.model' has no attribute {name!r}")
