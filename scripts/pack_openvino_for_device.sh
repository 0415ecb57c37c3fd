#!/usr/bin/env bash
# OpenVINO's CPU runtime for a lent machine that has no package registry (the H200 machine's
# host is an AMX Xeon, the host the half-precision check needs). The wheel (59 MB) and the
# working tree together pass the 64 MiB a call may carry, so this keeps only what our engines
# use (the core, the CPU, AUTO and HETERO plugins, the ONNX and IR frontends, the Python
# bindings) and packs it with xz: about 21 MB, in .whl/ (ignored by git).
#   bash scripts/pack_openvino_for_device.sh [PYTHON_VERSION, default 3.12]
# On the machine (carry .whl):
#   mkdir -p /tmp/site && tar xJf .whl/openvino-cpu.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:.
#   AE="python3 -m alignvar_edge" PY=python3 bash scripts/half_precision_bench.sh $OUT/half 1
set -euo pipefail
pyver=${1:-3.12}
version=${OPENVINO_VERSION:-$(sed -n 's/^openvino==//p' constraints.txt)}
telemetry=$(sed -n 's/^openvino-telemetry==//p' constraints.txt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$work/wheel" "openvino==$version" "openvino-telemetry==$telemetry"
mkdir "$work/site"
for w in "$work"/wheel/*.whl; do (cd "$work/site" && python3 -m zipfile -e "$w" .); done
libs="$work/site/openvino/libs"
# other devices' plugins, the GPU kernel cache, and the frontends for formats we never read
rm -f "$libs"/libopenvino_intel_gpu_plugin.so "$libs"/libopenvino_intel_npu_plugin.so "$libs"/cache.json \
      "$libs"/libopenvino_{tensorflow,tensorflow_lite,pytorch,paddle,gguf,jax}_frontend.so*
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
tar -C "$work/site" -cf - . | xz -9 -T0 > .whl/openvino-cpu.tar.xz
ls -l .whl/openvino-cpu.tar.xz
