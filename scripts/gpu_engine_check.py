#!/usr/bin/env python
"""The torch engine on a CUDA device, with and without its CUDA-graph replay, as a user calls it
(`Engine.run` on numpy tiles, `Engine.upscale` on a whole image: host copies included).

    python scripts/gpu_engine_check.py --out runs/gpu/engine.json          # on a GPU machine
    python scripts/gpu_engine_check.py --device cpu --preset micro --runs 1 --out /tmp/e.json   # smoke test (eager twice)

1. `--preset d24-512` (paper size, random weights, logits head scaled as in `export --preset`)
   in fp16 at batch 1: one 128 px LR tile -> one 512x512 image, eager and graphed interleaved,
   medians, tokens of the graphed engine against the eager one.
2. The bundled `alignvar-tiny` in fp32: a 128x128 LR photograph -> 512x512 (121 tiles in batches
   of 16), eager and graphed interleaved, medians, the largest pixel difference.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _interleaved(calls: dict[str, Any], runs: int, warmup: int, device: str) -> dict[str, list[float]]:
    import torch
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(runs):
        for k, fn in calls.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def _summary(times: dict[str, list[float]]) -> dict[str, Any]:
    p50 = {k: round(statistics.median(v), 2) for k, v in times.items()}
    return {"p50_ms": p50, "graph_vs_eager": round(p50["eager"] / p50["graphed"], 3),
            "raw_ms": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def _captures(engine: Any) -> int:
    return getattr(engine._rollout, "captures", 0)        # 0: an eager engine (a CPU smoke test)


def paper_size(runs: int, device: str, preset: str) -> dict[str, Any]:
    import numpy as np

    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.runtimes.torch_backend import TorchEngine
    model = random_model(preset, seed=0)
    c = model.config
    lr = np.random.default_rng(0).random((1, 3, c.lr_size, c.lr_size), dtype=np.float32)
    half = "fp16" if device.startswith("cuda") else "fp32"
    eager = TorchEngine.from_model(model, device=device, precision=half, batch=1, cuda_graphs=False)
    graphed = TorchEngine.from_model(model, device=device, precision=half, batch=1)   # the same weights
    want, got = eager.run(lr), graphed.run(lr)
    tokens = [np.mean(a == b) for a, b in zip(want[1], got[1])]
    out = _summary(_interleaved({"eager": lambda: eager.run(lr), "graphed": lambda: graphed.run(lr)}, runs, 3,
                                device))
    out.update(model=f"{preset} random, {half}, batch 1, on {device}", tokens_equal=float(np.mean(tokens)),
               sr_max_abs_diff=float(np.abs(want[0] - got[0]).max()), captures=_captures(graphed))
    return out


def whole_image(runs: int, device: str, preset: str) -> dict[str, Any]:
    import numpy as np

    from alignvar_edge import runtimes
    from alignvar_edge.bench.image import photo_lr
    image = photo_lr(128)
    eager = runtimes.load("alignvar-tiny", backend="torch", device=device, batch=16, cuda_graphs=False)
    graphed = runtimes.load("alignvar-tiny", backend="torch", device=device, batch=16)
    want, got = eager.upscale(image), graphed.upscale(image)
    out = _summary(_interleaved({"eager": lambda: eager.upscale(image), "graphed": lambda: graphed.upscale(image)},
                                runs, 1, device))
    mp = got.shape[0] * got.shape[1] / 1e6
    out.update(model="alignvar-tiny (bundled), fp32, batch 16, 128x128 LR photo -> 512x512",
               image_mp_per_s={k: round(mp / (v / 1e3), 3) for k, v in out["p50_ms"].items()},
               sr_max_abs_diff=float(np.abs(want - got).max()), captures=_captures(graphed))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="d24-512", help="the random-weights model of part 1")
    args = ap.parse_args()
    import torch
    on_gpu = args.device.startswith("cuda")
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if on_gpu else args.device,
                              "torch": torch.__version__}
    for name, fn in (("whole_image_tiny", whole_image), ("paper_size_tile", paper_size)):
        try:
            report[name] = fn(args.runs, args.device, args.preset)
        except Exception as err:  # noqa: BLE001 - keep the other part's figures
            report[name] = {"error": f"{type(err).__name__}: {err}"}
        print(name, json.dumps({k: v for k, v in report[name].items() if k != "raw_ms"}), flush=True)
        if on_gpu:
            torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
