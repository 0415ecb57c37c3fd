"""The faint grid tiling leaves in a result: how large, at which overlap.

    PYTHONPATH=. python scripts/tile_grid.py [ENGINE] [--image astronaut] [--lr-side 128] [--overlaps 4,6,2] [--out grid.json]

ENGINE is an engine or export directory, or a checkpoint (default: the bundled model). A held-out
photograph, resized (bicubic) to an LR square of --lr-side, is upscaled at each overlap; the result
less a bicubic upscale of the same LR, averaged over colour and along each row (and each column),
is folded at the tile stride ((tile - overlap) x scale output px) and at the stride -/+ 4 px as a
control. Per overlap and direction it prints the folded profile's peak to peak and rms in levels of
255: a grid shows as a stride figure above the controls'.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from alignvar_edge.cpuinfo import host_info, host_line
from alignvar_edge.runtimes import load
from alignvar_edge.samples import sample_images

CONTROL_SHIFT = 4          # output px either side of the stride: no grid there


def _fold(profile: np.ndarray, period: int) -> tuple[float, float]:
    """Peak to peak and rms of `profile` averaged over whole periods, its mean removed."""
    n = len(profile) // period * period
    folded = profile[:n].reshape(-1, period).mean(axis=0)
    folded -= folded.mean()
    return float(np.ptp(folded)), float(np.sqrt((folded ** 2).mean()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", nargs="?", default="alignvar-tiny")
    ap.add_argument("--image", default="astronaut", help="a held-out photograph's name")
    ap.add_argument("--lr-side", type=int, default=128)
    ap.add_argument("--overlaps", default="4,6,2", help="LR px; the first is the engine's default")
    ap.add_argument("--out")
    a = ap.parse_args()
    photo = dict(sample_images("heldout"))[a.image]
    lr = Image.fromarray(np.round(photo * 255).astype(np.uint8)).resize((a.lr_side, a.lr_side), Image.BICUBIC)
    rows = []
    with load(a.engine, threads=1) as engine:
        side = a.lr_side * engine.scale
        bicubic = np.asarray(lr.resize((side, side), Image.BICUBIC), np.float64)
        for overlap in (int(o) for o in a.overlaps.split(",")):
            sr = np.asarray(engine.upscale(np.asarray(lr), overlap=overlap), np.float64)
            diff = (sr - bicubic).mean(axis=2)
            stride = (engine.tile_size - overlap) * engine.scale
            for direction, profile in (("rows", diff.mean(axis=1)), ("columns", diff.mean(axis=0))):
                ptp, rms = _fold(profile, stride)
                controls = [_fold(profile, stride + d)[0] for d in (-CONTROL_SHIFT, CONTROL_SHIFT)]
                rows.append({"overlap": overlap, "stride_px": stride, "direction": direction,
                             "peak_to_peak": round(ptp, 2), "rms": round(rms, 2),
                             "control_peak_to_peak": [round(c, 2) for c in controls]})
                print(f"overlap {overlap} (grid {stride} px), {direction}: peak to peak {ptp:.2f} levels "
                      f"(rms {rms:.2f}); at {stride - CONTROL_SHIFT}/{stride + CONTROL_SHIFT} px "
                      f"{controls[0]:.2f}/{controls[1]:.2f}")
        backend = engine.backend
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"engine": a.engine, "backend": backend, "image": a.image, "lr_side": a.lr_side,
                       "host": host_line(host_info()), "grid": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
