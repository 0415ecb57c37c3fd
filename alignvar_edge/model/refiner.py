"""VARSR's diffusion refiner: a small MLP denoiser that adds a continuous residual to the last scale.

After the last scale's tokens are chosen, each of its P*P positions gets a condition
    z = LayerNorm(h + word_embed(E[idx]))          h: the transformer's last hidden state there
and a DDPM sampler draws a Cvae-vector from an MLP denoiser (AdaLN residual blocks, as in MAR's
DiffLoss) conditioned on z; the sample times 0.6 is added to f_hat before decoding.

Sampler (improved-DDPM): cosine noise schedule over 1000 steps, respaced to `steps` evenly spaced
ones, epsilon prediction with a learned-range variance, x0 clipped to [-1, 1], and image CFG on
epsilon with the last scale's guidance weight. The noise is an explicit input, shape
(steps, N, Cvae): [0] is x_T, [j] the noise added after the j-th denoising step (the last step
adds none), so refinement is deterministic and exports as a plain graph.
"""
from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
from torch import nn

BASE_STEPS = 1000
OUTPUT_SCALE = 0.6       # VARSR's `vae_scale`: the denoiser works on latents divided by it
TIME_FREQ_DIM = 256


def cosine_alphas_cumprod(steps: int = BASE_STEPS, max_beta: float = 0.999) -> np.ndarray:
    """Cumulative alphas of the cosine schedule (Nichol & Dhariwal), float64."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta)
                      for i in range(steps)])
    return np.cumprod(1.0 - betas)


def respaced_timesteps(steps: int, base: int = BASE_STEPS) -> list[int]:
    """`steps` base timesteps spread evenly from 0 to base-1 (one section, rounded)."""
    stride = (base - 1) / (steps - 1) if steps > 1 else 1.0
    kept, at = [], 0.0
    for _ in range(steps):            # accumulated, then rounded half to even, as the reference does
        kept.append(round(at))
        at += stride
    return sorted(set(kept))


def sampler_tables(steps: int) -> dict[str, np.ndarray]:
    """Per respaced step t (0 = last): the float64 coefficients of one reverse step."""
    acp_base = cosine_alphas_cumprod()
    kept = respaced_timesteps(steps)
    acp = acp_base[kept]
    betas = 1.0 - acp / np.append(1.0, acp[:-1])
    acp_prev = np.append(1.0, acp[:-1])
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    post_log_var = np.log(np.append(post_var[1], post_var[1:])) if steps > 1 else np.array([0.0])
    return {
        "timestep": np.array(kept, dtype=np.float64),
        "recip": np.sqrt(1.0 / acp), "recipm1": np.sqrt(1.0 / acp - 1),
        "coef_x0": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "coef_xt": (1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp),
        "min_log": post_log_var, "max_log": np.log(betas),
    }


def timestep_embedding(t_N: torch.Tensor, dim: int = TIME_FREQ_DIM, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t_N.device) / half)
    args = t_N[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FREQ_DIM, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t_N: torch.Tensor) -> torch.Tensor:
        # the sinusoid is computed in f32 (its phases need it), then cast to the weights' dtype
        first = cast(nn.Linear, self.mlp[0])
        return self.mlp(timestep_embedding(t_N).to(first.weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_ch: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_ch)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class Denoiser(nn.Module):
    """MLP with AdaLN blocks: (x_t, t, z) -> (epsilon, variance interpolation), each Cvae wide."""

    def __init__(self, channels: int, cond_width: int, width: int, depth: int):
        super().__init__()
        self.time_embed = TimestepEmbedder(width)
        self.cond_embed = nn.Linear(cond_width, width)
        self.input_proj = nn.Linear(channels, width)
        self.res_blocks = nn.ModuleList([ResBlock(width) for _ in range(depth)])
        self.final_layer = FinalLayer(width, 2 * channels)

    def forward(self, x_NC: torch.Tensor, t_N: torch.Tensor, z_ND: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x_NC)
        y = self.time_embed(t_N) + self.cond_embed(z_ND)
        for block in self.res_blocks:
            x = block(x, y)
        return self.final_layer(x, y)


class DiffusionRefiner(nn.Module):
    """VARSR's `diffloss`: the denoiser (`net`) and its respaced DDPM sampler."""

    # the sampler's tables, non-persistent buffers named by sampler_tables' keys
    timestep: torch.Tensor
    recip: torch.Tensor
    recipm1: torch.Tensor
    coef_x0: torch.Tensor
    coef_xt: torch.Tensor
    min_log: torch.Tensor
    max_log: torch.Tensor

    def __init__(self, channels: int, cond_width: int, width: int, depth: int, steps: int):
        super().__init__()
        self.channels = channels
        self.steps = steps
        self.net = Denoiser(channels, cond_width, width, depth)
        for name, table in sampler_tables(steps).items():
            # float32, as the reference sampler casts each coefficient when it uses it
            self.register_buffer(name, torch.from_numpy(table).float(), persistent=False)

    def sample(self, z_ND: torch.Tensor, noise_SNC: torch.Tensor, cfg: float | None) -> torch.Tensor:
        """Residual latents (N, C) for conditions z; with cfg, z is (2N, D): positive then negative."""
        x = noise_SNC[0]
        n = x.shape[0]
        for j, t in enumerate(reversed(range(self.steps))):
            t_N = self.timestep[t].expand(n)
            if cfg is None:
                out = self.net(x, t_N, z_ND)
                eps, var = out[:, :self.channels], out[:, self.channels:]
            else:
                out = self.net(torch.cat([x, x]), torch.cat([t_N, t_N]), z_ND)
                eps_pos, eps_neg = out[:n, :self.channels], out[n:, :self.channels]
                eps = eps_pos * (1 + cfg) - cfg * eps_neg
                var = out[:n, self.channels:]
            frac = (var + 1) / 2
            log_var = frac * self.max_log[t] + (1 - frac) * self.min_log[t]
            x0 = torch.clamp(self.recip[t] * x - self.recipm1[t] * eps, -1.0, 1.0)
            mean = self.coef_x0[t] * x0 + self.coef_xt[t] * x
            x = mean + torch.exp(0.5 * log_var) * noise_SNC[j + 1] if t > 0 else mean
        return x * OUTPUT_SCALE
