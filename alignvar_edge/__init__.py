"""alignvar-edge: AlignVAR super-resolution from PyTorch to the edge."""
from __future__ import annotations

__version__ = "0.1.0"
