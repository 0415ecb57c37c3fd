"""Argument types for the CLI's numeric flags: checked at parse time, so a bad value is a one-line
argparse error naming the flag (`alignvar-edge upscale: error: argument --threads: must be >= 1, got
'-1'`, exit 2), never a traceback later or a limit silently switched off (`--max-megapixels nan`)."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["fraction", "int_at_least", "nonneg_float", "nonneg_int", "percent", "positive_float", "positive_int"]


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
        return v
    parse.__name__ = f"integer >= {low}"
    return parse


def _finite(text: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def positive_float(text: str) -> float:
    return _finite(text, "a finite number > 0", lambda v: v > 0)


def nonneg_float(text: str) -> float:
    return _finite(text, "a finite number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    return _finite(text, "a number in [0, 1]", lambda v: 0 <= v <= 1)


def percent(text: str) -> float:
    return _finite(text, "a percentile in (0, 100]", lambda v: 0 < v <= 100)
