"""What TensorRT's default fp16 plan keeps, measured in the fp16 ONNX simulation (ONNX Runtime, CPU).

    python scripts/token_path_fp16.py EXPORT_DIR [TILES] [--json OUT.json]

Three graphs of one export on held-out LR tiles, against the fp32 graph: every float node in fp16
(only ArgMax and the reductions kept, `quantize`'s starting point), and the token path's float
nodes kept f32 with everything else in fp16 (what `build --target tensorrt --precision fp16` asks
TensorRT for without a searched half policy). ONNX Runtime on a CPU stores half tensors and
computes through inserted Casts: this measures rounding, not a GPU's half arithmetic or speed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from alignvar_edge.export.parity import psnr_y, token_agreement
from alignvar_edge.manifest import read_manifest
from alignvar_edge.quantize.calibration.tiles import lr_tiles
from alignvar_edge.quantize.fp16 import to_fp16
from alignvar_edge.quantize.token_path import token_path_float_nodes
from alignvar_edge.runtimes.base import config_from_manifest


def run(model: onnx.ModelProto, lr: np.ndarray, batch: int) -> tuple[np.ndarray, list[np.ndarray]]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: lr[i:i + batch]}) for i in range(0, len(lr), batch)]
    names = [o.name for o in sess.get_outputs()]
    sr = np.concatenate([o[names.index("sr")] for o in outs])
    tokens = [np.concatenate([o[i] for o in outs]) for i, n in enumerate(names) if n != "sr"]
    return sr, tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export")
    ap.add_argument("tiles", type=int, nargs="?", default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    m = read_manifest(a.export)
    config, batch = config_from_manifest(m), m.static_batch
    n = -(-a.tiles // batch) * batch
    lr = lr_tiles(config, n, seed=0, split="heldout")
    model = onnx.load(str(Path(a.export) / "model.onnx"))
    keep = token_path_float_nodes(model)
    ref_sr, ref_tok = run(model, lr, batch)
    rows = {}
    for label, graph in (("every float node fp16", to_fp16(model)),
                         ("token path f32, the rest fp16", to_fp16(model, keep_ops=(), keep_nodes=keep))):
        half, report = graph
        sr, tok = run(half, lr, batch)
        agree = token_agreement(ref_tok, tok)
        rows[label] = {"tokens_vs_fp32": round(agree["overall"], 6), "tiles_identical": agree["identical_samples"],
                       "sr_psnr_y_vs_fp32_db": round(psnr_y(ref_sr, sr, border=config.scale), 2),
                       "fp16_nodes": report.fp16_nodes, "fp32_nodes": len(report.fp32_nodes)}
        print(f"{label}: {rows[label]}", file=sys.stderr)
    out = {"export": str(a.export), "model": m.model.name, "tiles": n, "token_path_f32_layers": len(keep),
           "nodes": len(model.graph.node), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
