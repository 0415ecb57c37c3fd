"""Host driver for the staged graphs: numpy + ONNX Runtime, with per-stage timings.

    cond(lr) -> cond, guide, kv;  step_k(f_hat, kv, cond, guide) -> tokens_k, f_hat, kv;  decode(f_hat, lr)

driven by the model's own rollout loop (alignvar_edge.model.rollout.run), whose stages are the sessions.

Each session is fed only the inputs it declares (an exporter may drop an input a graph does not
read, e.g. `lr` of decode when the VQ-VAE does not add bicubic(LR) back).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from alignvar_edge.errors import ArtifactError, InputError
from alignvar_edge.graph_names import (COND, COND_GRAPH, DECODE_GRAPH, F_HAT, F_HAT_OUT, GUIDE, H_OUT, INPUT, KV,
                                      KV_OUT, LAST_H, NOISE, PREFIX, staged_graph_names, step_name, token_name)
from alignvar_edge.manifest import load_verified
from alignvar_edge.name_text import PathArg, path_text
from alignvar_edge.model import rollout
from alignvar_edge.onnx_session import open_session

__all__ = ["StagedRunner"]


class StagedRunner:
    """Runs cond, step_0..step_{K-1} and decode from one directory of staged graphs."""

    def __init__(self, root: PathArg, num_scales: int,
                 providers: list[str] | None = None, threads: int | None = None):
        root = Path(path_text(root))
        self.num_scales = num_scales
        self.stages = staged_graph_names(num_scales)
        self.sessions = {s: open_session(root / f"{s}.onnx", providers, threads) for s in self.stages}
        self.inputs = {s: [i.name for i in sess.get_inputs()] for s, sess in self.sessions.items()}
        self.outputs = {s: [o.name for o in sess.get_outputs()] for s, sess in self.sessions.items()}
        self._last_h: np.ndarray | None = None     # a step's hidden states for a pruned next step
        f_hat = self.sessions[step_name(0)].get_inputs()[0]
        self.f_hat_shape = tuple(int(d) for d in f_hat.shape)
        self.batch = int(self.sessions[COND_GRAPH].get_inputs()[0].shape[0])
        self.last_timings: dict[str, float] = {}

    @classmethod
    def load(cls, artifact: str | os.PathLike[str], providers: list[str] | None = None,
             threads: int | None = None) -> StagedRunner:
        """From an exported artifact directory; its manifest and file hashes are verified first."""
        m = load_verified(artifact)
        if m.graph != "staged":
            raise ArtifactError(f"'{artifact}' holds a {m.graph!r} graph, not staged graphs; "
                                "export with --graph staged")
        return cls(artifact, len((m.config or {})["patch_nums"]), providers, threads)

    def _run(self, stage: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = self.sessions[stage].run(None, {n: feeds[n] for n in self.inputs[stage]})
        self.last_timings[stage] = time.perf_counter() - t0
        return out

    def run(self, lr: np.ndarray, noise: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """LR batch (B, 3, h, w) float32 -> (SR (B, 3, H, W), [tokens_k (B, p_k^2) int64]).

        `noise` feeds the refiner of the last step (graphs exported with VARSR's refiner)."""
        lr = np.ascontiguousarray(lr, dtype=np.float32)
        if lr.shape[0] != self.batch:
            raise InputError(f"these graphs were exported for batch {self.batch}, got {lr.shape[0]} tiles")
        self.last_timings = {}
        if noise is not None:
            noise = np.ascontiguousarray(noise, dtype=np.float32)
        sr, tokens, _ = rollout.run(self, lr, noise)
        return sr, tokens

    # the rollout's stages (alignvar_edge.model.rollout), one session each
    def start(self, lr: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        cond, guide, state = self._run(COND_GRAPH, {INPUT: lr})
        return (cond, guide), state, np.zeros(self.f_hat_shape, np.float32)

    def step(self, k: int, f_hat: np.ndarray, state: np.ndarray, ctx: tuple[np.ndarray, np.ndarray],
             noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, None]:
        cond, guide = ctx
        # step_0 of VARSR's layout names its state input `prefix`; both are cond's third output
        feeds = {F_HAT: f_hat, KV: state, PREFIX: state, COND: cond, GUIDE: guide}
        if noise is not None:
            feeds[NOISE] = noise
        stage = step_name(k)
        if LAST_H in self.inputs[stage]:          # a pruned scale restores from the step before
            assert self._last_h is not None, "the step before a pruned scale hands on its hidden states"
            feeds[LAST_H] = self._last_h
        out = dict(zip(self.outputs[stage], self._run(stage, feeds)))
        self._last_h = out.get(H_OUT)
        return out[token_name(k)], out[F_HAT_OUT], out.get(KV_OUT), None

    def finish(self, f_hat: np.ndarray, lr: np.ndarray) -> np.ndarray:
        (sr,) = self._run(DECODE_GRAPH, {F_HAT: f_hat, INPUT: lr})
        return sr
