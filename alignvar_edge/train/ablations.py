"""Component ablations of a trained checkpoint, evaluated on the same tiles as the model itself.

Each variant is the checkpoint with one component switched off, with the model's call signature
(LR tile -> (SR tile, tokens_0, ..., tokens_{K-1})) so it runs through the same tiled engine:
  - tokens_off: the transformer's tokens thrown away; the decoder sees a zero latent, f_hat = 0
    (what the VQ decoder makes from the LR alone: bicubic plus its LR features for `tiny`);
  - sca_off:    SCA's bias removed in every block, which is alpha = 0 exactly (bit-identical
    logits, tested in tests/test_model.py). None when the model has no SCA.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from alignvar_edge.model.alignvar import AlignVAR

VARIANTS = ("model", "tokens_off", "sca_off", "bicubic", "vq_ceiling")
NOT_APPLICABLE = "n/a"


class TokensOff(nn.Module):
    """The checkpoint's decoder on f_hat = 0; the returned tokens are zeros (nothing was predicted)."""

    def __init__(self, model: AlignVAR):
        super().__init__()
        self.model = model
        self.config = model.config

    def engine_noise(self, lr_B3hw: torch.Tensor, refine: bool = True) -> torch.Tensor | None:
        """What the torch engine feeds this variant: the wrapped model's noise (unused here)."""
        return self.model.engine_noise(lr_B3hw, refine)

    def forward(self, lr_B3hw: torch.Tensor, noise_SNC: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        c = self.config                 # (the refiner's noise is unused: no tokens, nothing to refine)
        B = lr_B3hw.shape[0]
        f_hat_BCPP = lr_B3hw.new_zeros(B, c.vq_cvae, c.latent_size, c.latent_size)
        tokens = [torch.zeros(B, p * p, dtype=torch.long, device=lr_B3hw.device) for p in c.patch_nums]
        return (self.model.decode(f_hat_BCPP, lr_B3hw), *tokens)


def sca_off(model: AlignVAR) -> AlignVAR | None:
    """A copy of `model` without SCA's bias (alpha = 0 in every block); None if it has no SCA."""
    if model.sca_guidance is None:
        return None
    off = copy.deepcopy(model)
    off.sca_guidance = None          # descriptors() -> None: no bias is built or added
    return off


def variant_models(model: AlignVAR) -> dict[str, nn.Module | None]:
    """The tiled variants: the model, tokens_off and sca_off (None where not applicable)."""
    return {"model": model, "tokens_off": TokensOff(model), "sca_off": sca_off(model)}
