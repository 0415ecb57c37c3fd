#!/usr/bin/env bash
# A GPU training session in one command: are the transformer's tokens worth something
# once the model trains with a GPU's budget? scripts/token_worth.sh on CUDA, its step counts sized
# from a short timed probe so the whole run fits BUDGET_MIN minutes of training, every stage capped
# by --max-minutes as a safety net, then `eval --ablations` of each stage on held-out photographs.
#   OUT=runs/gpu-train BUDGET_MIN=6 bash scripts/gpu_train.sh
# (sized for a GPU machine that allows one command of at most 10 minutes: 6 minutes of training
# plus the probe and the evaluations end in about 8)
# BATCH=N trains every stage (and sizes the probe) at batch N instead of the CPU recipe's 8 and 12,
# so a large GPU sees more images per step.
#   DEVICE=cpu PRESET=micro BUDGET_MIN=1 OUT=/tmp/gt bash scripts/gpu_train.sh   # the plumbing, on a CPU
# Needs torch with CUDA, numpy, Pillow, safetensors and tqdm on the machine (checked first; a
# machine without a registry gets missing pure-Python wheels carried in and `pip install --no-index`).
# The runs go to RUN (default /tmp/gpu-train); $OUT receives what a lent machine hands back (at most
# 8 files of 16 MiB): env.txt, steps.txt, worth.log, summary.tgz (every stage's log.csv, eval.json
# and training.json) and the transformer and joint stages' checkpoints as tf-final.tgz, joint-final.tgz.
set -u
OUT=${OUT:-runs/gpu-train}
RUN=${RUN:-/tmp/gpu-train}
BUDGET_MIN=${BUDGET_MIN:-6}
PRESET=${PRESET:-tiny32}
WORKERS=${WORKERS:-8}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
export DEVICE BATCH=${BATCH:-} PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT/env.txt" || exit 1
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "PIL", "safetensors", "tqdm") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing here: {missing}; carry their wheels in and pip install --no-index")
import os, torch
if os.environ["DEVICE"].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device")
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no CUDA device)")
PYEOF
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
# Probe: a few steps of the two stages that set the pace, on the device; steps per second from log.csv
# (the first steps carry CUDA's warm-up, so the rate is low and the sized run ends early, not late).
read -r VQ_STEPS TF_STEPS DEC_STEPS < <("$PY" - "$RUN/probe" "$PRESET" "$BUDGET_MIN" "$WORKERS" <<'PYEOF'
import csv, os, sys, time
from pathlib import Path
from alignvar_edge.train.trainer import TrainOptions, train
out, preset, budget, workers = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
def rate(stage, batch, **kw):
    run = out / stage
    t0 = time.perf_counter()
    train(TrainOptions(stage=stage, out=run, steps=30, preset=preset, batch=batch, log_every=10, force=True,
                       progress=False, device=os.environ["DEVICE"], workers=workers, **kw))
    rows = list(csv.DictReader((run / "log.csv").open()))
    r = float(rows[-1]["img_per_s"]) / batch
    print(f"probe {stage}: {r:.1f} steps/s ({time.perf_counter() - t0:.0f} s with start-up)", file=sys.stderr)
    return run, r
batch = os.environ.get("BATCH")
vq, r_vq = rate("vqvae", int(batch or 8))
_, r_tf = rate("transformer", int(batch or 12), init=str(vq / "final"), overrides={"hcc_rollout": "teacher"})
s = 60 * budget
# token_worth.sh: vqvae; then transformer beside dec-zero; then dec beside joint (GPU shared)
print(int(r_vq * 0.25 * s), int(r_tf * 0.40 * s), int(r_tf * 0.35 * s / 1.5))
PYEOF
)
echo "steps: vqvae $VQ_STEPS, transformer $TF_STEPS, decoder/joint $DEC_STEPS" | tee "$OUT/steps.txt"
[ "${VQ_STEPS:-0}" -gt 0 ] || { echo "the probe failed; see above"; exit 1; }
cap=$("$PY" -c "print(round($BUDGET_MIN * 0.45, 2))")
export AE="$PY -m alignvar_edge" PY TRAIN_ARGS="--device $DEVICE --workers $WORKERS --max-minutes $cap${BATCH:+ --batch $BATCH}"
bash scripts/token_worth.sh "$RUN/run" "$VQ_STEPS" "$TF_STEPS" "$DEC_STEPS" "$PRESET" 2>&1 | tr '\r' '\n' \
  | grep -v '^train ' | tee "$OUT/worth.log"
mapfile -t made < <(cd "$RUN" && ls -d run/*/log.csv run/*/eval.json run/*/final/training.json 2>/dev/null)
tar -czf "$OUT/summary.tgz" -C "$RUN" "${made[@]}"
for s in tf joint; do
  [ -d "$RUN/run/$s/final" ] && tar -czf "$OUT/$s-final.tgz" -C "$RUN/run/$s" final
done
ls -l "$OUT"
