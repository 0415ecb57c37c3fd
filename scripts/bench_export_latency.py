#!/usr/bin/env python
"""ONNX Runtime fp32 latency of the single graph vs PyTorch eager `super_resolve`, same tile, one run.

    .venv/bin/python scripts/bench_export_latency.py --preset tiny
    .venv/bin/python scripts/bench_export_latency.py --checkpoint alignvar-tiny

Exports the single graph at batch 1 (validated as usual) into a temporary directory unless --artifact
names an existing export of the same model, then alternates ORT and PyTorch runs on one held-out tile
(one call of the artifact's batch: graphs take whole batches) after warm-up and reports the median
and interquartile range of --repeats runs of each. Both use their default thread pools unless
--threads sets both; the thread counts are printed with the result.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="random weights (head x50), e.g. tiny")
    src.add_argument("--checkpoint", default=None, help="checkpoint dir or bundled name")
    ap.add_argument("--artifact", help="an existing single-graph export of the same model")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for both (default: each library's own default)")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.export.onnx_export import export_onnx, run_single
    from alignvar_edge.export.random_model import random_model
    from alignvar_edge.onnx_session import open_session
    from alignvar_edge.manifest import read_manifest
    from alignvar_edge.model.alignvar import load_pretrained

    if args.checkpoint:
        model, name = load_pretrained(args.checkpoint), args.checkpoint
    else:
        preset = args.preset or "tiny"
        model, name = random_model(preset), f"{preset} (random weights)"
    tmp = None
    art = Path(args.artifact) if args.artifact else None
    if art is None:
        tmp = tempfile.TemporaryDirectory()
        # batch 1: the figures are one tile's latency (exports of small tiles default to 16 per call)
        art = export_onnx(model, Path(tmp.name) / "single", graph="single", batch=1, n_tiles=1)
    if args.threads:
        torch.set_num_threads(args.threads)
    sess = open_session(art / "model.onnx", threads=args.threads)
    batch = read_manifest(art).static_batch          # an --artifact's graph takes whole calls of its batch
    lr = lr_tiles(model.config, batch, seed=0)
    lr_t = torch.from_numpy(lr)

    def ort_once() -> float:
        t0 = time.perf_counter()
        run_single(sess, lr)
        return time.perf_counter() - t0

    def torch_once() -> float:
        t0 = time.perf_counter()
        model.super_resolve(lr_t)
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        ort_once(), torch_once()
    t_ort, t_pt = [], []
    for _ in range(args.repeats):           # interleaved so background load hits both alike
        t_ort.append(ort_once())
        t_pt.append(torch_once())
    sr_ort, _ = run_single(sess, lr)
    sr_pt = model.super_resolve(lr_t).numpy()

    def summary(ts: list[float]) -> dict:
        q = statistics.quantiles(ts, n=4)
        return {"median_ms": round(1000 * statistics.median(ts), 2), "q1_ms": round(1000 * q[0], 2),
                "q3_ms": round(1000 * q[2], 2)}

    res = {
        "model": name, "tile_lr": list(lr.shape[1:]), "batch": batch, "repeats": args.repeats,
        "onnxruntime_fp32": summary(t_ort), "pytorch_eager_super_resolve": summary(t_pt),
        "speedup_ort_vs_torch": round(statistics.median(t_pt) / statistics.median(t_ort), 2),
        "max_abs_diff_sr": float(np.abs(sr_ort - sr_pt).max()),
        "torch_threads": torch.get_num_threads(), "ort_threads": args.threads or "default",
        "ort_version": ort.__version__,
        "torch_version": torch.__version__,
    }
    print(json.dumps(res, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
