#!/usr/bin/env bash
# The one prepared GPU session (device tool): host facts, then scripts/gpu_bench.py on the
# paper-size preset (d24 at 512 px) and on d16 at 256 px. Everything lands in $OUT (default
# runs/gpu); each step has its own time limit so one hang cannot eat the whole lease.
#   OUT=runs/gpu bash scripts/gpu_session.sh
#   OUT=runs/gpu GPU_RUNS="d24-512:8:240" bash scripts/gpu_session.sh     # batch-8 throughput
#   GPU_ARGS="--dtypes fp16 --fast-paths --prune 0.5,0.75" ...             # appended to every gpu_bench call
#   GPU_PROFILE=1 ...                        # also a torch.profiler table per preset ($OUT/gpu-PRESET-profile.txt)
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
  "$PY" - <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
try:
    import onnxruntime as ort
    print("onnxruntime", ort.__version__, ort.get_available_providers())
except Exception as e:  # noqa: BLE001
    print("onnxruntime: not importable:", e)
PYEOF
} 2>&1 | tee "$OUT/env.txt"
# preset:batch:limit — batch 1 is the paper's latency; batch 8 the throughput of a tiled large image
for spec in ${GPU_RUNS:-d24-512:1:300 d16:1:150}; do
  IFS=: read -r preset batch limit <<<"$spec"
  name="gpu-$preset"
  [ "$batch" = 1 ] || name="$name-b$batch"
  echo "== $preset batch $batch (limit ${limit}s)"
  read -r -a extra <<<"${GPU_ARGS:-}"
  [ -z "${GPU_PROFILE:-}" ] || extra+=(--profile "$OUT/$name-profile.txt")
  timeout "$limit" "$PY" scripts/gpu_bench.py --preset "$preset" --batch "$batch" --runs 20 --warmup 3 \
      --out "$OUT/$name.json" --md "$OUT/$name.md" "${extra[@]}" 2>&1 | tee "$OUT/$name.log"
done
