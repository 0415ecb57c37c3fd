"""`compare`'s figures per engine over all its images, on stand-in engines with known tokens."""
from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from alignvar_edge.runtimes.base import Engine
from alignvar_edge.runtimes.compare import compare_engines, format_summary

TILE, SCALE, SCALES = 8, 4, (1, 2)


class _Engine:
    """Tokens 0 everywhere; `flip` tiles (by call order) get token 1 at every position of scale 2."""

    def __init__(self, flip: frozenset[int] = frozenset()) -> None:
        self.flip, self.seen = flip, 0
        self.tile_size, self.scale, self.backend, self.device = TILE, SCALE, "stand-in", "cpu"
        self.config = SimpleNamespace(patch_nums=SCALES)
        self.metadata = SimpleNamespace(precision="int8")

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        n = len(tiles)
        sr = np.repeat(np.repeat(tiles, SCALE, axis=2), SCALE, axis=3)
        toks = [np.zeros((n, p * p), np.int64) for p in SCALES]
        for i in range(n):
            if self.seen + i in self.flip:
                toks[1][i] = 1
        self.seen += n
        return sr, toks


def test_tokens_overall_weighs_every_tile_of_every_image() -> None:
    """The summary states the token agreement over all tiles (what a quantization target is set in),
    not only the share of identical tiles: 1 flipped scale-2 map in 5 tiles is 4 of 25 tokens."""
    rng = np.random.default_rng(0)
    images = [("one", rng.random((TILE, TILE, 3), np.float32)),              # 1 tile
              ("four", rng.random((2 * TILE - 4, 2 * TILE - 4, 3), np.float32))]
    engine, reference = cast(Engine, _Engine(flip=frozenset({1}))), cast(Engine, _Engine())
    [res] = compare_engines([("q", engine)], reference, images, overlap=4)
    assert [im.tiles for im in res.images] == [1, 4]
    assert res.tokens_overall == pytest.approx(1 - 4 / 25) and res.tiles_identical == 4 / 5
    assert res.to_json()["tokens_overall"] == pytest.approx(1 - 4 / 25)
    assert "tiles identical 80.0%, tokens 84.00% agree" in format_summary(res)
