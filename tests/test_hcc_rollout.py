"""HCC on free-running rollouts: a deviation at scale j reaches scale j+1's input and is penalised."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from alignvar_edge.errors import ConfigError
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.alignvar import POSITIVE
from alignvar_edge.model.hcc import gumbel_straight_through, hcc_loss
from alignvar_edge.train.losses import transformer_loss
from alignvar_edge.train.trainer import TrainOptions, make_batches, train

J = 1      # the scale that deviates


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = AlignVAR(AlignVARConfig.from_preset("micro")).eval()
    g = torch.Generator().manual_seed(seed)
    lr, hr = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    idx = model.vae.img_to_idx(hr, lr)
    return model, lr, idx, torch.full((2,), POSITIVE)


def replay(idx, deviate_at: int | None = None, vocab: int = 64):
    """choose(): the ground-truth tokens as one-hots; at `deviate_at` token 0 takes another code."""
    def choose(k: int, logits: torch.Tensor) -> torch.Tensor:
        tok = idx[k].clone()
        if k == deviate_at:
            tok[:, 0] = (tok[:, 0] + 1) % vocab
        return F.one_hot(tok, vocab).float()
    return choose


def test_deviation_at_scale_j_changes_the_inputs_of_scale_j_plus_1() -> None:
    model, lr, idx, quality = setup()
    c = model.config
    teacher = torch.split(model.vae.quantize.teacher_inputs(idx), [p * p for p in c.patch_nums[1:]], dim=1)
    with torch.no_grad():
        _, _, exact = model.forward_free(lr, quality, replay(idx))
        _, dev_choices, dev = model.forward_free(lr, quality, replay(idx, deviate_at=J))
    # on the ground truth, the free rollout's inputs are the teacher-forced ones ...
    for k in range(1, c.num_scales):
        assert (exact[k] - teacher[k - 1]).abs().max().item() < 1e-6, k
    # ... a deviation at scale J leaves scales <= J alone and reaches every later scale's input
    for k in range(1, J + 1):
        assert torch.equal(dev[k], exact[k]), k
    for k in range(J + 1, c.num_scales):
        assert (dev[k] - exact[k]).abs().max().item() > 1e-4, k
    # and HCC, 0 on the truth, penalises it (teacher-forced inputs never contain it: they are
    # a function of the ground truth alone, model.vae.quantize.teacher_inputs(idx))
    q = model.vae.quantize
    assert hcc_loss([F.one_hot(i, c.vq_vocab).float() for i in idx], idx, q).item() == 0.0
    assert hcc_loss(dev_choices, idx, q).item() > 0.0


def test_gumbel_rollout_gradient_reaches_scale_j_from_scale_j_plus_1() -> None:
    model, lr, idx, quality = setup()
    gen = torch.Generator().manual_seed(0)
    logits, _, _ = model.forward_free(lr, quality, lambda k, lg: gumbel_straight_through(lg, 1.0, gen))
    (grad,) = torch.autograd.grad(logits[J + 1].square().sum(), logits[J])
    assert grad.abs().sum() > 0


def test_gumbel_straight_through_is_a_one_hot_draw() -> None:
    logits = torch.tensor([[[0.0, 3.0, -1.0]]]).expand(1, 4000, 3).contiguous()
    y = gumbel_straight_through(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(y.sum(-1), torch.ones(1, 4000)) and set(y.unique().tolist()) == {0.0, 1.0}
    freq = y.mean(1)[0]
    assert (freq - torch.softmax(logits[0, 0], -1)).abs().max() < 0.03      # Gumbel-max samples softmax


def test_the_default_scale_weights_are_one_over_k_in_the_loss_and_in_training() -> None:
    """docs/model.md: w_k = 1/K where hcc_scale_weights is left empty, as it is for every preset."""
    model, lr, idx, quality = setup()
    q, K = model.vae.quantize, len(idx)
    g = torch.Generator().manual_seed(1)
    probs = [torch.softmax(torch.randn(*i.shape, model.config.vq_vocab, generator=g), -1) for i in idx]
    with torch.no_grad():
        assert hcc_loss(probs, idx, q).item() == pytest.approx(hcc_loss(probs, idx, q, [1.0 / K] * K).item(), rel=1e-6)
    # the transformer stage's loss, with the config left empty and with 1/K spelled out
    assert model.config.hcc_scale_weights == () and model.config.hcc_weight > 0
    spelled = AlignVAR(dataclasses.replace(model.config, hcc_scale_weights=(1.0 / K,) * K)).eval()
    spelled.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)          # setup()'s draw: its LR and the HR it took the tokens of
    lr, hr = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        default, explicit = (transformer_loss(m, hr, lr, quality)[1] for m in (model, spelled))
    assert default["hcc"] > 0
    assert default["hcc"] == pytest.approx(explicit["hcc"], rel=1e-6)
    assert default["loss"] == pytest.approx(explicit["loss"], rel=1e-6)


def test_hcc_config_fields() -> None:
    with pytest.raises(ConfigError, match="hcc_scale_weights"):
        AlignVARConfig.from_preset("micro", hcc_scale_weights=(1.0, 2.0))
    with pytest.raises(ConfigError, match="hcc_rollout"):
        AlignVARConfig.from_preset("micro", hcc_rollout="free")
    c = AlignVARConfig.from_preset("micro", hcc_scale_weights=[0.1, 0.2, 0.3, 0.4])
    assert AlignVARConfig.from_json(c.to_json()) == c


def test_gumbel_hcc_training_runs_and_resumes_bit_exactly(tmp_path: Path) -> None:
    base = dict(preset="micro", batch=2, lr=3e-3, warmup=1, log_every=1, save_every=1000, progress=False)
    batches = make_batches(None, AlignVARConfig.from_preset("micro"), 2, 0)
    vq = train(TrainOptions(stage="vqvae", out=tmp_path / "vq", steps=2, **base), batches)
    o = dict(base, init=str(vq), overrides={"hcc_rollout": "gumbel", "hcc_scale_weights": [0, 0, 0.5, 0.5]})
    full = train(TrainOptions(stage="transformer", out=tmp_path / "full", steps=4, **o), batches)
    train(TrainOptions(stage="transformer", out=tmp_path / "part", steps=2, save_every=2,
                       **{k: v for k, v in o.items() if k != "save_every"}), batches)
    resumed = train(TrainOptions(stage="transformer", out=tmp_path / "part", steps=4, resume=True, **o), batches)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "free_acc" in (tmp_path / "full" / "log.csv").read_text().splitlines()[0]
    assert AlignVAR.from_pretrained(str(full)).config.hcc_rollout == "gumbel"
    with pytest.raises(ConfigError, match="width"):
        train(TrainOptions(stage="transformer", out=tmp_path / "bad", steps=1,
                           **dict(o, overrides={"width": 64})), batches)
