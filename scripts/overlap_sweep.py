"""Tile overlap against fidelity and whole-image cost: what a smaller `--overlap` gives away.

    PYTHONPATH=. python scripts/overlap_sweep.py alignvar-tiny --out overlap.json
    PYTHONPATH=. python scripts/overlap_sweep.py --engine EXPORT_DIR --overlaps 4,2 --timing-only --out t.json

Per overlap (LR pixels): `evaluate(overlap=...)` on the held-out photographs cropped to --max-side
(PSNR-Y/SSIM-Y of the model's tiled, blended output against the HR, per image and mean; the seam
ratio, gradient energy across tile borders over the like-phase interior's, relative to bicubic's), and the
tiles a 128x128 LR image takes, which is what a whole image costs on any engine. With --engine,
also the wall time of `Engine.upscale` on bench's 128x128 LR image (the centre square of the
largest held-out photo), one thread, overlaps interleaved round by round, medians. The JSON records
the seed and each photograph's degradation as `eval` drew it (`draws`), so its figures say which LR
they were measured on.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from alignvar_edge.bench.evaluate import evaluate
from alignvar_edge.bench.image import IMAGE_LR, photo_lr
from alignvar_edge.cpuinfo import cpu_info
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.runtimes import load
from alignvar_edge.runtimes.tiling import tile_starts
from alignvar_edge.samples import sample_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", default="alignvar-tiny")
    ap.add_argument("--overlaps", default="0,1,2,3,4,6,8")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--engine", help="an engine or export directory to time whole images with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    overlaps = [int(x) for x in a.overlaps.split(",")]
    images = list(sample_images("heldout"))
    result = {"checkpoint": a.checkpoint, "max_side": a.max_side, "images": len(images), "host": cpu_info()}
    if a.engine:
        result["timing"] = time_images(a.engine, overlaps, a.rounds)
    if not a.timing_only:
        result["rows"], result["seed"], result["draws"] = fidelity(a.checkpoint, overlaps, images, a.max_side)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


def time_images(engine_dir: str, overlaps: list[int], rounds: int) -> dict:
    lr = photo_lr(IMAGE_LR)
    engine = load(engine_dir, threads=1)
    engine.upscale(lr)                                             # untimed: first-call costs
    times: dict[int, list[float]] = {ov: [] for ov in overlaps}
    for _ in range(rounds):
        for ov in overlaps:
            t0 = time.perf_counter()
            engine.upscale(lr, overlap=ov)
            times[ov].append(time.perf_counter() - t0)
    mp = (IMAGE_LR * 4) ** 2 / 1e6
    out = {"engine": engine_dir, "rounds": rounds, "threads": 1,
           "per_overlap": {ov: {"s_per_image": round(statistics.median(t), 3),
                                "image_mp_per_s": round(mp / statistics.median(t), 4)} for ov, t in times.items()}}
    print(json.dumps(out), flush=True)
    return out


def fidelity(checkpoint: str, overlaps: list[int], images: list,
             max_side: int) -> tuple[list[dict], int, dict[str, dict]]:
    """One row per overlap, the seed, and each photograph's degradation (the same at every overlap)."""
    model = load_pretrained(checkpoint)
    tile = model.config.lr_size
    rows = []
    for ov in overlaps:
        r = evaluate(model, images, max_side=max_side, overlap=ov)
        per = [s["psnr"]["model"] for s in r["images"]]
        tiles = len(tile_starts(IMAGE_LR, tile, ov)) ** 2
        rows.append({"overlap": ov, "psnr_y": round(r["mean_psnr_y"]["model"], 3),
                     "ssim_y": round(r["mean_ssim_y"]["model"], 4),
                     "bicubic_psnr_y": round(r["mean_psnr_y"]["bicubic"], 3),
                     "seam_ratio_vs_bicubic": round(r["mean_seam_ratio_vs_bicubic"], 3),
                     "per_image_psnr_y": [round(p, 3) for p in per],
                     f"tiles_per_{IMAGE_LR}px_lr_image": tiles})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_image_psnr_y"}), flush=True)
    return rows, r["seed"], {s["name"]: s["degradation"] for s in r["images"]}


if __name__ == "__main__":
    main()
