"""VARSR's AdaIN colour fix on tensors (`AlignVAR.super_resolve`): give the SR image the per-channel
mean and deviation of the LR image. Engines apply the same fix to whole images with
`images.color_fix`, torch-free."""
from __future__ import annotations

import torch

from alignvar_edge.images.color_fix import EPS


def _mean_std(x_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x_BCHW.flatten(2)
    var = flat.var(dim=2) + EPS                       # unbiased, as the reference computes it
    return flat.mean(dim=2)[..., None, None], var.sqrt()[..., None, None]


def adain_color_fix(sr_B3HW: torch.Tensor, reference_B3HW: torch.Tensor) -> torch.Tensor:
    """sr normalised per channel, then scaled and shifted to the reference's statistics; in [0, 1]."""
    sr_mean, sr_std = _mean_std(sr_B3HW)
    ref_mean, ref_std = _mean_std(reference_B3HW)
    return ((sr_B3HW - sr_mean) / sr_std * ref_std + ref_mean).clamp(0.0, 1.0)
