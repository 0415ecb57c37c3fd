#!/usr/bin/env python
"""Does a half-precision PyTorch model pick fp32's tokens? The first scales of one rollout, on any device.

    python scripts/half_rollout_check.py --preset varsr-d24 --depth 2 --dtype float16 --scales 3
    python scripts/half_rollout_check.py --preset d24-512 --device cuda --scales 10

Random weights (seed 0, logits head scaled as in `export --preset`), one held-out LR tile. Stops at
the first non-finite module output and names the module, which is how an fp16 overflow is found;
otherwise prints, per scale, the share of argmax tokens equal to fp32's and the largest logit
difference. `--depth` shrinks the transformer so a CPU gets through a paper-size preset's
conditioning and first scales in minutes (fp16 on a CPU is slow).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class _Stop(Exception):
    pass


def _head_logits(model: Any, lr: Any, noise: Any, scales: int) -> list[Any]:
    """The logits head's output for the first `scales` scales; stops early at a non-finite output."""
    import torch
    got: list[Any] = []

    def watch(name: str) -> Any:
        def hook(_mod: Any, _inp: Any, out: Any) -> None:
            for o in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(o, torch.Tensor) and o.is_floating_point() and not bool(torch.isfinite(o).all()):
                    print(f"non-finite output in {name} ({o.dtype}, {tuple(o.shape)})")
                    raise _Stop
            if name == "head":
                got.append((out[0] if isinstance(out, (tuple, list)) else out).detach().float().cpu())
                if len(got) >= scales:
                    raise _Stop
        return hook
    handles = [m.register_forward_hook(watch(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            model(lr, noise)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="varsr-d24")
    ap.add_argument("--depth", type=int, help="transformer blocks (default: the preset's)")
    ap.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scales", type=int, default=3, help="scales to compare")
    args = ap.parse_args()

    import torch

    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.model.config import AlignVARConfig
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    cfg = AlignVARConfig.from_preset(args.preset)
    if args.depth:
        cfg = dataclasses.replace(cfg, depth=args.depth)
    model = random_model(cfg).to(args.device)
    lr = torch.from_numpy(lr_tiles(cfg, 1, seed=0)).to(args.device)
    noise = torch.randn(cfg.noise_shape(1), generator=torch.Generator().manual_seed(0)).to(args.device) \
        if model.diffloss is not None else None
    ref = _head_logits(model, lr, noise, args.scales)
    dtype = getattr(torch, args.dtype)
    low = _head_logits(model.to(dtype), lr.to(dtype), None if noise is None else noise.to(dtype), args.scales)
    print(f"{args.preset} depth {cfg.depth} on {args.device}, {args.dtype} against float32:")
    for k, (a, b) in enumerate(zip(ref, low)):
        same = float((a.argmax(-1) == b.argmax(-1)).float().mean())
        print(f"  scale {k}: tokens equal {same:.2%}, largest logit difference {float((a - b).abs().max()):.3g} "
              f"(logits up to {float(a.abs().max()):.3g})")
    return 0 if len(low) == len(ref) == args.scales else 1


if __name__ == "__main__":
    sys.exit(main())
