"""The losses of the training stages, one function per stage, and what they share with the loop.

Each returns (loss, stats for the log). The decoder and joint stages train on the latent inference
builds, so the decoder modules and the rollout that builds that latent live here too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from alignvar_edge.degrade import item_seed, low_quality
from alignvar_edge.model import AlignVAR, AlignVARConfig
from alignvar_edge.model.alignvar import POSITIVE
from alignvar_edge.model.hcc import greedy_straight_through, gumbel_straight_through, hcc_loss, split_scales
from alignvar_edge.model.rollout import FreeRunning, ModelStages
from alignvar_edge.model.rollout import run as run_stages


def psnr(rec: torch.Tensor, hr: torch.Tensor) -> float:
    """PSNR (dB) of the clamped reconstruction, for the log."""
    mse = F.mse_loss(rec.detach().clamp(0, 1), hr)
    return float(-10 * torch.log10(mse.clamp_min(1e-10)))


def decoder_modules(model: AlignVAR) -> list[torch.nn.Module]:
    """What turns f_hat (and the LR) into the image: the modules the decoder stage trains."""
    vae = model.vae
    return [m for m in (vae.post_quant_conv, vae.decoder, vae.lr_skip) if m is not None]


def vqvae_loss(model: AlignVAR, hr: torch.Tensor, lr_img: torch.Tensor,
               usage: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    rec, vq_loss, idx = model.vae(hr, lr_img)
    if usage is not None:
        for i in idx:
            usage[i.reshape(-1)] = True
    l1 = F.l1_loss(rec, hr)
    loss = l1 + vq_loss
    return loss, {"loss": float(loss.detach()), "l1": float(l1.detach()), "vq": float(vq_loss.detach()),
                  "psnr": psnr(rec, hr)}


def transformer_loss(model: AlignVAR, hr: torch.Tensor, lr_img: torch.Tensor, quality: torch.Tensor,
                     gen: torch.Generator | None = None, target_hr: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """CE (teacher-forced) + lambda * HCC; HCC's predictions per `hcc_rollout` (model/hcc.py).

    `target_hr`: the image whose tokens are the targets (default `hr`; image CFG's negative
    samples pass their low-quality image). `gen` draws the Gumbel noise of a "gumbel" rollout.
    """
    c = model.config
    with torch.no_grad():
        idx = model.vae.img_to_idx(hr if target_hr is None else target_hr, lr_img)
    logits = model.forward_teacher(lr_img, idx, quality)
    target = torch.cat(idx, dim=1)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    loss = ce
    hcc = torch.zeros(())
    stats: dict[str, float] = {}
    if c.hcc_weight > 0:
        weights = c.hcc_scale_weights or None
        if c.hcc_rollout == "gumbel":
            _, probs, _ = model.forward_free(lr_img, quality,
                                             lambda k, lg: gumbel_straight_through(lg, c.hcc_tau, gen))
            stats["free_acc"] = float((torch.cat([p.argmax(-1) for p in probs], 1) == target).float().mean())
        else:
            probs = split_scales(torch.softmax(logits, dim=-1), c.patch_nums)
        hcc = hcc_loss(probs, idx, model.vae.quantize, weights)
        loss = ce + c.hcc_weight * hcc
    acc = float((logits.argmax(-1) == target).float().mean())
    return loss, {"loss": float(loss.detach()), "ce": float(ce.detach()), "hcc": float(hcc.detach()),
                  "token_acc": acc, **stats}


def decoder_loss(model: AlignVAR, hr: torch.Tensor, lr_img: torch.Tensor, latent: str
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of the decoded image against the HR, on the latent inference will hand the decoder: the
    frozen transformer's greedy rollout ("model"), or f_hat = 0 ("zero", the control)."""
    with torch.no_grad():
        f_hat = inference_latent(model, lr_img) if latent == "model" else \
            lr_img.new_zeros(lr_img.shape[0], model.config.vq_cvae, model.config.latent_size, model.config.latent_size)
    rec = model.vae.decode_unclamped(f_hat, lr_img)
    l1 = F.l1_loss(rec, hr)
    return l1, {"loss": float(l1.detach()), "psnr": psnr(rec, hr)}


def joint_loss(model: AlignVAR, hr: torch.Tensor, lr_img: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of the image decoded from the model's own rollout, with gradients into the transformer.

    The rollout is inference's (greedy tokens, the positive quality label, every scale fed the
    accumulated choices); each choice is a straight-through one-hot, so the forward value is the
    latent inference builds and the gradient reaches the logits through their softmax.
    """
    rec = model.vae.decode_unclamped(differentiable_inference_latent(model, lr_img), lr_img)
    l1 = F.l1_loss(rec, hr)
    return l1, {"loss": float(l1.detach()), "psnr": psnr(rec, hr)}


def differentiable_inference_latent(model: AlignVAR, lr_img: torch.Tensor) -> torch.Tensor:
    """`inference_latent`'s value, with the gradient of every scale's softmax behind its choices."""
    quality = torch.full((lr_img.shape[0],), POSITIVE, dtype=torch.long, device=lr_img.device)
    return run_stages(FreeRunning(model, quality, lambda k, lg: greedy_straight_through(lg)), lr_img)[0]


class _Undecoded(ModelStages):
    """Inference's rollout stopped before the decoder: it returns f_hat instead of the image."""

    def finish(self, f_hat_BCPP: torch.Tensor, lr_B3hw: torch.Tensor) -> torch.Tensor:
        return f_hat_BCPP


def inference_latent(model: AlignVAR, lr_img: torch.Tensor) -> torch.Tensor:
    """The f_hat the model's own rollout builds for `lr_img` (greedy tokens, image CFG), undecoded."""
    return run_stages(_Undecoded(model), lr_img)[0]


def negative_targets(hr: torch.Tensor, negative: torch.Tensor, config: AlignVARConfig,
                     gen: torch.Generator) -> torch.Tensor | None:
    """Image CFG's targets: with `cfg_negative` "degraded", the negative-label samples learn the
    tokens of a genuinely low-quality image of their crop (degrade.py: low_quality), as
    VARSR's image CFG does; None ("dropout", VAR's null class: the negative label, same target)."""
    if config.cfg_negative != "degraded" or not bool(negative.any()):
        return None
    deg = config.lr_degradation()
    base = int(torch.randint(0, 2**62, (1,), generator=gen))
    target = hr.clone()
    for i in negative.nonzero().flatten().tolist():
        lq = low_quality(hr[i].permute(1, 2, 0).cpu().numpy(), deg, item_seed(base, i))
        target[i] = torch.from_numpy(lq).permute(2, 0, 1).to(target.device)
    return target
