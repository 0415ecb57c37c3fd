"""Argument types for the CLI's numeric flags: checked at parse time, so a bad value is a one-line
argparse error naming the flag (`alignvar-edge upscale: error: argument --threads: must be >= 1, got
'-1'`, exit 2), never a traceback later or a limit silently switched off (`--max-megapixels nan`)."""
from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from alignvar_edge.caller import option
from alignvar_edge.errors import InputError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_MAX_MEGAPIXELS", "MAX_BATCH", "MAX_TILES", "SEED_LIMIT", "batch_size", "check_fraction",
           "check_nonneg_float", "check_seed", "fraction", "int_at_least", "is_integer", "nonneg_float", "nonneg_int",
           "percent", "positive_float", "positive_int", "random_seed", "tile_count"]

# The most tiles a tile-count flag (--tiles, --val-tiles, --calib-tiles) takes. Every tile is cut,
# degraded and held in memory with its HR crop before any engine runs, then run one by one: 1024
# is 16 times the largest default (64) and ample for calibration and fidelity figures, and still
# about 3 GiB of tiles for a 512 px model; a stray `--tiles 100000000` would otherwise take hours
# filling memory until the run is killed, with nothing to show for it.
MAX_TILES = 1024

# The largest static batch of graphs and engines (--batch: tiles per call). Past the tiles a whole
# image needs, a batch only pads; 256 is 2.1 times the 121 tiles of a 512 px photo on
# alignvar-tiny (16 px LR tiles), and its one validation call stays within MAX_TILES. `--batch
# 100000` would otherwise trace and validate a graph with 100000 tiles per call until memory ran out.
MAX_BATCH = 256

# The largest input image (--max-megapixels, max_megapixels=), here beside the flags' other limits so
# that `runtimes` takes it as a default without importing the images package. x4 SR multiplies the
# pixel count by 16: 25 MP in is 400 MP out (1.2 GB as 8-bit RGB, 4.8 GB as float32 RGB, which the
# colour fix and the float functions of `runtimes.tiling` hold). 25, not 24: a camera sold as
# "24 MP" takes photos of up to 24.3 MP (6048x4024, a Nikon Z6), which a limit of 24 refused.
DEFAULT_MAX_MEGAPIXELS = 25.0

# Seeds (every --seed, and TrainOptions.seed) are below this: PyTorch's generators take 64-bit seeds
# (`torch.manual_seed(2**64)` raises "Overflow when unpacking long long", a traceback after the
# run's checks), and one seed feeds PyTorch and numpy alike.
SEED_LIMIT = 2**64
_SEED_RANGE = "an integer from 0 to 2**64-1"


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


def _one_to(high: int, why: str) -> Callable[[str], int]:
    """An integer from 1 to `high`; `why` says what the bound protects."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = 0
        if not 1 <= v <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {high} ({why}), got {text!r}")
        return v
    return parse


def random_seed(text: str) -> int:
    """A --seed flag's value, in SEED_LIMIT's range."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be {_SEED_RANGE}, got {text!r}")
    return v


def check_seed(name: str, value: object, error: type[Exception] = InputError) -> int:
    """Seed option `name` of a Python API call: an integer in SEED_LIMIT's range, or `error` naming it
    as the caller passes it, in the flag's words."""
    if not is_integer(value) or not 0 <= int(value) < SEED_LIMIT:
        raise error(f"{option(name, value)} must be {_SEED_RANGE}")
    return int(value)


tile_count = _one_to(MAX_TILES, "tiles are all held in memory")   # a number of tiles
batch_size = _one_to(MAX_BATCH, "tiles per call")                  # a static batch of graphs and engines


def positive_float(text: str) -> float:
    return _finite(text, "a finite number > 0", lambda v: v > 0)


_NONNEG = "a finite number >= 0"


def _is_nonneg(v: float) -> bool:
    return v >= 0


def nonneg_float(text: str) -> float:
    return _finite(text, _NONNEG, _is_nonneg)


def check_nonneg_float(name: str, value: object, error: type[Exception] = InputError) -> float:
    """Option `name` of a Python API call, where the flag's `nonneg_float` did not check it."""
    return _checked_real(name, value, _NONNEG, _is_nonneg, error)


_FRACTION = "a number in [0, 1]"


def _is_fraction(v: float) -> bool:
    return 0 <= v <= 1


def fraction(text: str) -> float:
    return _finite(text, _FRACTION, _is_fraction)


def check_fraction(name: str, value: object, error: type[Exception] = InputError) -> float:
    """Option `name` of a Python API call (an options dataclass, where the flag's `fraction` did not
    check it): a finite number in [0, 1], or `error` naming it as the caller passes it."""
    return _checked_real(name, value, _FRACTION, _is_fraction, error)


def _checked_real(name: str, value: object, what: str, ok: Callable[[float], bool],
                  error: type[Exception]) -> float:
    """`value` of option `name` as a float where it is a finite real number (not a bool: True is an
    int to Python) that `ok` takes, else `error` saying it must be `what`, as the caller spelt it."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value))
            or not ok(float(value))):
        raise error(f"{option(name, value)} must be {what}")
    return float(value)


def percent(text: str) -> float:
    return _finite(text, "a percentile in (0, 100]", lambda v: 0 < v <= 100)


def is_integer(x: object) -> TypeGuard[int | np.integer[Any]]:
    """An int or a numpy integer, not a bool (True is an int to Python, and 1.0, '2' are no counts):
    the one test an integer option of the Python API passes before its range is checked (numpy's
    integers are numbers.Integral, so numpy is not imported for it)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
