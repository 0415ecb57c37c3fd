"""The attention core alone, in three ONNX forms, on ONNX Runtime's CPU provider at one thread.

    PYTHONPATH=. python scripts/attention_core_bench.py [--preset tiny] [--batches 1,8] [--out core.json]

Forms, each fed the same q, k, v (the cache included) and additive bias, outputs compared:
  explicit  MatMul, Add, Softmax, MatMul, Transpose, Reshape (our graphs' default core)
  attention opset-23 `Attention` (`export --attention fused`)
  contrib   ONNX Runtime's `com.microsoft.MultiHeadAttention` (B, S, C) q/k/v
Shapes are the preset's: per scale k, S = p_k^2 queries over L = prefix + all tokens up to scale k.
Rounds interleave the forms call by call; the figure is the median call, summed over one tile's
calls (every scale, every block). It says whether a vendor attention kernel could make the scale
steps faster: it cannot be faster than its share of a tile.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from alignvar_edge.bench.host import fingerprint, short_label
from alignvar_edge.model import AlignVARConfig

FORMS = ("explicit", "attention", "contrib")


def _io(name: str, shape: list[int]) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def build(form: str, B: int, H: int, d: int, S: int, L: int) -> bytes:
    C = H * d
    y = [_io("y", [B, S, C])]
    shape = [helper.make_tensor("shape", TensorProto.INT64, [3], [B, S, C])]
    heads_in = [_io("q", [B, H, S, d]), _io("k", [B, H, L, d]), _io("v", [B, H, L, d]), _io("bias", [1, H, S, L])]
    merge = [helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["ot", "shape"], ["y"])]
    if form == "explicit":
        nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                 helper.make_node("MatMul", ["q", "kt"], ["logits"]),
                 helper.make_node("Add", ["logits", "bias"], ["biased"]),
                 helper.make_node("Softmax", ["biased"], ["p"], axis=-1),
                 helper.make_node("MatMul", ["p", "v"], ["o"]), *merge]
        graph, opsets = helper.make_graph(nodes, form, heads_in, y, shape), [("", 17)]
    elif form == "attention":
        nodes = [helper.make_node("Attention", ["q", "k", "v", "bias"], ["o"], scale=1.0), *merge]
        graph, opsets = helper.make_graph(nodes, form, heads_in, y, shape), [("", 23)]
    else:
        inputs = [_io("q3", [B, S, C]), _io("k3", [B, L, C]), _io("v3", [B, L, C]), _io("bias", [1, H, S, L])]
        nodes = [helper.make_node("MultiHeadAttention", ["q3", "k3", "v3", "", "", "bias"], ["y"],
                                  domain="com.microsoft", num_heads=H, scale=1.0)]
        graph, opsets = helper.make_graph(nodes, form, inputs, y), [("", 17), ("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(dom, v) for dom, v in opsets])
    return model.SerializeToString()


def session(model: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()
    c = AlignVARConfig.from_preset(args.preset)
    H, d = c.heads, c.width // c.heads
    rng = np.random.default_rng(0)
    rows = []
    for B in (int(b) for b in args.batches.split(",")):
        tile_us = dict.fromkeys(FORMS, 0.0)
        L = c.prefix_len
        for p in c.patch_nums:
            S = p * p
            L += S
            q, k, v = (rng.standard_normal((B, H, n, d), dtype=np.float32) for n in (S, L, L))
            bias = rng.standard_normal((1, H, S, L), dtype=np.float32)
            heads = {"q": q, "k": k, "v": v, "bias": bias}
            merged = {f"{n}3": t.transpose(0, 2, 1, 3).reshape(B, -1, H * d) for n, t in (("q", q), ("k", k), ("v", v))}
            feeds = {f: heads if f != "contrib" else {**merged, "bias": bias} for f in FORMS}
            sessions = {f: session(build(f, B, H, d, S, L)) for f in FORMS}
            ref = sessions["explicit"].run(None, feeds["explicit"])[0]
            for f in FORMS:
                err = float(np.abs(sessions[f].run(None, feeds[f])[0] - ref).max())
                if err > 1e-4:
                    raise SystemExit(f"{f} differs from the explicit core by {err} at B={B} S={S} L={L}")
            times: dict[str, list[float]] = {f: [] for f in FORMS}
            for _ in range(args.rounds):
                for f in FORMS:
                    t0 = time.perf_counter()
                    sessions[f].run(None, feeds[f])
                    times[f].append(time.perf_counter() - t0)
            med = {f: statistics.median(t) * 1e6 for f, t in times.items()}
            rows.append({"batch": B, "queries": S, "keys": L, "us": med})
            for f in FORMS:
                tile_us[f] += med[f] * c.depth
        per_tile = {f: tile_us[f] / B / 1e3 for f in FORMS}
        print(f"batch {B}: attention cores per tile (ms) " +
              ", ".join(f"{f} {per_tile[f]:.3f} ({tile_us['explicit'] / tile_us[f]:.2f}x explicit)" for f in FORMS))
        rows.append({"batch": B, "per_tile_ms": per_tile})
    fp = fingerprint(with_backends=True)
    print(f"host: {short_label(fp)}, ISA {' '.join(fp['cpu'].get('isa', []))}; onnxruntime {ort.__version__}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"host": fp, "preset": args.preset, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
