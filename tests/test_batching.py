"""Picking the static batch that serves whole images best (runtimes/batching.py, deploy --batch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignvar_edge.deploy import DeployOptions
from alignvar_edge.errors import InputError
from alignvar_edge.runtimes.batching import image_ms, pick_batch, time_per_call


def test_image_time_counts_the_padded_last_call() -> None:
    assert image_ms(4, 10.0, 121) == 310.0          # 31 calls, the last one 1 tile + 3 padding
    assert image_ms(11, 10.0, 121) == 110.0         # no padding


def test_pick_batch_weighs_per_call_time_against_padding() -> None:
    # alignvar-tiny's 128x128 LR image is 121 tiles of 16 px (overlap 4)
    best, costs = pick_batch({1: 70.0, 4: 220.0, 8: 430.0}, 121)
    assert best == 4 and costs == {1: 8470.0, 4: 6820.0, 8: 6880.0}
    # a batch that pads almost a whole call loses to a smaller one at the same per-tile speed
    assert pick_batch({8: 80.0, 9: 90.0}, 9)[0] == 9
    assert pick_batch({4: 40.0, 8: 80.0}, 8)[0] == 4          # a tie goes to the smaller batch
    with pytest.raises(InputError):
        pick_batch({}, 10)


class _Fake:
    tile_size, batch = 4, 3

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def run(self, x: np.ndarray) -> None:
        self.seen.append(x.shape)


def test_time_per_call_feeds_full_batches() -> None:
    eng = _Fake()
    assert time_per_call(eng, runs=2) >= 0.0
    assert eng.seen == [(3, 3, 4, 4)] * 3                 # one untimed call, then the timed ones


def test_deploy_batch_flag_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^batch=0 must be >= 1$"):
        DeployOptions(out=str(tmp_path / "d"), batch=0, targets="onnxruntime").validate()
    with pytest.raises(InputError, match=f"^batch=4 and export='{tmp_path}' conflict"):
        DeployOptions(out=str(tmp_path / "d"), batch=4, export=str(tmp_path), targets="onnxruntime").validate()


@pytest.mark.parametrize("quick,batch,want", [(True, 16, (16, 16)), (True, 1, (8, 8)), (False, 16, (32, 16)),
                                              (False, 64, (64, 64))])
def test_deploy_calibrates_at_least_one_full_call_of_the_batch(monkeypatch, tmp_path: Path, quick, batch, want) -> None:
    """A static-batch engine is fed whole batches only: fewer calibration or validation tiles than
    the batch would leave the int8 builds nothing to calibrate or check on."""
    import types

    from alignvar_edge import deploy
    monkeypatch.setattr(deploy, "read_manifest", lambda root: types.SimpleNamespace(static_batch=batch))
    opts = DeployOptions(out=str(tmp_path / "d"), quick=quick, targets="onnxruntime")
    assert deploy._calib_sizes(opts, tmp_path) == want
