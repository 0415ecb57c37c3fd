"""JSON that every parser reads back.

JSON has no NaN or infinities, and Python's `json` writes them as bare `NaN`/`Infinity`, which
strict parsers (jq, JavaScript, Go) reject. Identical images give an infinite PSNR and images too
small for a score give NaN, so every JSON file and `--json` document goes through `dumps`: those
values become the strings "inf", "-inf" and "nan".
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "json_safe"]


def json_safe(x: Any) -> Any:
    """`x` with every non-finite float (Python or NumPy) replaced by "inf", "-inf" or "nan"."""
    if isinstance(x, (float, np.floating)):
        if math.isfinite(x):
            return float(x)
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def dumps(x: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """The JSON text of `x` with a final newline; unknown objects are written as their str()."""
    return json.dumps(json_safe(x), indent=indent, sort_keys=sort_keys, default=str, allow_nan=False) + "\n"
