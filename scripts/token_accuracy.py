"""Per-scale token accuracy of a checkpoint on held-out photo tiles, against its own VQ-VAE's tokens
of the HR tile: teacher-forced (every scale sees the true coarser tokens, as training does) and
free-running (inference's greedy rollout, where a wrong token reaches every later scale).

    python scripts/token_accuracy.py CKPT [CKPT ...] [--tiles 48]

It also prints how many distinct codes the free-running rollout uses at the finest scale against
the VQ-VAE's tokens: a transformer that predicts a few frequent codes everywhere scores a
plausible accuracy while carrying no detail.
"""
from __future__ import annotations

import argparse

import torch

from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.hcc import split_scales
from alignvar_edge.quantize.calibration.tiles import tile_pairs


def accuracies(ckpt: str, tiles: int) -> None:
    model = load_pretrained(ckpt).eval()
    lr_np, hr_np = tile_pairs(model.config, tiles)
    lr, hr = torch.from_numpy(lr_np), torch.from_numpy(hr_np)
    with torch.no_grad():
        truth = model.vae.img_to_idx(hr, lr)
        teacher = model.forward_teacher(lr, truth).argmax(-1)
        free = model.tokens(lr)
    rows = []
    patch_nums = model.config.patch_nums
    for p, t, tf_k, fr_k in zip(patch_nums, truth, split_scales(teacher, patch_nums), free):
        t = t.reshape(tiles, -1)
        tf_acc = (tf_k == t).float().mean().item()
        fr_acc = (fr_k.reshape(tiles, -1) == t).float().mean().item()
        rows.append(f"{p}:{100 * tf_acc:.0f}/{100 * fr_acc:.0f}")
    finest_free = free[-1].unique().numel()
    finest_true = truth[-1].unique().numel()
    print(f"{ckpt}: per scale teacher/free % {' '.join(rows)}; "
          f"finest-scale codes used: free-running {finest_free}, VQ-VAE {finest_true}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--tiles", type=int, default=48)
    a = ap.parse_args()
    for ckpt in a.checkpoints:
        accuracies(ckpt, a.tiles)


if __name__ == "__main__":
    main()
