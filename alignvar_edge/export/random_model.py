"""Seeded random-weight models for export tests, size measurements and `export --preset`."""
from __future__ import annotations

import torch

from alignvar_edge.model.alignvar import AlignVAR
from alignvar_edge.model.config import AlignVARConfig

__all__ = ["HEAD_GAIN", "random_model"]

# Random weights give logits whose top-1/top-2 margins are ~1e-4, so fp32 rounding differences
# between PyTorch and a runtime can flip a greedy choice. Scaling the logits head widens the
# margins to what a trained model has, so the 100%-token parity gate tests the export, not luck.
HEAD_GAIN = 50.0


def random_model(config: AlignVARConfig | str, seed: int = 0, head_gain: float = HEAD_GAIN) -> AlignVAR:
    """An eval-mode AlignVAR with seeded random weights and the logits head scaled by head_gain."""
    cfg = AlignVARConfig.from_preset(config) if isinstance(config, str) else config
    torch.manual_seed(seed)
    model = AlignVAR(cfg).eval()
    with torch.no_grad():
        model.head.weight.mul_(head_gain)
        model.head.bias.mul_(head_gain)
    return model
