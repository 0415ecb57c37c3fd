"""Where a split OpenVINO engine's time goes, against this CPU's own limits, at one thread.

    PYTHONPATH=. python scripts/openvino_parts_roofline.py ENGINE_DIR [--rounds 15] [--out parts.json]

ENGINE_DIR is a split engine (`build --target openvino --precision bf16|int8`: a token part that
computes in f32 and an image suffix). Each part is compiled as the engine compiles it (the same
properties, one thread) and timed on its own, fed held-out photo tiles and, for the image suffix,
what the token part handed on; then OpenVINO's per-op counters (PERF_COUNT) of one more call give
the time per op type and kernel. With the FLOPs per tile of each part (PyTorch's FLOP counter on
the engine's model: conditioning and scale steps for the token part, the VQ decoder for the image)
and the fp32 GEMM peak `bench` measures, it prints the part's rate and the bound the token part
puts on any engine that keeps it in f32: its FLOPs at the measured peak.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import openvino as ov

from alignvar_edge.bench.host import fingerprint, short_label
from alignvar_edge.bench.peak import measure_peak
from alignvar_edge.manifest import listed_file, load_verified
from alignvar_edge.model.info import flop_groups, stage_flops
from alignvar_edge.quantize.calibration.tiles import lr_tiles
from alignvar_edge.runtimes.base import config_from_manifest
from alignvar_edge.runtimes.openvino.backend import compile_config, image_part_precision


def _time(call, rounds: int) -> float:
    call()                                                  # warm-up: first-call allocations
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _ops(request: ov.InferRequest) -> list[dict]:
    by: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for p in request.profiling_info:
        entry = by[(p.node_type, p.exec_type)]
        entry[0] += p.real_time.total_seconds() * 1000
        entry[1] += 1
    rows = [{"op": k[0], "kernel": k[1], "ms": round(v[0], 3), "nodes": int(v[1])} for k, v in by.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out")
    args = ap.parse_args()
    root = Path(args.engine)
    m = load_verified(root)
    files = m.extra.get("files") or {}
    if m.backend != "openvino" or "image" not in files:
        raise SystemExit(f"{root} is not a split OpenVINO engine (build --target openvino --precision bf16|int8)")
    config = config_from_manifest(m)
    batch = m.static_batch
    core = ov.Core()
    token = core.compile_model(core.read_model(str(listed_file(root, m, files["engine"]))), "CPU",
                               {**compile_config("CPU", True, 1, None, inference="f32"), "PERF_COUNT": True})
    image_precision = image_part_precision(m, "CPU")
    int8 = bool((m.extra.get("split") or {}).get("image_int8"))
    image_name = f"image suffix ({'int8 convolutions, ' if int8 else ''}{image_precision})"
    image = core.compile_model(core.read_model(str(listed_file(root, m, files["image"]))), "CPU",
                               {**compile_config("CPU", True, 1, None, inference=image_precision),
                                "PERF_COUNT": True})
    lr = lr_tiles(config, batch, seed=1)                    # held-out photographs, as bench uses
    t_req, i_req = token.create_infer_request(), image.create_infer_request()
    handed = t_req.infer({0: lr})
    by_name = {o.get_any_name(): handed[o] for o in token.outputs}
    feed = {i.get_any_name(): by_name[i.get_any_name()] for i in image.inputs}
    parts = {"token part (f32)": (t_req, lambda: t_req.infer({0: lr})),
             image_name: (i_req, lambda: i_req.infer(feed))}
    groups = flop_groups(stage_flops(config))
    flops = {"token part (f32)": groups["conditioning"] + groups["scales"], image_name: groups["decoder"]}
    peak = measure_peak(threads=1)["best_gflops"]
    report = {"engine": str(root), "batch": batch, "peak_fp32_gflops": peak, "host": short_label(fingerprint()),
              "parts": {}}
    for name, (request, call) in parts.items():
        ms_tile = _time(call, args.rounds) / batch
        gflop = flops[name] / 1e9
        report["parts"][name] = {"ms_per_tile": round(ms_tile, 3), "gflop_per_tile": round(gflop, 4),
                                 "gflops": round(gflop / ms_tile * 1000, 1),
                                 "ops_per_call": _ops(request)[:12]}
    token_part = report["parts"]["token part (f32)"]
    token_part["bound_ms_per_tile_at_peak"] = round(token_part["gflop_per_tile"] / peak * 1000, 3)
    print(f"{report['host']}; fp32 GEMM peak {peak:.1f} GFLOP/s (one thread); batch {batch}")
    for name, p in report["parts"].items():
        print(f"{name}: {p['ms_per_tile']:.2f} ms/tile, {p['gflop_per_tile']:.3f} GFLOP/tile, {p['gflops']:.1f} "
              "GFLOP/s")
        for op in p["ops_per_call"][:6]:
            print(f"    {op['ms'] / batch:7.3f} ms/tile  {op['op']} [{op['kernel']}] x{op['nodes']}")
    print(f"token part at the fp32 peak: >= {token_part['bound_ms_per_tile_at_peak']:.2f} ms/tile")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
