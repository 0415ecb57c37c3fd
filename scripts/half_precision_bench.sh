#!/usr/bin/env bash
# OpenVINO CPU half precision on this host, in one interleaved run at one thread: the f32 engine,
# what `build --precision bf16` ships (whole graph or split), and the whole graph in bf16 (what
# OpenVINO's own default computes on AMX / AVX512-BF16 CPUs), with tokens and PSNR-Y on held-out
# tiles. The table in docs/benchmarks.md ("Half precision per backend and ISA class") came from it.
# Usage: scripts/half_precision_bench.sh OUT_DIR [BATCH]
# EXPORT=DIR uses that export of alignvar-tiny instead of exporting (a machine without the
# exporter's tools: export here, carry it); its batch is the export's, whatever BATCH says.
set -euo pipefail
out=${1:?usage: scripts/half_precision_bench.sh OUT_DIR [BATCH]}; batch=${2:-1}
# AE / PY: the CLI and python to use (a lent machine without the venv: AE="python3 -m alignvar_edge" PY=python3)
ae=${AE:-.venv/bin/alignvar-edge}; py=${PY:-.venv/bin/python}
mkdir -p "$out"
{ $ae doctor || true; } | grep '^ISA' || echo 'doctor: no ISA line'
if [ -n "${EXPORT:-}" ]; then
  rm -rf "$out/export" && mkdir -p "$out/export" && cp -r "$EXPORT"/. "$out/export"/
else
  $ae export alignvar-tiny --batch "$batch" --out "$out/export" --force
fi
$ae build "$out/export" --target openvino --precision fp32 --out "$out/ov-f32" --force
$ae build "$out/export" --target openvino --precision bf16 --out "$out/ov-bf16" --force
# the whole graph in bf16 whatever it keeps: lower the token target so the first rung is kept
$py -c 'import sys; from alignvar_edge import runtimes; out = sys.argv[1]
runtimes.build(f"{out}/export", "openvino", "bf16", out=f"{out}/ov-whole", force=True, min_token_agreement=0.0)' "$out"
$ae inspect "$out/ov-bf16" | grep -E '^(split|tried|compute) '
$ae bench ort-fp32=onnxruntime:"$out/export" ov-f32=openvino:"$out/ov-f32" ov-bf16=openvino:"$out/ov-bf16" \
  ov-bf16-whole=openvino:"$out/ov-whole" --threads 1 --tiles 60 --runs 30 \
  --out "$out/half.json" --md "$out/half.md"
