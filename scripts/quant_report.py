#!/usr/bin/env python
"""ONNX Runtime INT8 / FP16 vs fp32: tokens, PSNR-Y loss, size and latency, measured in one run.

    .venv/bin/python scripts/quant_report.py --checkpoint alignvar-tiny --out runs/quant_report/tiny
    .venv/bin/python scripts/quant_report.py --preset d16 --out runs/quant_report/d16 --speed-only \
        --precisions int8 --tiles 4 --val-tiles 1 --repeats 5

Exports the fp32 single graph (reused if --out already holds it), quantizes it with
`alignvar-edge quantize` semantics (int8 for onnxruntime with the fidelity search; fp16), then on
tiles of the *held-out* photographs (never used for calibration or the search) measures token
agreement with the fp32 engine and the PSNR-Y loss against HR. Latency: after warm-up, the
engines take turns on one call of held-out tiles at the export's batch (round-robin, so
background load hits all of them alike), at --threads (1 by default: the fair setting on a
shared host); the median and interquartile range per tile of --repeats calls are reported, with
the host's fingerprint (CPU, ISA, load) as `bench` records it. `--speed-only` (random weights:
fidelity is meaningless) skips the search and the held-out fidelity. Results go to
OUT/report.json and are printed as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _engine(path: Path, threads: int) -> Any:
    from alignvar_edge.onnx_session import open_session
    return open_session(path, threads=threads)


def _bytes(root: Path) -> int:
    """Graph files only (model.onnx and any external data), as recorded in the manifest."""
    return sum(p.stat().st_size for p in root.glob("model.onnx*"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint dir or bundled name (e.g. alignvar-tiny)")
    src.add_argument("--preset", help="random weights (logits head x50), e.g. d16")
    ap.add_argument("--out", required=True, help="work directory (exports, quantized artifacts, report.json)")
    ap.add_argument("--artifact", help="an existing fp32 single-graph export of the same model (not copied)")
    ap.add_argument("--eval-tiles", type=int, default=48, help="held-out tiles for fidelity")
    ap.add_argument("--tiles", type=int, default=32, help="calibration tiles")
    ap.add_argument("--val-tiles", type=int, default=16, help="validation tiles for the search")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for the timing")
    ap.add_argument("--speed-only", action="store_true", help="random weights: no search, no fidelity")
    ap.add_argument("--precisions", default="int8,fp16",
                    help="comma list of int8, fp16, int8-fp32copies (int8 with --float-copy-weights fp32)")
    args = ap.parse_args()

    import numpy as np

    from alignvar_edge.bench.host import OwnLoad, fingerprint, run_threads
    host = fingerprint(with_backends=False)
    threads = run_threads(args.threads, host)

    from alignvar_edge.manifest import load_verified
    from alignvar_edge.quantize.calibration.sets import TileSplit, whole_calls
    from alignvar_edge.quantize.calibration.tiles import tile_pairs
    from alignvar_edge.export.onnx_export import export_onnx
    from alignvar_edge.quantize.artifact import QuantizeOptions, quantize_artifact
    from alignvar_edge.quantize.sensitivity import Evaluator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    fp32 = Path(args.artifact) if args.artifact else out / "fp32"
    if not (fp32 / "manifest.json").is_file():
        if args.checkpoint:
            from alignvar_edge.model.alignvar import AlignVAR
            model = AlignVAR.from_pretrained(args.checkpoint)
        else:
            from alignvar_edge.export.random_model import random_model
            model = random_model(args.preset)
        t0 = time.perf_counter()
        export_onnx(model, fp32, graph="single", force=True, log=say,
                    model_name=args.checkpoint or f"{args.preset} (random weights)")
        say(f"exported in {time.perf_counter() - t0:.0f} s")
        del model
    m = load_verified(fp32)
    cfg = dict(m.config or {})
    batch = m.static_batch                 # every engine here takes whole calls of this many tiles

    arts: dict[str, Path] = {"fp32": fp32}
    quant_s: dict[str, float] = {}
    for prec in [p for p in args.precisions.split(",") if p]:
        dst = out / prec
        if not (dst / "manifest.json").is_file():
            t0 = time.perf_counter()
            base, _, variant = prec.partition("-")      # "int8-fp32copies": fp32 float-copy weights
            opts = QuantizeOptions(precision=base, tiles=args.tiles, val_tiles=args.val_tiles,
                                   search=not args.speed_only,
                                   float_copy_weights="fp32" if variant == "fp32copies" else "int8")
            quantize_artifact(fp32, dst, opts, force=True, log=say)
            quant_s[prec] = round(time.perf_counter() - t0, 1)
        arts[prec] = dst

    from alignvar_edge.model.config import AlignVARConfig
    config = AlignVARConfig.from_dict(cfg)
    rows: dict[str, dict[str, Any]] = {k: {"bytes": _bytes(v)} for k, v in arts.items()}
    for k, v in arts.items():
        mq = load_verified(v)
        rows[k]["manifest_validation"] = (mq.parity or {}).get("validation")
        q = mq.quantization or {}
        rows[k]["float_by_search"] = [s["group"] for s in q.get("float_by_search") or []]
        rows[k]["int8_nodes"] = q.get("int8_nodes")
        rows[k]["recipe"] = q.get("recipe")

    if not args.speed_only:
        lr, hr = tile_pairs(config, whole_calls(args.eval_tiles, batch), seed=1, split="heldout")
        ev = Evaluator(str(fp32 / "model.onnx"), TileSplit(lr, hr, tuple(f"t{i}" for i in range(len(lr)))),
                       batch=batch, border=config.scale)
        for k, v in arts.items():
            if k != "fp32":
                f = ev.evaluate(str(v / "model.onnx"))
                rows[k]["heldout"] = f.to_dict()
        rows["fp32"]["heldout"] = {"psnr_y_hr": ev.psnr_hr, "token_agreement": 1.0}

    # latency: round-robin over engines on one call of held-out tiles, reported per tile
    lr1, _ = tile_pairs(config, batch, seed=7, split="heldout")
    feed = {"lr": np.ascontiguousarray(lr1)}
    own_load = OwnLoad()
    sessions = {k: _engine(v / "model.onnx", threads) for k, v in arts.items()}
    for s in sessions.values():
        for _ in range(args.warmup):
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.repeats):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t0) * 1000 / batch)
    for k, ts in times.items():
        q1, med, q3 = statistics.quantiles(ts, n=4) if len(ts) > 1 else (ts[0], ts[0], ts[0])
        rows[k]["latency_ms"] = {"median": round(med, 2), "q1": round(q1, 2), "q3": round(q3, 2), "runs": len(ts)}

    own_load.record(host)
    import onnxruntime as ort
    report = {"model": args.checkpoint or f"{args.preset} (random weights)", "config": cfg["name"],
              "tile": {"lr": config.lr_size, "hr": config.hr_size}, "rows": rows, "quantize_s": quant_s,
              "eval_tiles": 0 if args.speed_only else len(ev.tiles), "batch": batch,
              "onnxruntime": ort.__version__,
              "host": host, "repeats": args.repeats, "threads": threads}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    return 0


def table(r: dict[str, Any]) -> str:
    from alignvar_edge.bench.host import load_words, machine_words, shared_load
    base = r["rows"]["fp32"]
    load = shared_load(r["host"])
    lines = [f"{r['model']}: {r['tile']['lr']}->{r['tile']['hr']} px tile, {r['eval_tiles']} held-out tiles, "
             f"onnxruntime {r['onnxruntime']}, ms per tile at batch {r['batch']}: median of {r['repeats']} calls "
             f"(IQR) at {r['threads']} thread(s)",
             f"host: {machine_words(r['host'])}" + (f"; shared: {load_words(load)}" if load else ""),
             "", "| engine | tokens vs fp32 | PSNR-Y vs HR (dB) | loss (dB) | size (MB) | size | latency (ms) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for k, row in r["rows"].items():
        h = row.get("heldout") or {}
        tok = f"{h['token_agreement']:.2%}" if "token_agreement" in h else "-"
        psnr = f"{h['psnr_y_hr']:.2f}" if "psnr_y_hr" in h else "-"
        loss = f"{h['psnr_drop']:+.3f}" if "psnr_drop" in h else ("0" if k == "fp32" and h else "-")
        lat = row["latency_ms"]
        lines.append(f"| {k} | {tok} | {psnr} | {loss} | {row['bytes'] / 1e6:.1f} | "
                     f"{row['bytes'] / base['bytes']:.0%} | {lat['median']:.1f} ({lat['q1']:.1f}-{lat['q3']:.1f}) | "
                     f"{base['latency_ms']['median'] / lat['median']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
