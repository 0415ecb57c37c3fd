r"""HCC: Hierarchical Consistency Constraint (AlignVAR, training only).

Cross-entropy supervises each scale's residual tokens in isolation; HCC also supervises what the
predictions *build*. For every scale k the accumulated latent reconstruction from the model's soft
predictions is compared with the one from the ground-truth tokens:

    h_hat_j = sum_v softmax(logits_j)_v E_v                  expected code embedding, scale j
    F_hat_k = sum_{j<=k} phi_j(bicubic(h_hat_j, P))           predicted accumulation
    F_k     = sum_{j<=k} phi_j(bicubic(E[idx_j], P))          ground-truth accumulation
    L_HCC   = sum_k w_k * mean ||F_hat_k - F_k||^2,   w_k = 1/K by default
    L       = CE + lambda * L_HCC

The paper's exact weighting is not public; w_k (`hcc_scale_weights`) and lambda (`hcc_weight`)
are configurable. Gradients reach the transformer through the softmax; the codebook and phi are
frozen in the transformer stage. HCC is exactly 0 when the predicted distributions are one-hot on
the ground truth.

Where the predictions come from (`hcc_rollout`):
- "teacher" (default): the teacher-forced logits, so every scale's input is built from the ground
  truth and no deviation of the model ever reaches a later scale's input.
- "gumbel": a free-running rollout (AlignVAR.forward_free): at each scale a token is drawn per
  position by Gumbel-max on the logits, fed forward as a straight-through one-hot (value: the hard
  one-hot; gradient: that of softmax((logits + g) / tau)), and the next scale's input is built
  from the accumulated draws, as at inference. A wrong token at scale j changes f_hat_j, hence the
  input of scale j+1, and F_hat_k for every k >= j is compared with the ground truth F_k: the model
  is penalised for the deviation and for not correcting it at later scales.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from alignvar_edge.model.vqvae import MultiScaleQuantizer


def hcc_loss(probs_per_scale: Sequence[torch.Tensor], gt_idx: Sequence[torch.Tensor],
             quantizer: MultiScaleQuantizer, weights: Sequence[float] | None = None) -> torch.Tensor:
    """probs_per_scale[k]: (B, p_k^2, V) token distributions; gt_idx[k]: (B, p_k^2) int64."""
    K = len(probs_per_scale)
    w = list(weights) if weights is not None else [1.0 / K] * K
    if len(w) != K or len(gt_idx) != K:
        raise ValueError(f"need {K} weights and {K} ground-truth scales, got {len(w)} and {len(gt_idx)}")
    loss = probs_per_scale[0].new_zeros(())
    f_pred = f_true = None
    for k, (probs, idx) in enumerate(zip(probs_per_scale, gt_idx)):
        p = quantizer.patch_nums[k]
        h_pred = quantizer.embed_scale(quantizer.soft_to_h(probs, p), k)
        with torch.no_grad():
            h_true = quantizer.embed_scale(quantizer.idx_to_h(idx, p), k)
        f_pred = h_pred if f_pred is None else f_pred + h_pred
        f_true = h_true if f_true is None else f_true + h_true
        loss = loss + w[k] * F.mse_loss(f_pred, f_true)
    return loss


def gumbel_straight_through(logits_BlV: torch.Tensor, tau: float, generator: torch.Generator | None = None
                            ) -> torch.Tensor:
    """One-hot Gumbel-max draws with the gradient of the tempered Gumbel softmax, (B, l, V)."""
    # drawn where the generator lives (the CPU), so the draws do not depend on the training device
    u = torch.rand(logits_BlV.shape, generator=generator, dtype=logits_BlV.dtype).to(logits_BlV.device)
    g = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
    return _straight_through((logits_BlV + g) / tau)


def greedy_straight_through(logits_BlV: torch.Tensor) -> torch.Tensor:
    """Inference's greedy one-hot choices with the gradient of softmax(logits), (B, l, V)."""
    return _straight_through(logits_BlV)


def _straight_through(scores_BlV: torch.Tensor) -> torch.Tensor:
    """Value: the one-hot argmax of the scores; gradient: that of their softmax."""
    soft = torch.softmax(scores_BlV, dim=-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def split_scales(x_BLV: torch.Tensor, patch_nums: Sequence[int]) -> list[torch.Tensor]:
    """Cut a (B, sum p^2, ...) tensor into its per-scale pieces."""
    return list(torch.split(x_BLV, [p * p for p in patch_nums], dim=1))
