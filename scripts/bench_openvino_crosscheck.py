#!/usr/bin/env python
"""Cross-check our OpenVINO latency against OpenVINO's own `benchmark_app` on the same model file.

    .venv/bin/python scripts/bench_openvino_crosscheck.py ENGINE_OR_EXPORT_DIR [--threads 1] [--runs 20]

ENGINE_OR_EXPORT_DIR is an OpenVINO engine dir (model.xml, from `alignvar-edge build --target
openvino`) or an ONNX export (OpenVINO reads model.onnx directly). Both sides use the same settings:
CPU, one stream (our LATENCY hint; benchmark_app takes -nthreads only with -hint none, so it gets
-nstreams 1), synchronous inference, f32 inference precision, the same thread count.
The runs alternate (ours, benchmark_app, ours, ...) `--rounds` times so background load on a shared
machine hits both; the medians of the per-round medians are compared. The issue's criterion is
agreement within 1.5x. benchmark_app feeds random inputs: the rollout's cost does not depend on
the pixel values (static shapes, greedy argmax), so the two figures measure the same work.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def model_file(path: Path) -> Path:
    from alignvar_edge.manifest import read_manifest
    m = read_manifest(path)
    if m.backend == "openvino" and m.engine_file:
        return path / m.engine_file
    for g in m.graphs.values():
        return path / g["file"]
    raise SystemExit(f"{path}: no model file in the manifest")


def ours(path: Path, threads: int, runs: int) -> float:
    """p50 ms per call of the OpenVINO engine, the way `alignvar-edge bench` times it."""
    from alignvar_edge import runtimes
    from alignvar_edge.graph_names import INPUT
    with runtimes.load(path, backend="openvino", threads=threads) as eng:
        t = eng.tile_size
        feeds = {INPUT: __import__("numpy").full((eng.batch, 3, t, t), 0.5, "float32")}
        for _ in range(2):
            eng.infer(feeds)
        ms = []
        for _ in range(runs):
            eng.infer(feeds)
            ms.append(float(eng.last_latency_ms or 0.0))
    return statistics.median(ms)


def benchmark_app(model: Path, threads: int, runs: int) -> tuple[float, str]:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    # benchmark_app allows -nthreads only with -hint none; the LATENCY hint means one stream
    cmd = [exe, "-m", str(model), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-api", "sync",
           "-niter", str(runs), "-nthreads", str(threads), "-infer_precision", "f32"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"benchmark_app failed ({res.returncode}): {(res.stdout + res.stderr).strip()[-800:]}")
    block = res.stdout.split("Latency:", 1)[-1]
    med = re.search(r"Median:\s*([\d.]+)\s*ms", block)
    if not med:
        raise SystemExit("could not find the latency median in benchmark_app's output")
    return float(med.group(1)), " ".join(cmd[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20, help="timed calls per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="append the result as one JSON line")
    args = ap.parse_args()
    model = model_file(args.path)
    mine, theirs, cmd = [], [], ""
    for _ in range(args.rounds):
        mine.append(ours(args.path, args.threads, args.runs))
        t, cmd = benchmark_app(model, args.threads, args.runs)
        theirs.append(t)
    a, b = statistics.median(mine), statistics.median(theirs)
    ratio = max(a, b) / min(a, b)
    res: dict[str, Any] = {"model": str(model), "threads": args.threads, "runs": args.runs, "rounds": args.rounds,
                           "ours_p50_ms": [round(x, 3) for x in mine], "benchmark_app_median_ms": theirs,
                           "ours_ms": round(a, 3), "benchmark_app_ms": round(b, 3), "ratio": round(ratio, 3),
                           "within_1_5x": ratio <= 1.5, "benchmark_app_command": "benchmark_app " + cmd}
    print(json.dumps(res, indent=2))
    if args.out:
        with args.out.open("a") as fh:
            fh.write(json.dumps(res) + "\n")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
