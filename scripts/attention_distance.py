"""Mean intra-scale attention distance of a checkpoint on held-out photographs, SCA on and off.

For every scale with p >= 2, block, head and query token, the attention the query gives to the
tokens of its own scale is renormalised and averaged over their distance (LR pixels, token grid
step lr_size / p); "self" is the share of that attention on the query itself. Variants: the
checkpoint as it is, sca_off (alpha = 0), and the checkpoint's weights with SCA options switched on
(`--option sca_exclude_radius=0 --option sca_gate=2`), which it was not trained with.

    PYTHONPATH=. python scripts/attention_distance.py alignvar-tiny --max-side 256 \
        --option sca_exclude_radius=0 --option sca_gate=2
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from alignvar_edge.argtypes import random_seed
from alignvar_edge.bench.evaluate import scored_pair
from alignvar_edge.model import AlignVAR
from alignvar_edge.samples import sample_images
from alignvar_edge.train.ablations import sca_off


def lr_tiles(model: AlignVAR, max_side: int, seed: int) -> torch.Tensor:
    """Non-overlapping LR tiles of the held-out photographs, degraded as `eval` degrades them: the
    model's degradation, each photograph's draw from the seed and its name."""
    c = model.config
    tiles = []
    for name, hr in sample_images("heldout"):
        _, lr, _ = scored_pair(c, name, hr, seed, max_side)
        t = c.lr_size
        tiles += [lr[y:y + t, x:x + t] for y in range(0, lr.shape[0], t) for x in range(0, lr.shape[1], t)]
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def attention_stats(model: AlignVAR, lr: torch.Tensor) -> dict[str, float]:
    c = model.config
    records: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    for blk, rec in zip(model.blocks, records):
        blk.attn.probs_out = rec
    try:
        model.rollout(lr)
    finally:
        for blk in model.blocks:
            blk.attn.probs_out = None
    dist, self_share, own_scale = [], [], []
    for rec in records:
        if len(rec) != c.num_scales + 1:        # the prefix pass, then one per scale
            raise RuntimeError(f"expected {c.num_scales + 1} attention records per block, got {len(rec)}")
        for k, p in enumerate(c.patch_nums):
            if p < 2:
                continue
            a = rec[k + 1][..., -p * p:]                                   # B, H, l, l: own scale
            mass = a.sum(-1, keepdim=True)
            a = a / mass
            ij = torch.stack(torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")).flatten(1).float()
            d = (ij[:, :, None] - ij[:, None, :]).norm(dim=0) * (c.lr_size / p)
            dist.append(float((a * d).sum(-1).mean()))
            self_share.append(float(a.diagonal(dim1=-2, dim2=-1).mean()))
            own_scale.append(float(mass.mean()))
    return {"mean_distance_lr_px": float(np.mean(dist)), "self_share": float(np.mean(self_share)),
            "own_scale_mass": float(np.mean(own_scale))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default="alignvar-tiny")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--seed", type=random_seed, default=0)
    ap.add_argument("--option", action="append", default=[], help="config field=value for the last variant")
    args = ap.parse_args()
    model = AlignVAR.from_pretrained(args.checkpoint).eval()
    lr = lr_tiles(model, args.max_side, args.seed)
    variants: dict[str, AlignVAR | None] = {"checkpoint": model, "sca_off": sca_off(model)}
    if args.option:
        changes = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
        opt = AlignVAR(model.config.replace(**changes)).eval()
        opt.load_state_dict(model.state_dict())
        variants["+" + ",".join(args.option)] = opt
    print(f"{args.checkpoint}: {lr.shape[0]} LR tiles of {model.config.lr_size} px, held-out photos, seed {args.seed}")
    print(f"{'variant':<44}{'mean distance (LR px)':>22}{'self share':>12}{'own-scale mass':>16}")
    for name, m in variants.items():
        if m is None:
            print(f"{name:<44}{'n/a (no SCA)':>22}")
            continue
        s = attention_stats(m, lr)
        print(f"{name:<44}{s['mean_distance_lr_px']:>22.3f}{s['self_share']:>12.3f}{s['own_scale_mass']:>16.3f}")


if __name__ == "__main__":
    main()
