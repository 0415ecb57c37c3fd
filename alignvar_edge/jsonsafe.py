"""JSON that every parser reads back.

JSON has no NaN or infinities, and Python's `json` writes them as bare `NaN`/`Infinity`, which
strict parsers (jq, JavaScript, Go) reject. Identical images give an infinite PSNR and images too
small for a score give NaN, so every JSON file and `--json` document goes through `dumps`: those
values become the strings "inf", "-inf" and "nan".
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

__all__ = ["dumps", "json_safe", "loads"]


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


def loads(text: str | bytes) -> Any:
    """`json.loads` of a file someone else may have written (a manifest.json, a config.json): every
    way it fails is a ValueError with a reason a user can act on, as JSONDecodeError and non-UTF-8
    bytes already are. Nesting deeper than Python's stack (json raises RecursionError) and an
    integer longer than Python converts (sys.get_int_max_str_digits(): ValueError advising a
    setting no user of ours can change) are refused the same way."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply to read") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as e:
        if "integer string conversion" not in str(e):
            raise
        raise ValueError(f"it holds an integer of more than {sys.get_int_max_str_digits()} digits") from None
