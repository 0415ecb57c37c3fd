"""The static batch a model's graphs get when nobody asks for one.

Graphs have a fixed batch, and `upscale` feeds an image's tiles in calls of that batch, so the
batch chosen at export is the one every engine built from the artifact runs whole images with.
Where nothing was measured for the host (a plain `export`, `deploy --quick`, a Core ML package),
small tiles get `IMAGE_BATCH` tiles per call and large tiles one; `deploy` without `--quick`
measures the candidates on the host instead (runtimes/batching.py).
"""
from __future__ import annotations

from typing import Any

__all__ = ["BATCHED_MAX_HR", "IMAGE_BATCH", "default_batch"]

# One thread, alignvar-tiny (64 px SR tiles), a 512 x 512 image: OpenVINO int8 at batch 8 gave
# 0.26-0.30 MP/s against 0.15 at batch 1; batch 16 another 3-11% on an AVX512-BF16 EPYC (three
# runs) and 3% less on an AVX2 EPYC (one run). Per-call overhead dominates tiles this small.
IMAGE_BATCH = 16

# Largest SR tile side batched by default. At 128 px (tiny32, one thread, AVX2 EPYC) batch 8 ran
# a tile no faster than batch 1 (ONNX Runtime 125 vs 123 ms) and padding its last call made a
# 512 x 512 image slower (0.066 vs 0.087 MP/s); d16's 256 px tile runs its GEMMs at 96% of a
# CPU's peak at batch 1. Past this size a batch only multiplies memory.
BATCHED_MAX_HR = 64


def default_batch(config: Any) -> int:
    """Tiles per call for a model config (anything with `hr_size`) when none is given."""
    return IMAGE_BATCH if int(config.hr_size) <= BATCHED_MAX_HR else 1
