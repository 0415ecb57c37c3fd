"""Which of the token path's matmuls can run as bf16 islands in an OpenVINO int8 build?

    PYTHONPATH=. python scripts/token_bf16_sets.py EXPORT_DIR --out-dir DIR \
        [--sets "ffn;ffn,attn_out;ffn,attn_qkv;ffn,attn_out,attn_qkv"]

A plain int8 build runs the MLP matmuls (`ffn`) of its f32 token part in bf16 where 256 held-out
tiles keep >= 99% of the tokens. This builds one engine per set of matmul kinds instead, with the
attention projections told apart: `attn_qkv` (the fused q/k/v projection) and `attn_out` (the
output projection); the other kinds are the INT8 policy's components (`alignvar-edge quantize
--help`). Each engine is written to DIR/<set> by the ordinary build (its own parity gate, which
falls back to an f32 token part when the set loses tokens) and its token agreement printed. Time
and score them against each other with `alignvar-edge bench ... --tiles 64`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import alignvar_edge.runtimes.openvino.backend as backend
from alignvar_edge.cli import main as cli
from alignvar_edge.manifest import load_verified


def _projections_apart(proto: Any, labels: dict[str, str]) -> dict[str, str]:
    """`labels` with each `attn_linear` MatMul named by what it reads: the attention's own output
    (through a Reshape) for the output projection, the normalised stream for the q/k/v one."""
    made_by = {o: n.op_type for n in proto.graph.node for o in n.output}
    kind = {n.name: "attn_out" if made_by.get(n.input[0]) == "Reshape" else "attn_qkv"
            for n in proto.graph.node if n.op_type == "MatMul"}
    return {name: kind.get(name, label) if label == "attn_linear" else label for name, label in labels.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--sets", default="ffn;ffn,attn_out;ffn,attn_qkv;ffn,attn_out,attn_qkv")
    args = ap.parse_args()
    plain = backend._component_of
    backend._component_of = lambda proto: _projections_apart(proto, plain(proto))  # type: ignore[assignment]
    for kinds in args.sets.split(";"):
        out = Path(args.out_dir) / kinds.replace(",", "+")
        shutil.rmtree(out, ignore_errors=True)
        backend.ISLAND_COMPONENTS = frozenset(kinds.split(","))
        status = cli(["build", args.export, "--target", "openvino", "--precision", "int8", "--calib", "builtin",
                      "--out", str(out)])
        if status:                              # the build said why, in one line
            sys.exit(status)
        m = load_verified(out)
        islands = (m.extra.get("split") or {}).get("token_bf16_matmuls", 0)
        print(f"{kinds}: tokens {m.parity['tokens']['overall']:.2%} on the build's tiles, "
              f"{islands} bf16 matmuls in the token part -> {out}")


if __name__ == "__main__":
    main()
