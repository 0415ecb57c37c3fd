"""The models that ship inside the package, the default every verb uses, and the two files every
checkpoint folder holds. Torch-free and manifest-free: the CLI's argument defaults, a device
runtime and the manifest's reader read these names."""
from __future__ import annotations

import os
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
BUNDLED = ("alignvar-tiny",)
DEFAULT_CHECKPOINT = BUNDLED[0]
# the help of every verb's CHECKPOINT argument
CHECKPOINT_HELP = f"checkpoint directory or bundled name (default: {DEFAULT_CHECKPOINT})"

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def checkpoint_files_in(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder with a checkpoint's config.json and model.safetensors (an export or
    engine that also has a manifest is told apart by whoever asks)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()
