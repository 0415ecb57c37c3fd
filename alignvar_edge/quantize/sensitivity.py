"""Fidelity of a candidate graph against the fp32 engine, and the mixed-precision search.

Fidelity is judged the way an autoregressive model needs: token agreement with the fp32
ONNX engine over every scale, and the PSNR-Y loss against the HR ground truth relative to the fp32
engine (`psnr_drop = PSNR_Y(fp32) - PSNR_Y(candidate)`, both vs HR, pooled over the tiles). A
target holds where `token_agreement >= min_token_agreement` and the drop, rounded to 0.0001 dB as
it is recorded and printed, is `<= max_psnr_drop`: no tolerance beyond that rounding.

The search (`search`) starts from the policy's full int8 graph. If the validation split misses
the target, every module group (the per-scale copies of one linear or conv) is scored on its own:
the graph with only that group in int8 runs on a few calibration tiles, and its score is its share
of the budget of each criterion the full graph broke,

    score = [tokens missed] (1 - token_agreement) / (1 - min_token_agreement)
          + [PSNR missed]   max(0, psnr_drop) / max_psnr_drop
          + 1e-3 * (logit change / mean fp32 margin, and SR error / PSNR budget)   (tie-breaks)

so a decoder conv, which cannot move a logit, ranks last when tokens are what failed, and a group
that flips nothing on the few calibration tiles but erodes margins ranks above one that does not. Groups
return to float in descending score; a bisection over that order finds the fewest groups (k)
whose return makes the *validation* split meet the target (k is minimal along the ranking: k-1
failed; the effect of groups is not exactly additive, so this is not a global optimum).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from alignvar_edge.export import onnx_io
from alignvar_edge.export.onnx_io import session_source
from alignvar_edge.export.parity import psnr_y, rgb_to_y, token_agreement
from alignvar_edge.graph_names import INPUT, SR
from alignvar_edge.onnx_session import open_session
from alignvar_edge.quantize.calibration.ranges import with_float_outputs
from alignvar_edge.quantize.calibration.sets import TileSplit
from alignvar_edge.quantize.records import PSNR_DROP_DECIMALS, drop_text
from alignvar_edge.recipes import DEFAULT_MIN_TOKENS

__all__ = ["Evaluator", "Fidelity", "FidelityTarget", "SearchResult", "search"]

Log = Callable[[str], object]
Progress = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class FidelityTarget:
    min_token_agreement: float = DEFAULT_MIN_TOKENS
    max_psnr_drop: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Fidelity:
    """One candidate on one tile split, against the fp32 engine on the same tiles."""

    tiles: int
    token_agreement: float
    per_scale: list[float]
    identical_samples: float
    psnr_y_hr: float            # candidate vs HR (dB)
    psnr_y_hr_fp32: float       # fp32 engine vs HR (dB)
    psnr_y_vs_fp32: float       # candidate vs fp32 engine output (dB)
    mse_vs_fp32: float
    mse_hr_fp32: float
    logit_err: float = 0.0      # mean |logit change| in units of the mean fp32 top-1/top-2 margin

    @property
    def psnr_drop(self) -> float:
        return self.psnr_y_hr_fp32 - self.psnr_y_hr

    @property
    def judged_drop(self) -> float:
        """The drop as it is judged, recorded and printed (records.PSNR_DROP_DECIMALS): no tolerance
        beyond that rounding (a fully float candidate gives exactly the fp32 engine's image: 0)."""
        return round(self.psnr_drop, PSNR_DROP_DECIMALS) + 0.0      # + 0.0: no '-0.0000'

    def meets_psnr(self, t: FidelityTarget) -> bool:
        return self.judged_drop <= t.max_psnr_drop

    def meets(self, t: FidelityTarget) -> bool:
        return self.token_agreement >= t.min_token_agreement and self.meets_psnr(t)

    def score(self, t: FidelityTarget, tokens: bool = True, psnr: bool = True) -> float:
        """Share of the broken criteria's budgets this candidate uses (see the module docstring)."""
        tok_budget = max(1.0 - t.min_token_agreement, 1e-6)
        mse_budget = max(self.mse_hr_fp32 * (10 ** (max(t.max_psnr_drop, 1e-3) / 10) - 1), 1e-12)
        s = 0.0
        if tokens:
            s += (1.0 - self.token_agreement) / tok_budget + 1e-3 * min(self.logit_err, 1e3)
        if psnr:
            s += max(0.0, self.psnr_drop) / max(t.max_psnr_drop, 1e-3) + 1e-3 * min(self.mse_vs_fp32 / mse_budget, 1e3)
        return s

    def to_dict(self) -> dict[str, Any]:
        d = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**d, "psnr_drop": self.judged_drop}


