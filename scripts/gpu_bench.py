#!/usr/bin/env python
"""PyTorch CUDA latency of AlignVAR at paper size (d24 at 512 px) vs the paper's 0.43 s per image.

    python scripts/gpu_bench.py --out runs/bench/gpu.json --md runs/bench/gpu.md      # on a GPU machine
    python scripts/gpu_bench.py --preset micro --device cpu --dtypes fp32 --out /tmp/g.json   # smoke test

What it measures, per dtype (fp32 reference, then fp16 / bf16): the KV-cached rollout
(`AlignVAR.forward`: conditioning, prefix KV, one step per scale, VQ decoder) on one 512x512 tile
(LR 128 px) with random weights (speed does not depend on the values; the logits head is scaled
as in `export --preset` so argmax margins look trained), timed with CUDA events after warm-up:
  - eager, the reference a PyTorch user runs;
  - the same rollout captured as one CUDA graph (static shapes, argmax in graph): kernel launch
    overhead dominates the small early scales, which graph replay removes. Its row's tokens are
    those of a replay, against fp32 eager (so the 99% gate applies to the graph itself), and its
    note gives their agreement with eager under the same setting;
  - token agreement of fp16/bf16 with the fp32 run on the same tile (a speed figure at a fidelity
    that would not ship is not a result).
  - with `--fast-paths`, the half-precision graph again under each faster setting, one added to the
    next: torch's fused attention (`sdpa`: the exported fused form, F.scaled_dot_product_attention),
    then channels-last convolutions with cuDNN's autotuner (`cl`), then `--prune` (FastVAR-style
    token pruning, which changes tokens by design: its agreement is reported, not gated);
  - a model with VARSR's refiner (`--preset varsr-d24`) runs it too, on fixed noise.
With `--onnx DIR` (a single-graph export of the same preset; exporting d24-512 takes long, do it
beforehand), ONNX Runtime's CUDA execution provider is timed too, if this onnxruntime has it.

The output is a schema-valid benchmark report (kind "bench", device label from the GPU), so
`alignvar-edge bench merge` puts it beside the CPU reports; "pytorch-eager" is CUDA fp32 eager.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PAPER_S = 0.43          # AlignVAR paper: seconds per 512x512 image


def _timer(device: Any) -> Any:
    import torch
    if device.type == "cuda":
        def run(fn: Any) -> float:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            return float(a.elapsed_time(b))
        return run

    def run_cpu(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return run_cpu


def _times(fn: Any, timer: Any, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        timer(fn)
    return [timer(fn) for _ in range(runs)]


def _graph(model: Any, lr: Any, noise: Any = None) -> tuple[Any, Any]:
    """The rollout as one CUDA graph (the torch engine's capture): (replay fn, static outputs
    holding one replay's results)."""
    from alignvar_edge.runtimes.cuda_graph import capture
    c = capture(model, lr, noise)
    return c.replay, c.outputs


def _fast_paths(m: Any, lr: Any, noise: Any, name: str, ref_tokens: Any, timer: Any,
                args: argparse.Namespace, mp: float, flops: int, peak: float) -> list[dict[str, Any]]:
    """The half-precision rollout as one CUDA graph under each faster setting, one added to the next."""
    import contextlib

    import torch

    from alignvar_edge.model.pruning import parse_prune, pruning
    from alignvar_edge.model.transformer import attention_form
    steps: list[tuple[str, Any]] = [("sdpa", lambda: attention_form(m, "fused")), ("cl", _channels_last(m))]
    ratios = parse_prune(args.prune)
    if ratios:
        steps.append(("prune" + "-".join(f"{r:g}" for r in ratios), lambda: pruning(m, ratios)))
    entries: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        parts: list[str] = []
        for part, enter in steps:
            stack.enter_context(enter())
            parts.append(part)
            label = f"torch-cudagraph-{name}-{'+'.join(parts)}"
            try:
                with torch.inference_mode():
                    eager = [t.cpu() for t in m(lr, noise)[1:]]
                replay, static = _graph(m, lr, noise)
                graph_tokens = [t.cpu() for t in static[1:]]
                same = _agreement(eager, graph_tokens)
                ms = _times(replay, timer, args.runs, args.warmup)
            except Exception as err:  # noqa: BLE001 - report why, keep the other rows
                entries.append(_skipped(label, name, f"{type(err).__name__}: {err}"))
                print(f"{label:<22} failed: {type(err).__name__}: {err}", flush=True)
                continue
            agree = None if ref_tokens is None else _agreement(ref_tokens, graph_tokens)
            note = (f"one CUDA graph, batch {args.batch}, {' + '.join(parts)}; tokens equal to eager "
                    f"under the same setting: {same:.4f}" + ("; pruning changes tokens by design" if
                                                             part.startswith("prune") else ""))
            entries.append(_entry(label, name, ms, mp, flops, peak, agree, note, str(lr.device), args.batch))
            print(f"{label:<22} p50 {statistics.median(ms) / args.batch:9.2f} ms/tile  tokens vs fp32 "
                  f"{agree if agree is not None else float('nan'):.4f}", flush=True)
            del replay, static
            torch.cuda.empty_cache()
            if part == "cl" and args.profile:
                _profile(m, lr, noise, args.profile, label)
    return entries


def _profile(m: Any, lr: Any, noise: Any, path: str, label: str) -> None:
    """CUDA time per op and per kernel of one eager rollout (after a warm-up), as text."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    try:
        with torch.inference_mode():
            m(lr, noise)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                with record_function("rollout"):
                    m(lr, noise)
                torch.cuda.synchronize()
        avg = prof.key_averages()
        text = (f"{label}, eager, one rollout\n\n"
                + avg.table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=60))
    except Exception as err:  # noqa: BLE001 - a profile is a bonus; never lose the timings for it
        text = f"profile failed: {type(err).__name__}: {err}\n"
    Path(path).write_text(text)
    print(f"wrote {path}", flush=True)


def _channels_last(m: Any) -> Any:
    """A context: convolution weights channels-last and cuDNN's autotuner on; both restored after."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx() -> Any:
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        m.to(memory_format=torch.channels_last)
        try:
            yield
        finally:
            m.to(memory_format=torch.contiguous_format)
            torch.backends.cudnn.benchmark = before
    return ctx


def _peak_gflops(device: Any, dtype: Any, n: int = 8192) -> float:
    import torch
    if device.type != "cuda":
        n = 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timer = _timer(device)
    best = min(_times(lambda: a @ b, timer, 5, 2))
    return 2 * n ** 3 / (best / 1e3) / 1e9


def _entry(label: str, dtype: str, ms: list[float], mp: float, flops: int, peak: float,
           tokens: float | None, note: str | None, device: str, batch: int = 1) -> dict[str, Any]:
    from alignvar_edge.bench.stats import latency_summary
    return {"label": label, "backend": "torch" if "ort" not in label else "onnxruntime",
            "kind": "baseline" if label == "pytorch-eager" else "engine", "status": "ok", "reason": None,
            "path": None, "precision": dtype, "device": device, "batch": batch,
            "latency": latency_summary(ms, batch, mp, flops, peak),
            "fidelity": {"tiles": batch, "vs_reference": {"token_agreement": tokens}, "vs_hr": {}},
            "note": note, "artifact_bytes": None}


def _skipped(label: str, dtype: str, why: str) -> dict[str, Any]:
    return {"label": label, "backend": "torch", "kind": "engine", "status": "unavailable",
            "reason": why, "precision": dtype, "path": None, "device": None, "artifact_bytes": None}


def _agreement(ref: list[Any], test: list[Any]) -> float:
    eq = sum(int((a == b).sum()) for a, b in zip(ref, test))
    return eq / sum(a.numel() for a in ref)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="d24-512")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", default="fp16,bf16", help="besides the fp32 reference")
    ap.add_argument("--batch", type=int, default=1,
                    help="tiles per rollout call (a large image is many tiles); latency is per tile")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cuda-graphs", choices=("auto", "off"), default="auto")
    ap.add_argument("--fast-paths", action="store_true",
                    help="also time the half-precision graph with fused attention, channels-last "
                         "convolutions and (with --prune) token pruning")
    ap.add_argument("--prune", default="", help="pruning ratios for --fast-paths, finest scale last (e.g. 0.5,0.75)")
    ap.add_argument("--profile", help="write where the half-precision rollout's CUDA time goes (torch.profiler, "
                                      "eager, with --fast-paths' sdpa + cl) to this text file")
    ap.add_argument("--onnx", help="single-graph export of the same preset for ONNX Runtime CUDA")
    ap.add_argument("--out", required=True, help="report JSON (bench schema; merges with CPU reports)")
    ap.add_argument("--md", help="also write Markdown")
    args = ap.parse_args()

    import torch

    from alignvar_edge.bench.host import fingerprint
    from alignvar_edge.model.info import flop_groups, stage_flops
    from alignvar_edge.bench.schema import meets_fidelity, model_block, new_report, status_reasons, write_json
    from alignvar_edge.quantize.calibration.tiles import lr_tiles
    from alignvar_edge.export.random_model import load_model
    from alignvar_edge.model.checkpoint import weights_sha256
    from alignvar_edge.recipes import DEFAULT_MIN_TOKENS

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible to PyTorch; run on a GPU machine "
              "(or --device cpu for a smoke test)", file=sys.stderr)
        return 2
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    wanted = ["fp32"] + [d for d in args.dtypes.split(",") if d and d != "fp32"]
    model, model_name, source = load_model(preset=args.preset, seed=0)
    c = model.config
    flops_stage = stage_flops(c)
    flops_groups = flop_groups(flops_stage)
    flops = flops_groups["total"]
    mp = c.hr_size ** 2 / 1e6
    lr_np = lr_tiles(c, args.batch, seed=0)
    gen = torch.Generator().manual_seed(0)
    noise_cpu = (torch.randn(c.noise_shape(args.batch), generator=gen)
                 if model.diffloss is not None else None)
    timer = _timer(device)
    entries: list[dict[str, Any]] = []
    ref_tokens: list[Any] | None = None
    peaks: dict[str, float] = {}
    for name in wanted:
        dt_ = dtypes[name]
        if device.type == "cpu" and name == "fp16":
            entries.append(_skipped("torch-eager-fp16", name, "fp16 matmuls on CPU are not a deployment path"))
            continue
        # a fresh copy of the fp32 weights per dtype (fp16 -> bf16 in place would round twice)
        m = copy.deepcopy(model).to(device=device, dtype=dt_).eval()
        lr = torch.from_numpy(lr_np).to(device=device, dtype=dt_)
        noise = None if noise_cpu is None else noise_cpu.to(device=device, dtype=dt_)
        peaks[name] = round(_peak_gflops(device, dt_), 1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            out = m(lr, noise)
            tokens = [t.cpu() for t in out[1:]]
            ms = _times(lambda m=m: m(lr, noise), timer, args.runs, args.warmup)
        agree = None if ref_tokens is None else _agreement(ref_tokens, tokens)
        if name == "fp32":
            ref_tokens = tokens
        label = "pytorch-eager" if name == "fp32" else f"torch-eager-{name}"
        e = _entry(label, name, ms, mp, flops, peaks[name], 1.0 if name == "fp32" else agree,
                   f"KV-cached rollout, eager, batch {args.batch}", str(device), args.batch)
        if device.type == "cuda":
            e["memory"] = {"cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)}
        entries.append(e)
        shown = agree if agree is not None else 1.0
        print(f"{label:<22} p50 {statistics.median(ms) / args.batch:9.2f} ms/tile  tokens vs fp32 {shown:.4f}",
              flush=True)
        if device.type == "cuda" and args.cuda_graphs == "auto":
            try:
                replay, static = _graph(m, lr, noise)
                g_tokens = [t.cpu() for t in static[1:]]
                same = _agreement(tokens, g_tokens)
                gms = _times(replay, timer, args.runs, args.warmup)
                g_agree = _agreement(ref_tokens if ref_tokens is not None else tokens, g_tokens)
                ge = _entry(f"torch-cudagraph-{name}", name, gms, mp, flops, peaks[name],
                            g_agree, f"one CUDA graph, batch {args.batch}; tokens "
                            f"equal to eager: {same:.4f}", str(device), args.batch)
                entries.append(ge)
                print(f"{'torch-cudagraph-' + name:<22} p50 {statistics.median(gms) / args.batch:9.2f} ms/tile  "
                      f"tokens vs fp32 {g_agree:.4f}", flush=True)
            except Exception as err:  # noqa: BLE001 - report why capture failed, keep the eager number
                entries.append(_skipped(f"torch-cudagraph-{name}", name,
                                        f"CUDA graph capture failed: {type(err).__name__}: {err}"))
            if args.fast_paths and name != "fp32":
                fast = _fast_paths(m, lr, noise, name, ref_tokens, timer, args, mp, flops, peaks[name])
                entries.extend(fast)
        del m
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.onnx:
        entries.append(_ort_entry(args.onnx, lr_np, ref_tokens, timer, args, mp, flops, peaks.get("fp32", 0.0)))

    host = fingerprint()
    gpu = (host.get("gpus") or [{}])[0].get("name")
    if gpu is None and device.type == "cuda":
        gpu = torch.cuda.get_device_name(0)
    eager_p50 = entries[0]["latency"]["per_tile_ms"]["p50"]
    for e in entries:
        if e["status"] == "ok":
            e["speedup_vs_eager"] = round(eager_p50 / e["latency"]["per_tile_ms"]["p50"], 3)
            e["meets_fidelity"] = meets_fidelity(e["fidelity"]["vs_reference"]["token_agreement"], DEFAULT_MIN_TOKENS)
    ok = [e for e in entries if e["status"] == "ok" and e.get("meets_fidelity")]
    best = min(ok, key=lambda e: e["latency"]["per_tile_ms"]["p50"]) if ok else None
    label = f"{gpu or str(device)} (PyTorch {torch.__version__})" + (f", batch {args.batch}" if args.batch > 1 else "")
    report = new_report(
        label=label, host=host,
        model=model_block(model_name, source.describe(), weights_sha256(model), c.hr_size,
                          c.scale, c.patch_nums, model.parameter_report(), flops_groups, flops_stage),
        settings={"runs": args.runs, "warmup": args.warmup, "threads": torch.get_num_threads(),
                  "fidelity_tiles": args.batch, "images": "bundled held-out photographs", "seed": 0,
                  "eager_batch": args.batch, "interleaved": False, "min_token_agreement": DEFAULT_MIN_TOKENS,
                  "target_speedup": None, "device": str(device)},
        peak={"gflops": peaks.get("fp32", 0.0), "numpy_gflops": None, "torch_gflops": peaks.get("fp32"),
              "per_dtype_gflops": peaks, "method": "best of 5 square matmuls on the device (n=8192)"},
        engines=entries,
        summary={"eager_p50_ms_per_tile": eager_p50, "min_token_agreement": DEFAULT_MIN_TOKENS,
                 "engines_meeting_fidelity": [e["label"] for e in ok], **status_reasons(entries),
                 "best_cpu": None, "target_speedup": None, "target_met": None,
                 "best_gpu": None if best is None else _best_gpu(best),
                 "paper_s_per_512_image": PAPER_S},
        profile=None,
        notes=[f"The paper reports {PAPER_S} s per 512x512 image; one d24-512 tile is one such image.",
               "Random weights: speed is what is measured; token agreement is of fp16/bf16 against fp32."])
    write_json(args.out, report)
    if args.md:
        from alignvar_edge.fsmodes import write_text
        from alignvar_edge.bench.render import report_markdown
        write_text(args.md, report_markdown(report))
    if best is not None:
        p50 = best["latency"]["per_tile_ms"]["p50"]
        versus = f" vs the paper's {PAPER_S * 1e3:.0f} ms ({PAPER_S * 1e3 / p50:.2f}x)" if c.hr_size == 512 else ""
        print(f"best: {best['label']} {p50:.1f} ms per {c.hr_size}px image{versus}")
    print(f"wrote {args.out}")
    return 0


def _best_gpu(best: dict[str, Any]) -> dict[str, Any]:
    p50 = best["latency"]["per_tile_ms"]["p50"]
    return {"label": best["label"], "p50_ms_per_tile": p50, "x_faster_than_paper": round(PAPER_S * 1e3 / p50, 3)}


def _ort_entry(onnx_dir: str, lr_np: Any, ref_tokens: Any, timer: Any, args: argparse.Namespace,
               mp: float, flops: int, peak: float) -> dict[str, Any]:
    import numpy as np

    from alignvar_edge import runtimes
    try:
        import onnxruntime as ort
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return _skipped("ort-cuda-fp32", "fp32", f"this onnxruntime has no CUDAExecutionProvider "
                            f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu")
        eng = runtimes.load(onnx_dir, backend="onnxruntime", device="cuda")
    except Exception as err:  # noqa: BLE001 - a missing GPU build is a finding, not a crash
        return _skipped("ort-cuda-fp32", "fp32", f"{type(err).__name__}: {err}")
    with eng:
        _, toks = eng.run(lr_np)
        agree = None if ref_tokens is None else float(np.mean(np.concatenate(
            [(a.numpy().reshape(-1) == b.reshape(-1)) for a, b in zip(ref_tokens, toks)])))
        feeds = {"lr": np.ascontiguousarray(lr_np[: eng.batch], np.float32)}
        ms = []
        for i in range(args.warmup + args.runs):
            eng.infer(feeds)
            if i >= args.warmup:
                ms.append(float(eng.last_latency_ms or 0.0))
    return _entry("ort-cuda-fp32", "fp32", ms, mp, flops, peak, agree, "ONNX Runtime CUDA EP, host-timed",
                  "cuda")


if __name__ == "__main__":
    sys.exit(main())
