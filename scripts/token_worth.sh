#!/usr/bin/env bash
# What the transformer's tokens are worth on held-out photographs, at equal decoder budget:
#   1. the VQ-VAE, 2. the transformer on its frozen tokens, then three fine-tunes of the same
#   length: the decoder on the transformer's own latent ("dec"), the transformer and the decoder
#   together on the image of their own rollout ("joint"), and, the control, the decoder on a zero
#   latent ("dec-zero").
# The tokens' worth is a fine-tune's model PSNR-Y minus dec-zero's tokens_off PSNR-Y (eval JSON in
# RUN_DIR/STAGE); where a stage stopped early (--max-minutes) the summary gives each side's steps.
# On a 2-core CPU the runs go two at a time, at one thread each; a stage whose partner has already
# finished (a rerun after a stop) trains alone, on the caller's OMP_NUM_THREADS (default: every
# core). So when dec-zero finishes first, stop the run (Ctrl-C, or SIGTERM to the script's whole
# process group: each training stage saves the step it is on; the script exits once they have) and
# run the same command again: the transformer goes on with both cores.
# Usage: scripts/token_worth.sh RUN_DIR [VQ_STEPS TF_STEPS DEC_STEPS PRESET]
# Environment: AE (the CLI, default .venv/bin/alignvar-edge), PY (python for the summary, default
# .venv/bin/python), TRAIN_ARGS (appended to every train call, e.g. "--device cuda --workers 6").
# A rerun keeps every stage that finished (RUN_DIR/STAGE/final with all its steps), resumes a stage
# that was stopped (killed, --max-minutes in TRAIN_ARGS, or the machine went down) from its last
# saved state, and trains the others; a stage is trained again when the stage it starts from has
# been resumed since.
# HELDOUT=DIR also evaluates every stage on the photographs in DIR (RUN_DIR/STAGE/eval-heldout.json).
set -euo pipefail
run=${1:?usage: scripts/token_worth.sh RUN_DIR [VQ_STEPS TF_STEPS DEC_STEPS PRESET]}
vq_steps=${2:-1200}; tf_steps=${3:-1000}; dec_steps=${4:-600}; preset=${5:-tiny32}
ae=${AE:-.venv/bin/alignvar-edge}
py=${PY:-.venv/bin/python}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
mkdir -p "$run"
# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"
# however the script ends, a stage training in the background is waited for (after a stop it is
# saving its step): a rerun never meets a stage that is still writing its run
trap 'wait' EXIT
$ae doctor | grep '^ISA' || true
stage vqvae vqvae --preset "$preset" --steps "$vq_steps" --batch 8 "${train_args[@]}"
# beside STAGE: the threads of a stage that trains beside STAGE (one each, or all where STAGE is done)
beside() { if finished "$1"; then echo "${OMP_NUM_THREADS:-$(nproc)}"; else echo 1; fi; }
# teacher-forced HCC and dropout negatives: 2.2x cheaper a step than the preset's free-running HCC
OMP_NUM_THREADS=$(beside dec-zero) stage tf transformer --init "$run/vqvae/final" --steps "$tf_steps" --batch 12 \
  --hcc-rollout teacher --cfg-negative dropout "${train_args[@]}" &
tf_pid=$!
# the control's decoder never sees a token, so it can start from the VQ-VAE alone
OMP_NUM_THREADS=$(beside tf) stage dec-zero decoder --init "$run/vqvae/final" --latent zero --steps "$dec_steps" --batch 12 "${train_args[@]}"
wait "$tf_pid"
OMP_NUM_THREADS=$(beside dec) stage joint joint --init "$run/tf/final" --steps "$dec_steps" --batch 12 "${train_args[@]}" &
joint_pid=$!
OMP_NUM_THREADS=$(beside joint) stage dec decoder --init "$run/tf/final" --latent model --steps "$dec_steps" --batch 12 "${train_args[@]}"
wait "$joint_pid"
evaluate tf dec joint dec-zero
$py - "$run" <<'PY'
import json, os, sys
run = sys.argv[1]
steps = {}                     # each stage's steps, as its training.json says (None: not recorded)
for name in ("vqvae", "tf", "dec", "joint", "dec-zero"):     # stopped by --max-minutes: not the budget compared
    made = json.load(open(f"{run}/{name}/final/training.json")) if os.path.exists(f"{run}/{name}/final/training.json") else {}
    steps[name] = made.get("steps")
    if made.get("steps", 0) < made.get("planned_steps", 0):
        print(f"{name} stopped at step {made['steps']} of {made['planned_steps']}, so the budgets below are not "
              "equal; run the same command again to finish it")


def budget(name):
    """How a fine-tune's budget compares with the control's: equal, or each side's steps."""
    if steps[name] is not None and steps[name] == steps["dec-zero"]:
        return "at equal fine-tune budget"
    sides = [f"{n} {steps[n]} steps" if steps[n] is not None else f"{n} steps not recorded" for n in (name, "dec-zero")]
    return f"at unequal fine-tune budgets ({' vs '.join(sides)})"


for file, photos in (("eval.json", "the bundled held-out photographs"), ("eval-heldout.json", "HELDOUT")):
    if not os.path.exists(f"{run}/tf/{file}"):
        continue
    v = {name: json.load(open(f"{run}/{name}/{file}"))["variants"] for name in ("tf", "dec", "joint", "dec-zero")}
    control = v["dec-zero"]["tokens_off"]["psnr_y"]
    print(f"on {photos}: before any fine-tune the tokens are worth "
          f"{v['tf']['model']['psnr_y'] - v['tf']['tokens_off']['psnr_y']:+.2f} dB")
    for name in ("dec", "joint"):
        model = v[name]["model"]["psnr_y"]
        print(f"  {name}: tokens' worth {budget(name)} {model:.2f} - {control:.2f} = {model - control:+.2f} dB "
              f"PSNR-Y; over bicubic {model - v[name]['bicubic']['psnr_y']:+.2f} dB")
PY