def _with_logits(model: onnx.ModelProto | str) -> tuple[onnx.ModelProto | str, list[str]]:
    """The model with the inputs of its token ArgMaxes (the logits) added as outputs."""
    m = onnx.load(model, load_external_data=False) if isinstance(model, str) else model
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    logits = []
    for out in g.output:
        if out.type.tensor_type.elem_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            continue
        n = producer.get(out.name)
        while n is not None and n.op_type in ("Identity", "Reshape", "Cast", "Squeeze", "Unsqueeze"):
            n = producer.get(n.input[0])
        if n is not None and n.op_type == "ArgMax":
            logits.append(n.input[0])
    if not logits:
        return model, []
    if isinstance(model, str):
        m = onnx_io.load(model)      # with its weights this time
    return with_float_outputs(m, logits), logits


def _session(model: onnx.ModelProto | str, optimized: bool) -> Any:
    # not optimized = fake-quant: Q/DQ computed literally, no int8 kernels (separates quantization
    # error from kernel saturation, and stands in for TensorRT, which is not available here)
    with session_source(model) as src:
        return open_session(src, optimization="all" if optimized else "disable")


def _outputs(sess: Any) -> tuple[str, list[str]]:
    """(SR output name, token output names in order) of a single-graph session."""
    outs = sess.get_outputs()
    tokens = [o.name for o in outs if o.type in ("tensor(int64)", "tensor(int32)")]
    floats = [o.name for o in outs if o.type.startswith("tensor(float")]
    sr = SR if any(o.name == SR for o in outs) else floats[0]
    return sr, tokens


@dataclass
class _Run:
    sr: np.ndarray                  # (N, 3, H, W)
    tokens: list[np.ndarray]        # per scale (N, p_k^2)
    logits: list[np.ndarray]        # per scale (N, p_k^2, V); empty when the graph hides them


class Evaluator:
    """Runs candidates on one tile split and compares them with the fp32 graph's outputs."""

    def __init__(self, fp32_model: onnx.ModelProto | str, tiles: TileSplit, batch: int = 1, border: int = 4, optimized: bool = True,
                 extra: dict[str, np.ndarray] | None = None) -> None:
        self.tiles, self.batch = tiles, batch
        self.extra = extra or {}             # further graph inputs, the same for every batch
        self.border, self.optimized = border, optimized
        # the reference runs like the candidates will, so rounding differences between optimized
        # and unoptimized float graphs never count as quantization error
        self.ref = self.run(fp32_model)
        hr = self._hr()
        self.mse_hr = float(np.mean((_y(hr, border) - _y(self.ref.sr, border)) ** 2))
        self.psnr_hr = psnr_y(hr, self.ref.sr, border=border)
        # logit scale for the token tie-break: the mean top-1/top-2 margin of the reference
        margins = [np.diff(np.sort(lg, axis=-1)[..., -2:], axis=-1) for lg in self.ref.logits]
        self.margin = float(np.mean(np.concatenate([m.ravel() for m in margins]))) if margins else 0.0

    def _hr(self) -> np.ndarray:
        n = (len(self.tiles) // self.batch) * self.batch
        return self.tiles.hr[:n]

    def run(self, model: onnx.ModelProto | str) -> _Run:
        data, logit_names = _with_logits(model)
        sess = _session(data, self.optimized)
        sr_name, tok_names = _outputs(sess)
        srs, toks, lgs = [], [], []
        for lr, _ in self.tiles.batches(self.batch):
            out = sess.run([sr_name, *tok_names, *logit_names],
                           {INPUT: np.ascontiguousarray(lr), **self.extra})
            srs.append(out[0].astype(np.float32))
            toks.append(out[1:1 + len(tok_names)])
            lgs.append(out[1 + len(tok_names):])
        cat = lambda xs, k: np.concatenate([x[k] for x in xs])  # noqa: E731
        return _Run(np.concatenate(srs), [cat(toks, k) for k in range(len(tok_names))],
                    [cat(lgs, k).astype(np.float32) for k in range(len(logit_names))])

    def evaluate(self, model: onnx.ModelProto | str) -> Fidelity:
        r = self.run(model)
        agree = token_agreement(self.ref.tokens, r.tokens)
        hr = self._hr()
        mse_ref = float(np.mean((_y(r.sr, self.border) - _y(self.ref.sr, self.border)) ** 2))
        logit_err = 0.0
        if r.logits and len(r.logits) == len(self.ref.logits) and self.margin > 0:
            diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(r.logits, self.ref.logits)])
            logit_err = float(diff.mean()) / self.margin
        return Fidelity(tiles=int(r.sr.shape[0]), token_agreement=agree["overall"],
                        per_scale=agree["per_scale"], identical_samples=agree["identical_samples"],
                        psnr_y_hr=psnr_y(hr, r.sr, border=self.border), psnr_y_hr_fp32=self.psnr_hr,
                        psnr_y_vs_fp32=psnr_y(self.ref.sr, r.sr, border=self.border),
                        mse_vs_fp32=mse_ref, mse_hr_fp32=self.mse_hr, logit_err=logit_err)


