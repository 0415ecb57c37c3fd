"""The models that ship inside the package, and the default every verb uses. Torch-free: the CLI's
argument defaults and a device runtime read these names."""
from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
BUNDLED = ("alignvar-tiny",)
DEFAULT_CHECKPOINT = BUNDLED[0]
# the help of every verb's CHECKPOINT argument
CHECKPOINT_HELP = f"checkpoint directory or bundled name (default: {DEFAULT_CHECKPOINT})"
