"""SCA options: excluded window, noise-level gate, softplus alpha; defaults keep today's form."""
from __future__ import annotations

import pytest
import torch

from _runtime_fixtures import micro_model
from alignvar_edge.errors import ConfigError
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.sca import SCAGuidance, alpha_from_raw, raw_from_alpha


def with_alpha_zero(model: AlignVAR) -> AlignVAR:
    zero = AlignVAR(model.config).eval()
    zero.load_state_dict(model.state_dict())
    with torch.no_grad():
        for blk in zero.blocks:
            blk.attn.sca_alpha.fill_(-30.0 if model.config.sca_alpha_param == "softplus" else 0.0)
    return zero


def edge_lr(batch: int = 2) -> torch.Tensor:
    lr = torch.zeros(batch, 3, 8, 8)
    lr[..., :, 3:] = 0.8
    lr[1:, ..., 5:, :] = 0.2
    return lr


def test_excluded_window_reaches_the_attention_logits() -> None:
    """r >= P - 1 excludes every pair: plain attention exactly; r = 0 only the diagonal."""
    P = 8
    for r, equal in ((P - 1, True), (0, False)):
        model = micro_model(sca_alpha_init=2.0, sca_exclude_radius=r)
        _, _, logits = model.rollout(edge_lr())
        _, _, plain = with_alpha_zero(model).rollout(edge_lr())
        assert all(torch.equal(a, b) for a, b in zip(logits, plain)) == equal, r
    model = micro_model(sca_exclude_radius=0)
    p0 = model.config.prefix_len
    reach = model.sca_reach[p0:, p0:]
    assert reach.diagonal().abs().sum() == 0
    assert torch.equal(reach + torch.eye(reach.shape[0]), micro_model().sca_reach[p0:, p0:])


def test_excluded_window_is_the_chebyshev_neighbourhood() -> None:
    keep = SCAGuidance(8, (4,), exclude_radius=1).keep(4)
    assert keep is not None and keep.shape == (16, 16)
    # token (1, 1) = 5: its 3x3 window (9 tokens) is excluded, the other 7 kept
    assert keep[5].view(4, 4).tolist() == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1]]
    assert SCAGuidance(8, (4,)).keep(4) is None


def noisy(lr: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    return lr + sigma * torch.randn(lr.shape, generator=torch.Generator().manual_seed(seed))


def test_noise_estimate_is_immerkaers() -> None:
    g = SCAGuidance(64, (64,), gate=1.0)
    flat = noisy(torch.full((1, 3, 66, 66), 0.5), 0.0)
    for sigma in (4 / 255, 12 / 255):
        y = noisy(flat[:, :1], sigma, seed=int(sigma * 255))
        est = g.noise_sigma(y).item()
        assert abs(est - sigma) < 0.1 * sigma, (est, sigma)


def test_gate_shrinks_noise_descriptors_and_keeps_edges() -> None:
    lr = torch.full((1, 3, 16, 16), 0.5)
    lr[..., :, 8:] = 0.9                                   # one vertical edge between columns 7|8
    lr = noisy(lr, 8 / 255)
    cols = torch.arange(64) % 8                            # finest token grid 8 x 8
    edge, flat = (cols == 3) | (cols == 4), (cols == 1) | (cols == 6)
    norms = {}
    for gate in (0.0, 2.0):
        g = SCAGuidance(16, (8,), gate=gate)
        norms[gate] = g.descriptors(g.guidance(lr), 8)[0].norm(dim=-1)
    assert norms[0.0][flat].mean() > 0.95                  # today: unit-norm noise descriptors
    assert norms[2.0][flat].mean() < 0.5
    assert norms[2.0][edge].mean() > 0.9


def test_softplus_alpha_round_trips_and_never_has_a_dead_gradient() -> None:
    for a in (0.05, 0.5, 7.5):
        raw = torch.tensor(raw_from_alpha(a, "softplus", 8.0))
        assert abs(alpha_from_raw(raw, "softplus", 8.0).item() - a) < 1e-5
    for param, raw_value, dead in (("clamp", -0.3, True), ("softplus", -6.0, False)):
        raw = torch.tensor([raw_value], requires_grad=True)
        alpha_from_raw(raw, param, 8.0).sum().backward()
        assert (raw.grad.abs().item() == 0.0) == dead, param


def test_sca_option_validation() -> None:
    with pytest.raises(ConfigError, match="sca_alpha_param"):
        AlignVARConfig.from_preset("micro", sca_alpha_param="exp")
    with pytest.raises(ConfigError, match="sca_exclude_radius"):
        AlignVARConfig.from_preset("micro", sca_exclude_radius=-2)
    with pytest.raises(ConfigError, match="sca_gate"):
        AlignVARConfig.from_preset("micro", sca_gate=-1.0)
    old = AlignVARConfig.from_preset("tiny").to_dict()
    for key in ("sca_alpha_param", "sca_exclude_radius", "sca_gate"):
        old.pop(key)                                       # a config.json written before the options
    c = AlignVARConfig.from_dict(old)
    assert (c.sca_alpha_param, c.sca_exclude_radius, c.sca_gate) == ("clamp", -1, 0.0)