def _y(img: np.ndarray, border: int) -> np.ndarray:

    y = rgb_to_y(img)
    return y[..., border:-border, border:-border] if border > 0 else y


@dataclass
class SearchResult:
    met: bool
    float_groups: list[str]                          # returned to float, most sensitive first
    fidelity: Fidelity                               # of the chosen graph on the validation split
    initial: Fidelity                                # of the full-policy graph on validation
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)   # group -> why
    evaluations: list[dict[str, Any]] = field(default_factory=list)   # the search's steps

    def to_dict(self) -> dict[str, Any]:
        return {"target_met": self.met, "float_groups": self.float_groups,
                "validation": self.fidelity.to_dict(), "initial_validation": self.initial.to_dict(),
                "sensitivity": self.scores, "steps": self.evaluations}


def search(build: Callable[[frozenset[str]], onnx.ModelProto], groups: Sequence[str],
           validation: Evaluator, calibration: Evaluator | Callable[[], Evaluator], target: FidelityTarget,
           group_sizes: dict[str, int] | None = None, progress: Progress = iter,
           log: Log = lambda _m: None, start: str = "all policy nodes int8") -> SearchResult:
    """Fewest groups in float (see the module docstring). `build(float_groups)` makes a candidate;
    `calibration` may be a factory, called only if a ranking is needed."""
    steps: list[dict[str, Any]] = []

    def check(float_groups: Sequence[str], what: str) -> Fidelity:
        f = validation.evaluate(build(frozenset(float_groups)))
        steps.append({"float_groups": len(float_groups), "what": what, "met": f.meets(target),
                      "token_agreement": round(f.token_agreement, 6), "psnr_drop": f.judged_drop})
        log(f"  {what}: tokens {f.token_agreement:.2%}, PSNR-Y drop {drop_text(f.judged_drop)} dB -> "
            f"{'meets' if f.meets(target) else 'misses'} the target")
        return f

    initial = check([], start)
    if initial.meets(target) or not groups:
        return SearchResult(initial.meets(target), [], initial, initial, {}, steps)

    if not isinstance(calibration, Evaluator) and callable(calibration):
        calibration = calibration()
    broke_tokens = initial.token_agreement < target.min_token_agreement
    broke_psnr = not initial.meets_psnr(target)
    log(f"ranking {len(groups)} module groups by sensitivity on {len(calibration.tiles)} calibration tiles "
        f"({' and '.join(x for x, b in (('tokens', broke_tokens), ('PSNR', broke_psnr)) if b)})")
    scores: dict[str, dict[str, Any]] = {}
    raw: dict[str, float] = {}
    for g in progress(groups):
        f = calibration.evaluate(build(frozenset(x for x in groups if x != g)))   # only g in int8
        raw[g] = f.score(target, broke_tokens, broke_psnr)
        scores[g] = {"score": round(raw[g], 6), "logit_err": round(f.logit_err, 6),
                     "token_agreement": round(f.token_agreement, 6),
                     "psnr_drop": f.judged_drop,
                     "psnr_y_vs_fp32": round(f.psnr_y_vs_fp32, 2),
                     "nodes": (group_sizes or {}).get(g, 1)}
    ranking = sorted(groups, key=lambda g: (-raw[g], g))
    for r, g in enumerate(ranking):
        scores[g]["rank"] = r + 1

    # first guess: the fewest groups whose removal leaves the remaining scores summing to <= 1
    total = sum(raw.values())
    guess = len(ranking)
    for k in range(len(ranking) + 1):
        if total - sum(raw[g] for g in ranking[:k]) <= 1.0:
            guess = k
            break
    guess = max(guess, 1)
    lo, hi = 0, len(ranking)                  # lo fails (the initial check); hi is assumed to pass
    results: dict[int, Fidelity] = {0: initial}

    def passes(k: int) -> bool:
        """Check the top k groups in float, remembering the result."""
        results[k] = check(ranking[:k], f"top {k} groups float")
        return results[k].meets(target)

    if passes(guess):
        hi = guess
    else:
        lo = guess
        # grow until it passes, doubling the step
        step = max(1, guess)
        while lo < len(ranking):
            k = min(len(ranking), lo + step)
            if passes(k):
                hi = k
                break
            lo, step = k, step * 2
        else:
            return SearchResult(False, list(ranking), results[lo], initial, scores, steps)
    while hi - lo > 1:                        # bisect: the fewest groups that pass
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    if hi not in results:
        results[hi] = check(ranking[:hi], f"top {hi} groups float")
    chosen = results[hi]
    return SearchResult(chosen.meets(target), list(ranking[:hi]), chosen, initial, scores, steps)
