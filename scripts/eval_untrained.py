"""The untrained initialisation of a checkpoint's model, scored as `eval` scores the model.

    PYTHONPATH=. python scripts/eval_untrained.py [alignvar-tiny] [--max-side 256] [--out untrained.json]

The checkpoint's config with PyTorch's seeded random initialisation (torch.manual_seed(0)), the
held-out sample photographs, seed 0: the floor that training lifts the model from. The JSON records
the seed and each photograph's degradation (`degradation`), as `eval --json` does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from alignvar_edge import AlignVAR
from alignvar_edge.bench.evaluate import evaluate
from alignvar_edge.model.checkpoint import load_config, resolve_checkpoint_dir
from alignvar_edge.samples import sample_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default="alignvar-tiny")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = AlignVAR(load_config(resolve_checkpoint_dir(args.checkpoint))).eval()
    r = evaluate(model, sample_images("heldout"), seed=0, max_side=args.max_side)
    report = {"checkpoint_config": args.checkpoint, "init_seed": 0, "max_side": args.max_side, "seed": r["seed"],
              "mean_psnr_y": r["mean_psnr_y"]["model"], "mean_ssim_y": r["mean_ssim_y"]["model"],
              "images": {s["name"]: {"psnr_y": s["psnr"]["model"], "ssim_y": s["ssim"]["model"],
                                     "degradation": s["degradation"]} for s in r["images"]}}
    print(f"untrained {args.checkpoint}: PSNR-Y {report['mean_psnr_y']:.2f} dB, SSIM-Y {report['mean_ssim_y']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
