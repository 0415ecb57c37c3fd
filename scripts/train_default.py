"""Train the bundled default `alignvar-tiny` on the built-in sample photographs (CPU).

    python scripts/train_default.py --out runs/default [--vq-steps N --tf-steps N] [--install]

Stage 1 trains the VQ-VAE, stage 2 the transformer on its frozen tokens (CE + HCC, SCA on).
--install writes the final checkpoint into alignvar_edge/pretrained/alignvar-tiny with fp16-stored
weights (5.8 MB instead of 11.6 MB; docs/training.md compares it with the fp32 weights) and
remakes its golden outputs for `selftest`.
`--install-from DIR` does only that, from an already trained checkpoint; `--name` picks the bundled
model it writes (default alignvar-tiny; alignvar_edge/model/bundled.py lists the ones that ship).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alignvar_edge.argtypes import random_seed
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.bundled import BUNDLED
from alignvar_edge.model.checkpoint import PRETRAINED_DIR, load_config, save_pretrained
from alignvar_edge.runtimes.golden import make_golden
from alignvar_edge.train.trainer import TrainOptions, train


def install(final: Path, name: str = "alignvar-tiny") -> Path:
    """A bundled model from a trained checkpoint: fp16-stored weights, training.json, golden."""
    dest = PRETRAINED_DIR / name
    extra = json.loads((final / "training.json").read_text()) if (final / "training.json").is_file() else None
    save_pretrained(load_pretrained(final), dest, extra=extra, overwrite=True, weights_dtype=torch.float16)
    make_golden(dest)
    return dest


def installed(dest: Path) -> str:
    """What was installed, so that a checkpoint of another preset than the name says shows, and
    whether any verb can find it by name yet."""
    c = load_config(dest)
    mb = sum(p.stat().st_size for p in dest.iterdir() if p.is_file()) / 1e6
    line = f"installed -> {dest} (preset {c.name}: LR {c.lr_size} px -> SR {c.hr_size} px, {mb:.1f} MB)"
    if dest.name not in BUNDLED:
        line += (f"\n'{dest.name}' is not in BUNDLED (alignvar_edge/model/bundled.py; its first name is the "
                 "default): no verb finds it by name until it is added, and tests/test_bundled.py fails")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--vq-steps", type=int, default=600)
    ap.add_argument("--vq-batch", type=int, default=8)
    ap.add_argument("--tf-steps", type=int, default=1000)
    ap.add_argument("--tf-batch", type=int, default=12)
    ap.add_argument("--seed", type=random_seed, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--install-from", type=Path, help="install this trained checkpoint; no training")
    ap.add_argument("--name", default="alignvar-tiny", help="the bundled model --install writes")
    a = ap.parse_args()
    if Path(a.name).name != a.name or a.name in ("", ".", ".."):
        ap.error(f"--name must be a plain folder name, got {a.name!r}")
    if a.install_from:
        print(installed(install(a.install_from, a.name)))
        return
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
        print(installed(install(tf, a.name)))


if __name__ == "__main__":
    main()
