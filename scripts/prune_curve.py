"""Token pruning's speed/fidelity curve: eager time per tile and PSNR-Y on held-out photographs.

    PYTHONPATH=. python scripts/prune_curve.py alignvar-tiny --out prune-tiny.json
    PYTHONPATH=. python scripts/prune_curve.py --preset d16 --rounds 3 --out prune-d16.json

Per setting (ratios for the last scales, finest last): PyTorch eager time of one tile's rollout at
batch 1 and one thread, settings interleaved round by round (medians, ratio to unpruned); then
`evaluate(prune=...)` on the held-out photographs cropped to --max-side: PSNR-Y against the HR and
against the unpruned output, and the share of tokens equal to the unpruned rollout's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from alignvar_edge.bench.evaluate import evaluate
from alignvar_edge.cpuinfo import cpu_info
from alignvar_edge.export.random_model import random_model
from alignvar_edge.model.alignvar import load_pretrained
from alignvar_edge.model.pruning import parse_prune, pruning
from alignvar_edge.quantize.calibration.tiles import lr_tiles
from alignvar_edge.samples import sample_images

SETTINGS = ("0.5", "0.75", "0.5,0.75", "0.75,0.9")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", default="alignvar-tiny")
    ap.add_argument("--preset", help="a preset with seeded random weights instead of a checkpoint")
    ap.add_argument("--settings", default=";".join(SETTINGS), help="settings separated by ';'")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = (random_model(a.preset, seed=0) if a.preset else load_pretrained(a.checkpoint)).eval()
    settings = [()] + [parse_prune(s) for s in a.settings.split(";")]
    lr = torch.from_numpy(lr_tiles(model.config, 1, seed=0))

    times: dict[tuple[float, ...], list[float]] = {s: [] for s in settings}
    tokens: dict[tuple[float, ...], list[torch.Tensor]] = {}
    with torch.inference_mode():
        for _ in range(a.rounds):
            for s in settings:
                with pruning(model, s):
                    t0 = time.perf_counter()
                    _, toks, _ = model.rollout(lr)
                    times[s].append(time.perf_counter() - t0)
                tokens[s] = toks
    base = statistics.median(times[()])
    images = list(sample_images("heldout"))
    rows = []
    for s in settings:
        fid = evaluate(model, images, max_side=a.max_side, prune=s) if s else None
        agree = torch.cat([(x == y).flatten().float() for x, y in zip(tokens[s], tokens[()])]).mean().item()
        t = statistics.median(times[s])
        rows.append({"prune": list(s), "ms_per_tile": round(1000 * t, 1), "speedup": round(base / t, 3),
                     "tokens_vs_unpruned": round(agree, 4),
                     "psnr_y_vs_hr": None if fid is None else round(fid["mean_psnr_y"]["pruned"], 3),
                     "psnr_y_unpruned_vs_hr": None if fid is None else round(fid["mean_psnr_y"]["model"], 3),
                     "psnr_y_vs_unpruned": None if fid is None else round(fid["mean_psnr_y"]["pruned_vs_model"], 2)})
        print(json.dumps(rows[-1]), flush=True)
    report = {"model": a.preset and f"{a.preset} (random weights)" or a.checkpoint,
              "patch_nums": list(model.config.patch_nums), "rounds": a.rounds, "threads": 1,
              "host": cpu_info(),
              "torch": torch.__version__, "max_side": a.max_side, "rows": rows}
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
