#!/usr/bin/env bash
# OpenVINO's CPU runtime for a lent machine that has no package registry (the H200 machine's
# host is an AMX Xeon, the host the half-precision check needs). The wheel (59 MB) and the
# working tree together pass the 64 MiB a call may carry, so this keeps only what our engines
# use (the core, the CPU, AUTO and HETERO plugins, the ONNX and IR frontends, the Python
# bindings), adds what `build` needs beside PyTorch (onnx without its test data, protobuf,
# ml_dtypes, safetensors, tqdm, packaging: such a machine may lack them), and packs it with xz: about
# 25 MB, in .whl/ (ignored by git). Versions are constraints.txt's.
#   bash scripts/pack_openvino_for_device.sh [PYTHON_VERSION, default 3.12]
# The exporter needs onnxscript and this repo's PyTorch, so export here and carry it too:
#   alignvar-edge export alignvar-tiny --out runs/E16 && tar -C runs -cJf .whl/E16.tar.xz E16
# On the machine (carry .whl; keep engines out of $OUT, which returns at most 8 files):
#   mkdir -p /tmp/site /tmp/exp && tar xJf .whl/openvino-cpu.tar.xz -C /tmp/site && tar xJf .whl/E16.tar.xz -C /tmp/exp
#   PYTHONPATH=/tmp/site:. EXPORT=/tmp/exp/E16 AE="python3 -m alignvar_edge" PY=python3 \
#     bash scripts/half_precision_bench.sh /tmp/half 16 && cp /tmp/half/half.md /tmp/half/half.json $OUT/
set -euo pipefail
pyver=${1:-3.12}
version=${OPENVINO_VERSION:-$(sed -n 's/^openvino==//p' constraints.txt)}
pin() { sed -n "s/^$1==//p" constraints.txt; }
telemetry=$(pin openvino-telemetry)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/wheel" "openvino==$version" "openvino-telemetry==$telemetry" \
  "onnx==$(pin onnx)" "protobuf==$(pin protobuf)" "ml_dtypes==$(pin ml_dtypes)" \
  "safetensors==$(pin safetensors)" "tqdm==$(pin tqdm)" "packaging==$(pin packaging)"
mkdir "$work/site"
for w in "$work"/wheel/*.whl; do (cd "$work/site" && python3 -m zipfile -e "$w" .); done
libs="$work/site/openvino/libs"
# other devices' plugins, the GPU kernel cache, and the frontends for formats we never read
rm -f "$libs"/libopenvino_intel_gpu_plugin.so "$libs"/libopenvino_intel_npu_plugin.so "$libs"/cache.json \
      "$libs"/libopenvino_{tensorflow,tensorflow_lite,pytorch,paddle,gguf,jax}_frontend.so*
rm -rf "$work/site/onnx/backend/test/data"   # 12 MB of operator test cases
# C++ headers and the Python sides of the frontends removed above
rm -rf "$work/site/openvino/include" \
       "$work/site/openvino/frontend/"{pytorch,tensorflow,paddle,jax}
mkdir -p .whl
# kept out of git where this is a checkout (git names the file: a worktree's .git is a file)
if exclude=$(git rev-parse --git-path info/exclude 2>/dev/null); then
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
fi
tar -C "$work/site" -cf - . | xz -9 -T0 > .whl/openvino-cpu.tar.xz
ls -l .whl/openvino-cpu.tar.xz
