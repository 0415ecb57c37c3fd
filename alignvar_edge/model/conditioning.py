"""VARSR's LR conditioning: the LR image resized to the output size, through a ControlNet-style stack.

    lr (B, 3, h, w) in [0, 1] -> Pillow bicubic to (H, W), uint8 levels -> [-1, 1]
      -> conv3x3 -> SiLU -> [conv3x3 -> SiLU -> conv3x3 stride 2 -> SiLU] per width step -> conv3x3
      -> (B, P*P, C) prefix tokens

Module names follow VARSR's `con_embedding` so its checkpoints load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alignvar_edge.model.resample import PILBicubicResize


class ControlNetEmbedding(nn.Module):
    def __init__(self, width: int, channels: tuple[int, ...], lr_size: int, hr_size: int):
        super().__init__()
        self.resize = PILBicubicResize(lr_size, hr_size)
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], width, 3, padding=1)

    def lr_to_condition(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        """The image VARSR's data loader feeds: Pillow-resized LR in [-1, 1]."""
        return self.resize(lr_B3hw) * 2 - 1

    def embed(self, cond_B3HW: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(cond_B3HW))
        for conv in self.blocks:
            h = F.silu(conv(h))
        return self.conv_out(h).flatten(2).transpose(1, 2)                  # B, P*P, C

    def forward(self, lr_B3hw: torch.Tensor) -> torch.Tensor:
        return self.embed(self.lr_to_condition(lr_B3hw))
