"""What each exported graph is: a module, its named inputs and outputs, and example inputs.

Declared as data beside the model (as Optimum's OnnxConfig does) so the exporter, the host driver
and the manifest agree on names and shapes. All shapes are static: the batch B is fixed at export.

single   model.onnx   lr [, noise] -> sr, tokens_0..tokens_{K-1}
staged   cond.onnx    lr -> cond, guide, kv                      (prefix through every block)
         step_k.onnx  f_hat, kv, cond, guide [, last_h] [, noise] -> tokens_k, f_hat, kv [, h]
                      (last: no kv out; last_h / h only around a scale pruned with --prune)
         decode.onnx  f_hat, lr -> sr
with kv of shape (depth, 2, B2, heads, L, head_dim), L = prefix_len + sum of p_j^2 for j < k, and
B2 = 2B when image CFG is on (positive and negative branches), else B. In VARSR's layout the prefix
and scale 0 are one block: cond.onnx returns the prefix tokens (`prefix`) instead of a cache and
step_0 takes them in place of `kv`. With VARSR's refiner, the graph that runs the last scale also
takes the sampler's noise (`noise`, (steps, B*P*P, Cvae)): refinement is deterministic given it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from alignvar_edge.graph_names import (COND, COND_GRAPH, DECODE_GRAPH, F_HAT, F_HAT_OUT, GUIDE, H_OUT, INPUT, KV,
                                      KV_OUT, LAST_H, NOISE, PREFIX, SINGLE_GRAPH, SR, step_name, token_name,
                                      token_names)
from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.pruning import keep_counts
from alignvar_edge.model.rollout import Context, ModelStages, run


@dataclass
class GraphSpec:
    name: str                         # file stem: model, cond, step_3, decode
    module: nn.Module
    inputs: dict[str, torch.Tensor]   # name -> example tensor (order = graph input order)
    outputs: list[str]

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


class CondGraph(nn.Module):
    """LR -> AdaLN condition, SCA guidance and the rollout's state before scale 0 (the prefix KV
    cache; VARSR's layout: the prefix tokens)."""

    def __init__(self, model: AlignVAR):
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx, state, _ = ModelStages(self.model).start(lr)
        return ctx.cond_BD, ctx.guide_B1hw, state


