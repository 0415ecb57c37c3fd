"""2-D rotary positions in real arithmetic: ours (scale-aligned) and VARSR's.

Every token gets a (y, x) position on the common P x P grid of the finest scale: a token (i, j)
of a p x p map sits at the centre of its cell, ((i + 0.5) P/p - 0.5, (j + 0.5) P/p - 0.5), so
tokens of different scales that cover the same region share a position. The first half of each
head's channels rotates with y, the second half with x. Pairs (2n, 2n+1) rotate by pos * freq_n,
written with cos/sin so no complex dtype reaches an exported graph.
"""
from __future__ import annotations

import torch


def scale_positions(p: int, grid: int) -> torch.Tensor:
    """(p*p, 2) float positions (y, x) of a p x p token map on the grid x grid lattice."""
    c = (torch.arange(p, dtype=torch.float64) + 0.5) * (grid / p) - 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)


def rope_tables(pos_L2: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (L, head_dim/2) for positions (L, 2)."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)   # (hd/4,)
    ang = torch.cat([pos_L2[:, :1] * freqs, pos_L2[:, 1:] * freqs], dim=1)     # (L, hd/2)
    return torch.cos(ang).float(), torch.sin(ang).float()


VARSR_GRID = 32      # VARSR places every p x p map on a 32-unit lattice whatever the latent size


def varsr_positions(p: int) -> torch.Tensor:
    """(p*p, 2) float32 positions (row, col) of a p x p map as VARSR has them: (i / p) * 32.

    Cell corners rather than centres, in float32 arithmetic, so the tables equal VARSR's bit for bit.
    """
    i = torch.arange(p)
    rows, cols = torch.meshgrid(i, i, indexing="ij")
    return torch.stack([rows.reshape(-1) / p * VARSR_GRID, cols.reshape(-1) / p * VARSR_GRID], dim=1)


def varsr_rope_tables(pos_L2: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (L, head_dim/2) computed in float32 as VARSR computes its complex table."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    ang = torch.cat([torch.outer(pos_L2[:, 0].float(), freqs), torch.outer(pos_L2[:, 1].float(), freqs)], dim=1)
    return torch.cos(ang), torch.sin(ang)


def pair_tables(cos_Lh: torch.Tensor, sin_Lh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width (L, head_dim) tables for `apply_rope`: cos repeated per pair, sin signed (-s, +s)."""
    return cos_Lh.repeat_interleave(2, dim=-1), torch.stack([-sin_Lh, sin_Lh], dim=-1).flatten(-2)


def pair_swap(head_dim: int) -> torch.Tensor:
    """(d, d) permutation: x @ it exchanges channels 2n and 2n+1."""
    perm = torch.arange(head_dim).view(-1, 2).flip(-1).reshape(-1)
    return torch.eye(head_dim)[perm].T.contiguous()


def apply_rope(x_Ld: torch.Tensor, cos_Ld: torch.Tensor, sin_Ld: torch.Tensor, swap_dd: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2n, 2n+1) of x (..., L, d) by the angles of `pair_tables`.

    (e, o) -> (e c - o s, o c + e s) as x * cos + swap(x) * sin: four graph ops whatever the rank,
    and bit for bit the pairwise formula (the swap multiplies by exact ones and zeros).
    """
    return x_Ld * cos_Ld + torch.matmul(x_Ld, swap_dd) * sin_Ld

