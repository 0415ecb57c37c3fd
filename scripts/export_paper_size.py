#!/usr/bin/env python
"""Export paper-size presets with random weights; record export time, peak memory and checks.

    .venv/bin/python scripts/export_paper_size.py --preset d16 --mode full
    .venv/bin/python scripts/export_paper_size.py --preset d24-512 --mode check

Each preset runs in a child process so that its peak RSS (getrusage ru_maxrss) is its own.
  full   export_onnx(): trace, onnx.checker, ONNX Runtime vs PyTorch on --tiles held-out tiles
         (100% tokens, >= 60 dB), manifest; the artifact is kept under --out.
  check  trace + save (external data above 1.8 GB) + onnx.checker (path form) + the forbidden-
         construct scan + one ONNX Runtime run, without the PyTorch reference (for models whose
         PyTorch + ORT validation does not fit this machine); no manifest is written.
  ort    only the ONNX Runtime load and one run of an existing check-mode export.
Results are printed as JSON lines and appended to --results.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2     # KiB on Linux


def note(res: dict, **kv: object) -> None:
    """Record figures and echo them to stderr at once, so a run killed later still leaves them."""
    res.update(kv)
    print(f"[{res['preset']}] {json.dumps(kv)}", file=sys.stderr, flush=True)


def run_one(preset: str, mode: str, out: Path, tiles: int, ort_run: bool) -> dict:
    from alignvar_edge.export.random_model import random_model

    res: dict = {"preset": preset, "mode": mode}
    if mode == "ort":
        from alignvar_edge.model.config import AlignVARConfig
        ort_once(res, out, AlignVARConfig.from_preset(preset))
        res["peak_rss_gb"] = round(peak_rss_gb(), 2)
        return res
    t0 = time.perf_counter()
    model = random_model(preset, seed=0)
    c = model.config
    res.update(hr_size=c.hr_size, scales=len(c.patch_nums), depth=c.depth, width=c.width,
               params_inference=model.parameter_report()["inference"],
               build_s=round(time.perf_counter() - t0, 1), rss_after_build_gb=round(peak_rss_gb(), 2))
    note(res, build_s=res["build_s"])
    if mode == "full":
        from alignvar_edge.manifest import read_manifest
        from alignvar_edge.export.onnx_export import export_onnx

        t0 = time.perf_counter()
        export_onnx(model, out, graph="single", n_tiles=tiles, force=True, model_name=f"{preset}-random",
                    source=f"preset {preset}, random weights, seed 0",
                    log=lambda m: print(f"[{preset}] {m}", file=sys.stderr, flush=True))
        res["total_s"] = round(time.perf_counter() - t0, 1)
        m = read_manifest(out)
        res.update(timings_s=m.extra["timings_s"], external_data=m.extra["external_data"],
                   nodes=m.extra["nodes"]["model"], parity=m.parity)
    else:
        from alignvar_edge.export.graphs import single_spec
        from alignvar_edge.export.onnx_export import EXTERNAL_DATA_BYTES, _param_bytes, check_graph, export_graph

        out.mkdir(parents=True, exist_ok=True)
        ext = _param_bytes(model) > EXTERNAL_DATA_BYTES
        spec = single_spec(model, 1)[0]
        t0 = time.perf_counter()
        export_graph(spec, out / "model.onnx", 18, ext)
        note(res, export_s=round(time.perf_counter() - t0, 1), rss_after_export_gb=round(peak_rss_gb(), 2),
             external_data=ext)
        del spec                                        # drop the example tensors and module refs
        t0 = time.perf_counter()
        check_graph(out / "model.onnx")
        note(res, check_s=round(time.perf_counter() - t0, 1), rss_after_check_gb=round(peak_rss_gb(), 2))
        if ort_run:
            del model                                   # free the torch weights before ORT loads its copy
            ort_once(res, out, c)
    res["files_mb"] = {p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(out.iterdir()) if p.is_file()}
    res["peak_rss_gb"] = round(peak_rss_gb(), 2)
    return res


def ort_once(res: dict, out: Path, config: object) -> None:
    """Load out/model.onnx in ONNX Runtime and run one held-out tile (no PyTorch reference)."""
    import numpy as np

    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.onnx_session import open_session

    t0 = time.perf_counter()
    sess = open_session(out / "model.onnx")
    note(res, ort_load_s=round(time.perf_counter() - t0, 1), rss_after_ort_load_gb=round(peak_rss_gb(), 2))
    lr = lr_tiles(config, 1)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    noise = config.refiner_noise(1)  # type: ignore[attr-defined]   # VARSR's refiner input, if any
    outs = sess.run(None, {"lr": lr, **({} if noise is None else {"noise": noise})})
    note(res, ort_run_s=round(time.perf_counter() - t0, 1), rss_after_ort_run_gb=round(peak_rss_gb(), 2))
    res["ort_sr_finite"] = bool(np.isfinite(outs[0]).all())
    res["ort_sr_range"] = [float(outs[0].min()), float(outs[0].max())]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help="preset(s) to export (default: d16 and d24-512)")
    ap.add_argument("--mode", choices=("full", "check", "ort"),
                    help="default: full for d16, check for d24-512; ort: only load and run an existing "
                         "OUT_ROOT/PRESET/model.onnx once")
    ap.add_argument("--out-root", default=str(ROOT / "runs" / "export-paper"))
    ap.add_argument("--tiles", type=int, default=1)
    ap.add_argument("--no-ort-run", action="store_true", help="check mode: skip the one ORT run")
    ap.add_argument("--results", default=str(ROOT / "runs" / "export-paper" / "results.jsonl"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    presets = args.preset or ["d16", "d24-512"]
    if args.child:
        mode = args.mode or ("check" if presets[0].startswith("d24") else "full")
        res = run_one(presets[0], mode, Path(args.out_root) / presets[0], args.tiles, not args.no_ort_run)
        print(json.dumps(res), flush=True)
        return 0
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    rc = 0
    for p in presets:
        cmd = [sys.executable, __file__, "--child", "--preset", p, "--out-root", args.out_root,
               "--tiles", str(args.tiles)] + (["--mode", args.mode] if args.mode else []) \
            + (["--no-ort-run"] if args.no_ort_run else [])
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        try:
            res = json.loads(line)
        except json.JSONDecodeError:
            res = {"preset": p, "error": f"child exited {r.returncode} (killed for memory if -9)",
                   "stdout_tail": r.stdout[-500:]}
            rc = 1
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(res), flush=True)
        with open(args.results, "a") as fh:
            fh.write(json.dumps(res) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
