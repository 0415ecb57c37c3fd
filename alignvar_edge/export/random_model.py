"""Seeded random-weight models for export tests, size measurements and `export --preset`."""
from __future__ import annotations

import os

import torch

from alignvar_edge.caller import option
from alignvar_edge.errors import CheckpointError
from alignvar_edge.manifest import ModelSource
from alignvar_edge.model.alignvar import AlignVAR, load_pretrained
from alignvar_edge.model.checkpoint import checkpoint_source, chosen_checkpoint
from alignvar_edge.model.config import AlignVARConfig

__all__ = ["HEAD_GAIN", "load_model", "random_model"]

# Random weights give logits whose top-1/top-2 margins are ~1e-4, so fp32 rounding differences
# between PyTorch and a runtime can flip a greedy choice. Scaling the logits head widens the
# margins to what a trained model has, so the 100%-token parity gate tests the export, not luck.
HEAD_GAIN = 50.0


def random_model(config: AlignVARConfig | str, seed: int = 0, head_gain: float = HEAD_GAIN) -> AlignVAR:
    """An eval-mode AlignVAR with seeded random weights and the logits head scaled by head_gain."""
    cfg = AlignVARConfig.from_preset(config) if isinstance(config, str) else config
    # seeded on a forked generator: the caller's own random numbers go on as if no model was made
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AlignVAR(cfg).eval()
    with torch.no_grad():
        model.head.weight.mul_(head_gain)
        model.head.bias.mul_(head_gain)
    return model


def load_model(checkpoint: str | os.PathLike[str] | None = None, preset: str | None = None, seed: int = 0,
               hashed: bool = True) -> tuple[AlignVAR, str, ModelSource]:
    """(model, name, where its weights came from) for `export`, `deploy` and `bench`: the preset with
    seeded random weights (named NAME-random), else the checkpoint, by default the bundled model.
    `hashed`: record the checkpoint's SHA-256s in the source (an artifact's proof of its weights)."""
    ckpt = chosen_checkpoint(checkpoint, preset)
    if preset:
        return random_model(preset, seed=seed), f"{preset}-random", ModelSource.preset(preset, seed)
    try:
        model = load_pretrained(ckpt)
    except CheckpointError as e:
        hint = "" if checkpoint else f" (or pass {option('preset', 'NAME')} for random weights)"
        raise CheckpointError(f"{e}{hint}") from e
    return model, ckpt, checkpoint_source(ckpt, hashed=hashed)
