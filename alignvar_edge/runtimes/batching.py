"""Which static batch serves whole images best: measured time per call x calls per image.

Graphs have a static batch (fixed at export), and `upscale` feeds an image's tiles in full
batches, padding the last. A bigger batch amortises per-call overhead and packs GEMMs better, but
pads more tiles on the last call; which wins depends on the runtime and the host, so it is
measured: one engine per candidate batch, each timed on full batches, and the batch with the
lowest time for a whole image's tiles (`image_ms`) is kept.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from alignvar_edge.errors import InputError

__all__ = ["CANDIDATES", "image_ms", "pick_batch", "time_per_call"]

CANDIDATES = (1, 4, 8, 16)


def image_ms(batch: int, ms_per_call: float, tiles: int) -> float:
    """Time for one image of `tiles` tiles: full calls, the last one padded."""
    return math.ceil(tiles / batch) * ms_per_call


def pick_batch(ms_per_call: dict[int, float], tiles: int) -> tuple[int, dict[int, float]]:
    """(best batch, image ms per batch) from measured ms per call; ties go to the smaller batch."""
    if not ms_per_call or tiles < 1:
        raise InputError("need at least one measured batch and one tile to pick a batch")
    costs = {b: round(image_ms(b, t, tiles), 3) for b, t in sorted(ms_per_call.items())}
    return min(costs, key=lambda b: (costs[b], b)), costs


def time_per_call(engine: Any, runs: int = 3) -> float:
    """Median ms of one call on a full batch (after one untimed call)."""
    t = engine.tile_size
    x = np.random.default_rng(0).random((engine.batch, 3, t, t), dtype=np.float32)
    engine.run(x)
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.run(x)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ms))
