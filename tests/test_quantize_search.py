"""The mixed-precision search on a synthetic problem: known per-group damage, exact answers."""
from __future__ import annotations

from typing import Any

import pytest

from alignvar_edge.quantize.sensitivity import Fidelity, FidelityTarget, search

# token flips each group causes when it alone is int8 (fractions of all tokens), and PSNR loss (dB)
FLIPS = {"a": 0.004, "b": 0.012, "c": 0.0, "d": 0.006, "e": 0.0005}
DROP = {"a": 0.0, "b": 0.01, "c": 0.08, "d": 0.0, "e": 0.0}


class FakeEvaluator:
    """Effects add up: the fidelity of a graph is the sum of its int8 groups' damage."""

    def __init__(self, n_tiles: int = 8, flips: dict[str, float] = FLIPS, drops: dict[str, float] = DROP,
                 damage: float = 1.0) -> None:
        self.tiles = list(range(n_tiles))
        self.calls = 0
        self.flips, self.drops = flips, drops
        self.damage = damage            # how much harder these tiles are than the validation split

    def evaluate(self, model: Any) -> Fidelity:
        self.calls += 1
        int8 = set(self.flips) - set(model)
        flips = self.damage * sum(self.flips[g] for g in int8)
        drop = self.damage * sum(self.drops.get(g, 0.0) for g in int8)
        mse_hr = 0.01
        return Fidelity(tiles=len(self.tiles), token_agreement=1 - flips, per_scale=[1 - flips],
                        identical_samples=1.0, psnr_y_hr=30 - drop, psnr_y_hr_fp32=30.0,
                        psnr_y_vs_fp32=40.0, mse_vs_fp32=mse_hr * (10 ** (drop / 10) - 1),
                        mse_hr_fp32=mse_hr, logit_err=flips)


def build(float_groups: frozenset[str]) -> frozenset[str]:
    return float_groups           # the "model" is the set of groups in float


def test_search_returns_the_fewest_most_sensitive_groups() -> None:
    val, cal = FakeEvaluator(), FakeEvaluator()
    res = search(build, sorted(FLIPS), val, cal, FidelityTarget(0.99, 0.1))
    # all int8: 2.25% flips. Dropping b (1.2%) leaves 1.05% > 1%; b then d leaves 0.45%.
    assert res.met and res.float_groups == ["b", "d"]
    assert res.initial.token_agreement == pytest.approx(1 - 0.0225)
    assert res.fidelity.token_agreement == pytest.approx(1 - 0.0045)
    assert [g for g, s in sorted(res.scores.items(), key=lambda kv: kv[1]["rank"])][:3] == ["b", "d", "a"]
    assert cal.calls == len(FLIPS)                        # one sensitivity run per group
    assert val.calls <= 1 + 4                             # initial + a short bisection


def test_psnr_target_ranks_by_psnr_when_only_psnr_fails() -> None:
    # tokens are fine at 0.97; only the 0.09 dB PSNR loss breaks a 0.05 dB target: c must go first
    res = search(build, sorted(FLIPS), FakeEvaluator(), FakeEvaluator(), FidelityTarget(0.97, 0.05))
    assert res.met and res.float_groups == ["c"]
    assert res.scores["c"]["rank"] == 1


def test_search_reports_an_unreachable_target() -> None:
    # even all-float fails a target that demands a PSNR gain
    class Worse(FakeEvaluator):
        def evaluate(self, model: Any) -> Fidelity:
            f = super().evaluate(model)
            f.psnr_y_hr -= 1.0
            return f

    res = search(build, sorted(FLIPS), Worse(), FakeEvaluator(), FidelityTarget(0.99, 0.1))
    assert not res.met and sorted(res.float_groups) == sorted(FLIPS)


def test_nothing_to_do_when_the_policy_graph_meets_the_target() -> None:
    cal = FakeEvaluator()
    res = search(build, sorted(FLIPS), FakeEvaluator(), cal, FidelityTarget(0.95, 0.2))
    assert res.met and res.float_groups == [] and cal.calls == 0


def test_a_token_agreement_equal_to_the_target_meets_it() -> None:
    """--min-token-agreement 0.99 is met by 99.00% of the tokens: the policy graph at exactly the
    target needs no group in float."""
    class AtTheTarget(FakeEvaluator):
        def evaluate(self, model: Any) -> Fidelity:
            f = super().evaluate(model)
            f.token_agreement = 0.99 if not model else 1.0
            return f

    cal = FakeEvaluator()
    res = search(build, sorted(FLIPS), AtTheTarget(), cal, FidelityTarget(0.99, 0.1))
    assert res.initial.token_agreement == 0.99
    assert res.met and res.float_groups == [] and cal.calls == 0


def test_a_psnr_drop_equal_to_the_target_meets_it() -> None:
    """--max-psnr-drop 0.1 is met by a drop of 0.1 dB (30.0 - 29.9 is 0.10000000000000142 in
    floats: judged as it is printed, rounded to 0.0001 dB)."""
    class AtTheTarget(FakeEvaluator):
        def evaluate(self, model: Any) -> Fidelity:
            f = super().evaluate(model)
            f.token_agreement, f.psnr_y_hr = 1.0, 29.9 if not model else 30.0
            return f

    cal = FakeEvaluator()
    res = search(build, sorted(FLIPS), AtTheTarget(), cal, FidelityTarget(0.99, 0.1))
    assert res.initial.psnr_drop > 0.1 and res.initial.judged_drop == 0.1
    assert res.met and res.float_groups == [] and cal.calls == 0


def test_a_calibration_that_overstates_the_damage_is_corrected_by_the_bisection() -> None:
    """The ranking's first guess trusts the calibration tiles; where they are harder than the
    validation split (here 4x the token flips), the guess keeps every group in float and the
    bisection must walk it down to the fewest that meet the target on validation."""
    flips = {f"g{i}": 0.0030 + 0.0001 * i for i in range(8)}        # g7 does the most damage
    val = FakeEvaluator(flips=flips, drops={})
    res = search(build, sorted(flips), val, FakeEvaluator(flips=flips, drops={}, damage=4.0),
                 FidelityTarget(0.99, 0.1))
    # the three least harmful in int8 flip 0.93% of the tokens (<= 1%); four flip 1.26%
    assert res.met and res.float_groups == ["g7", "g6", "g5", "g4", "g3"]
    assert res.fidelity.token_agreement == pytest.approx(1 - 0.0093)
    tried = {step["float_groups"]: step["met"] for step in res.evaluations}
    assert tried == {0: False, 8: True, 4: False, 6: True, 5: True}   # the guess, then the bisection
