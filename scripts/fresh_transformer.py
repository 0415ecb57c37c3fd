"""A checkpoint's VQ-VAE with a freshly initialised transformer: the start of an equal-budget
ablation on an existing model's tokenizer (scripts/ablation.sh RUN STEPS reads RUN/vqvae/final).

    python scripts/fresh_transformer.py alignvar-tiny runs/abl/vqvae/final [--seed 0]
"""
from __future__ import annotations

import argparse

import torch

from alignvar_edge.argtypes import random_seed
from alignvar_edge.model.alignvar import AlignVAR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="checkpoint directory or bundled name whose VQ-VAE to keep")
    ap.add_argument("out", help="directory to write (save_pretrained)")
    ap.add_argument("--seed", type=random_seed, default=0, help="seed of the transformer's initialisation")
    args = ap.parse_args()
    source = AlignVAR.from_pretrained(args.checkpoint)
    torch.manual_seed(args.seed)
    fresh = AlignVAR(source.config)
    fresh.vae.load_state_dict(source.vae.state_dict())
    fresh.save_pretrained(args.out)
    print(f"wrote {args.out}: the VQ-VAE of {args.checkpoint}, a transformer initialised with seed {args.seed}")


if __name__ == "__main__":
    main()
