"""Where the time goes: FLOPs and measured time per stage of one tile's rollout.

Stages follow the staged export: `conditioning` (LR embedding + SCA guidance + the prefix through
every block), `scale_k` (one next-scale step: transformer on p_k^2 tokens, head, argmax, phi and
the f_hat update) and `decoder` (the VQ-VAE decoder). Time is measured for PyTorch eager (the
model's own stage functions) and, given a staged ONNX export, for ONNX Runtime (StagedRunner's
per-session timings). FLOPs are matmul + conv, counted on a meta-device model (no memory).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from alignvar_edge.export.staged import StagedRunner
from alignvar_edge.graph_names import COND_GRAPH, DECODE_GRAPH, step_name

from alignvar_edge.model.rollout import ModelStages, run
from alignvar_edge.manifest import prune_text

__all__ = ["stage_profile", "staged_ort_times", "torch_stage_times"]


def _median_ms(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.median([s[k] for s in samples])) * 1e3, 3) for k in samples[0]}


@torch.inference_mode()
def torch_stage_times(model: Any, lr: np.ndarray, runs: int = 3, warmup: bool = True) -> dict[str, float]:
    """Median ms per stage of PyTorch eager on `lr` (one warm-up rollout first unless warmup=False)."""
    x = torch.from_numpy(np.ascontiguousarray(lr, np.float32))

    def once() -> dict[str, float]:
        t: dict[str, float] = {}

        @contextlib.contextmanager
        def timed(stage: str) -> Iterator[None]:
            t0 = time.perf_counter()
            yield
            t[stage] = time.perf_counter() - t0

        run(ModelStages(model), x, around=timed)
        return t

    if warmup:
        once()
    return _median_ms([once() for _ in range(max(1, runs))])


def staged_ort_times(artifact: str | Path, lr: np.ndarray, runs: int = 3,
                     threads: int | None = None) -> dict[str, float]:
    """Median ms per stage of ONNX Runtime on a staged export (renamed to the stage names above)."""

    runner = StagedRunner.load(artifact, threads=threads)
    x = np.ascontiguousarray(lr[: runner.batch], np.float32)
    rename: dict[str, str] = {COND_GRAPH: "conditioning", DECODE_GRAPH: "decoder"}
    rename.update({step_name(k): f"scale_{k}" for k in range(runner.num_scales)})

    def once() -> dict[str, float]:
        runner.run(x)
        return {rename[s]: v for s, v in runner.last_timings.items()}

    once()
    return _median_ms([once() for _ in range(max(1, runs))])


def _group(stage: str) -> str:
    return "scales" if stage.startswith("scale_") else stage


def stage_profile(flops: dict[str, int], timings: dict[str, dict[str, float]],
                  batch: dict[str, int] | None = None,
                  pruned: dict[str, tuple[dict[str, int], list[float]]] | None = None) -> dict[str, Any]:
    """Per-stage and per-group rows: FLOPs share and, per timed source, ms per tile and share.
    `pruned` names the sources that ran a pruned rollout, with its FLOPs per stage and its ratios:
    their GFLOP/s count what they computed, not the unpruned FLOPs of the GFLOP column."""
    batch = batch or {}
    pruned = pruned or {}
    total_flops = sum(flops.values()) or 1
    per_tile = {src: {k: v / batch.get(src, 1) for k, v in t.items()} for src, t in timings.items()}
    totals = {src: sum(t.values()) or 1.0 for src, t in per_tile.items()}
    rows = []
    for stage, f in flops.items():
        row: dict[str, Any] = {"stage": stage, "gflops": round(f / 1e9, 4), "flops_share": round(f / total_flops, 4)}
        for src, t in per_tile.items():
            if stage in t:
                ms = t[stage]
                row[f"{src}_ms"] = round(ms, 3)
                row[f"{src}_share"] = round(ms / totals[src], 4)
                done = pruned[src][0][stage] if src in pruned else f
                row[f"{src}_gflops_per_s"] = round(done / (ms / 1e3) / 1e9, 2) if ms > 0 else None
        rows.append(row)
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(_group(row["stage"]), {"stage": _group(row["stage"]), "gflops": 0.0, "flops_share": 0.0})
        g["gflops"] = round(g["gflops"] + row["gflops"], 4)
        g["flops_share"] = round(g["flops_share"] + row["flops_share"], 4)
        for src in per_tile:
            if f"{src}_ms" in row:
                g[f"{src}_ms"] = round(g.get(f"{src}_ms", 0.0) + row[f"{src}_ms"], 3)
                g[f"{src}_share"] = round(g.get(f"{src}_share", 0.0) + row[f"{src}_share"], 4)
    for src in pruned:           # a group's rate, from the FLOPs that source computed in it
        for g in groups.values():
            group_ms = g.get(f"{src}_ms")
            done = sum(f for stage, f in pruned[src][0].items() if _group(stage) == g["stage"])
            g[f"{src}_gflops_per_s"] = round(done / (group_ms / 1e3) / 1e9, 2) if group_ms else None
    return {"sources": sorted(timings), "stages": rows, "groups": list(groups.values()),
            "pruned": {src: ratios for src, (_, ratios) in pruned.items()},
            "note": "ms per tile, median of the profile runs; shares are of each source's own total"
                    + "".join(f"; {src} ran a rollout pruned {prune_text(ratios)}: its GFLOP/s "
                              "count its pruned FLOPs, the GFLOP column the unpruned model's"
                              for src, (_, ratios) in pruned.items())}

