"""Train the bundled default `alignvar-tiny` on the built-in sample photographs (CPU).

    python scripts/train_default.py --out runs/default [--vq-steps N --tf-steps N] [--install]

Stage 1 trains the VQ-VAE, stage 2 the transformer on its frozen tokens (CE + HCC, SCA on).
--install copies the final checkpoint into alignvar_edge/pretrained/alignvar-tiny.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from alignvar_edge.model.checkpoint import PRETRAINED_DIR
from alignvar_edge.train.trainer import TrainOptions, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--vq-steps", type=int, default=600)
    ap.add_argument("--vq-batch", type=int, default=8)
    ap.add_argument("--tf-steps", type=int, default=1000)
    ap.add_argument("--tf-batch", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--install", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    vq = train(TrainOptions(stage="vqvae", out=a.out / "vqvae", steps=a.vq_steps, batch=a.vq_batch,
                            lr=1e-3, warmup=50, seed=a.seed, resume=a.resume and (a.out / "vqvae").exists(),
                            force=not a.resume))
    print(f"vqvae done in {time.time() - t0:.0f} s -> {vq}", flush=True)
    tf_dir = a.out / "transformer"
    tf = train(TrainOptions(stage="transformer", out=tf_dir, steps=a.tf_steps, batch=a.tf_batch,
                            init=str(vq), lr=1e-3, warmup=100, seed=a.seed,
                            resume=a.resume and (tf_dir / "state").exists(), force=not a.resume))
    print(f"transformer done in {time.time() - t0:.0f} s -> {tf}", flush=True)
    if a.install:
        dest = PRETRAINED_DIR / "alignvar-tiny"
        tmp = dest.with_name(".alignvar-tiny.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(tf, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        print(f"installed -> {dest}")


if __name__ == "__main__":
    main()
