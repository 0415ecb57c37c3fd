"""What other precisions of a split OpenVINO engine's token part would keep, and cost, at one thread.

    PYTHONPATH=. python scripts/openvino_token_precisions.py ENGINE_DIR [--tiles 256] [--rounds 20] [--out F.json]

ENGINE_DIR is a split engine whose token part is all f32 (`build --target openvino --no-token-bf16`).
Its `model.xml` is compiled as the engine compiles it (the f32 hint) and as it would be compiled
otherwise, each fed the same held-out photo tiles:

- `f16 hint` / `bf16 hint`: the whole token part in the CPU's half (the CPU plugin computes f16 only
  with AVX512-FP16, and bf16 only with AVX512-BF16 or AMX; elsewhere the hint falls back to f32);
- `attention products bf16`: f32, except the attention's activation x activation matmuls (q.k and
  the weighted sum of v), converted to bf16 the way the build's MLP islands are.

Tokens are compared with the f32 compile's, tile by tile; time is the median of one call on a full
batch, per tile. Which of these a build may ship is the build's gate to say: this script only
measures them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from alignvar_edge.bench.host import fingerprint, short_label
from alignvar_edge.manifest import listed_file, load_verified
from alignvar_edge.quantize.calibration.tiles import lr_tiles
from alignvar_edge.runtimes.base import config_from_manifest
from alignvar_edge.runtimes.openvino.backend import compile_config
from alignvar_edge.runtimes.openvino.rewrite import matmul_in_bf16


def attention_products_bf16(model: Any) -> int:
    """Compute every matmul without a constant operand in bf16 (`rewrite.matmul_in_bf16`)."""
    products = [n for n in model.get_ordered_ops() if n.get_type_name() == "MatMul"
                and all(n.input(i).get_source_output().get_node().get_type_name() != "Constant" for i in range(2))]
    for node in products:
        matmul_in_bf16(node)
    model.validate_nodes_and_infer_types()
    return len(products)


def measure(core: ov.Core, model: Any, hint: str, lr: np.ndarray, batch: int, rounds: int) -> tuple[np.ndarray, float]:
    """(tokens of every tile, scales side by side; median ms per tile of one full call)."""
    compiled = core.compile_model(model, "CPU", compile_config("CPU", True, 1, None, inference=hint))
    request = compiled.create_infer_request()
    names = sorted((o.get_any_name() for o in compiled.outputs if o.get_any_name().startswith("tokens_")),
                   key=lambda n: int(n.split("_")[1]))
    tokens = []
    for i in range(0, len(lr), batch):
        out = request.infer({0: lr[i:i + batch]})
        tokens.append(np.concatenate([np.asarray(out[compiled.output(n)]) for n in names], axis=1))
    request.infer({0: lr[:batch]})                     # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        request.infer({0: lr[:batch]})
        times.append(time.perf_counter() - t)
    return np.concatenate(tokens), statistics.median(times) * 1000 / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine")
    ap.add_argument("--tiles", type=int, default=256, help="held-out tiles (rounded up to whole batches)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()
    root = Path(args.engine)
    m = load_verified(root)
    files, split = m.extra.get("files") or {}, m.extra.get("split") or {}
    if m.backend != "openvino" or "image" not in files or split.get("token_precision") != "f32":
        raise SystemExit(f"{root} is not a split OpenVINO engine with an all-f32 token part: build it with "
                         "`alignvar-edge build EXPORT --target openvino --precision bf16 --no-token-bf16`")
    batch = m.static_batch
    lr = lr_tiles(config_from_manifest(m), -(-args.tiles // batch) * batch, seed=0)
    core = ov.Core()
    xml = str(listed_file(root, m, files["engine"]))
    variants = (("f32 (the engine)", "f32", None), ("f16 hint", "f16", None), ("bf16 hint", "bf16", None),
                ("attention products bf16", "f32", attention_products_bf16))
    report: dict[str, Any] = {"engine": str(root), "host": short_label(fingerprint()), "tiles": len(lr),
                              "batch": batch, "variants": {}}
    reference = None
    for name, hint, change in variants:
        model = core.read_model(xml)
        if change is not None:
            change(model)
        tokens, ms = measure(core, model, hint, lr, batch, args.rounds)
        reference = tokens if reference is None else reference
        agree = float((tokens == reference).mean())
        report["variants"][name] = {"hint": hint, "ms_per_tile": round(ms, 3), "token_agreement": round(agree, 5)}
        print(f"{name:26s} {ms:6.3f} ms/tile  tokens {agree:.2%}")
    print(f"{report['host']}; {len(lr)} held-out tiles, batch {batch}, one thread")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