class StepGraph(nn.Module):
    """One scale: greedy tokens, the updated f_hat and (except at the last scale) the longer cache.

    With token pruning (model/pruning.py) a pruned scale restores its left-out tokens from the
    previous scale's final hidden states: that step takes them as `last_h`, and the step before it
    hands its own on as `h_out`."""

    def __init__(self, model: AlignVAR, k: int):
        super().__init__()
        self.model = model
        self.k = k
        self.last = k == model.config.num_scales - 1
        keep = keep_counts(model.config.patch_nums, model.prune)
        self.takes_h = keep[k] is not None
        self.gives_h = not self.last and keep[k + 1] is not None

    def forward(self, f_hat: torch.Tensor, kv: torch.Tensor, cond: torch.Tensor, guide: torch.Tensor,
                *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """extra: `last_h` when this scale is pruned, then `noise` with VARSR's refiner."""
        stages = ModelStages(self.model)
        rest = list(extra)
        if self.takes_h:
            stages.last_h = rest.pop(0)
        noise = rest[0] if rest else None
        idx, f_hat, kv, _ = stages.step(self.k, f_hat, kv, Context(cond, guide), noise)
        out = (idx, f_hat) if self.last else (idx, f_hat, kv)
        if self.gives_h:
            assert stages.last_h is not None
            return (*out, stages.last_h)
        return out


class DecodeGraph(nn.Module):
    """f_hat (and the LR tile, for the bicubic residual) -> SR tile."""

    def __init__(self, model: AlignVAR):
        super().__init__()
        self.model = model

    def forward(self, f_hat: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        return self.model.decode(f_hat, lr)


def example_lr(model: AlignVAR, batch: int) -> torch.Tensor:
    c = model.config
    return torch.rand(batch, 3, c.lr_size, c.lr_size, generator=torch.Generator().manual_seed(0))


def graph_noise(model: AlignVAR, batch: int, refine: bool = True) -> np.ndarray | None:
    """The refiner noise a graph takes (None: no refiner, or exported with refine=False)."""
    return model.config.refiner_noise(batch) if refine else None


def _noise_input(model: AlignVAR, batch: int, refine: bool) -> dict[str, torch.Tensor]:
    noise = graph_noise(model, batch, refine)
    return {} if noise is None else {NOISE: torch.from_numpy(noise)}


def single_spec(model: AlignVAR, batch: int, refine: bool = True) -> list[GraphSpec]:
    inputs = {INPUT: example_lr(model, batch), **_noise_input(model, batch, refine)}
    return [GraphSpec(SINGLE_GRAPH, model, inputs, [SR, *token_names(model.config.num_scales)])]


class _StagedSpecs:
    """The staged graphs as the rollout's stages: each stage runs its graph's module on the inputs
    the rollout gives it and records them as the graph's example inputs."""

    def __init__(self, model: AlignVAR):
        self.model = model
        self.num_scales = model.config.num_scales
        self.first = PREFIX if model.joint_prefix else KV    # the state step 0 takes
        self.specs: list[GraphSpec] = []
        self.last_h: torch.Tensor | None = None      # handed to the next step when it is pruned

    def start(self, lr: torch.Tensor) -> tuple[Context, torch.Tensor, torch.Tensor]:
        graph = CondGraph(self.model)
        cond, guide, state = graph(lr)
        self.specs.append(GraphSpec(COND_GRAPH, graph, {INPUT: lr}, [COND, GUIDE, self.first]))
        return Context(cond, guide), state, ModelStages(self.model).zero_latent(lr)

    def step(self, k: int, f_hat: torch.Tensor, kv: torch.Tensor, ctx: Context,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, None]:
        graph = StepGraph(self.model, k)
        inputs = {F_HAT: f_hat, self.first if k == 0 else KV: kv, COND: ctx.cond_BD, GUIDE: ctx.guide_B1hw,
                  **({LAST_H: self.last_h} if graph.takes_h else {}),
                  **({} if noise is None else {NOISE: noise})}
        outputs = [token_name(k), F_HAT_OUT] + ([] if graph.last else [KV_OUT]) + ([H_OUT] if graph.gives_h else [])
        self.specs.append(GraphSpec(step_name(k), graph, inputs, outputs))
        out = graph(*inputs.values())
        self.last_h = out[-1] if graph.gives_h else None
        return out[0], out[1], None if graph.last else out[2], None

    def finish(self, f_hat: torch.Tensor, lr: torch.Tensor) -> None:
        self.specs.append(GraphSpec(DECODE_GRAPH, DecodeGraph(self.model), {F_HAT: f_hat, INPUT: lr}, [SR]))


@torch.no_grad()
def staged_specs(model: AlignVAR, batch: int, refine: bool = True) -> list[GraphSpec]:
    """cond, step_0..step_{K-1}, decode, with example inputs from a real rollout of a random tile."""
    stages = _StagedSpecs(model)
    noise = _noise_input(model, batch, refine).get(NOISE)
    run(stages, example_lr(model, batch), noise)
    return stages.specs


# the graphs each form of graph_names.GRAPH_FORMS is made of: a form added there needs its row here
# (a test holds the keys to GRAPH_FORMS)
SPECS_OF_FORM = {"single": single_spec, "staged": staged_specs}


def specs_for(model: AlignVAR, graph: str, batch: int, refine: bool = True) -> list[GraphSpec]:
    """The graphs of form `graph`, one of GRAPH_FORMS (`export_onnx` refuses any other first)."""
    return SPECS_OF_FORM[graph](model, batch, refine)
