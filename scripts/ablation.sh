#!/usr/bin/env bash
# Equal-budget ablation of the transformer stage on one VQ-VAE: the same start, seed and steps with
# SCA and HCC as the config says ("both"), SCA off, HCC off, and HCC on free-running rollouts; each
# evaluated with its component ablations (RUN_DIR/ablation/VARIANT/eval.json).
# Usage: scripts/ablation.sh RUN_DIR STEPS   (RUN_DIR/vqvae/final must exist)
# Environment: AE (the CLI, default .venv/bin/alignvar-edge); TRAIN_ARGS (given to every variant
# before its own flag, e.g. "--batch 12 --hcc-rollout teacher --images DIR"); VARIANTS (default
# "both no-sca no-hcc hcc-free"); HELDOUT=DIR also evaluates on DIR (eval-heldout.json).
# A rerun keeps the variants that finished and resumes the ones that were stopped, as token_worth.sh
# does; a finished run of the same flags elsewhere counts as a variant when RUN_DIR/ablation/VARIANT
# links to it.
set -euo pipefail
base=${1:-runs/default}; steps=${2:-150}
ae=${AE:-.venv/bin/alignvar-edge}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
read -r -a variants <<<"${VARIANTS:-both no-sca no-hcc hcc-free}"
run=$base/ablation
mkdir -p "$run"
# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"
flags_of() {  # flags_of VARIANT: the variant's own train flags, into the array `flags`
  case $1 in
    both) flags=() ;;
    no-sca) flags=(--no-sca) ;;
    no-hcc) flags=(--hcc-weight 0) ;;
    hcc-free) flags=(--hcc-rollout gumbel) ;;
    *) echo "scripts/ablation.sh: unknown variant '$1' in VARIANTS; use both, no-sca, no-hcc or hcc-free" >&2; exit 2 ;;
  esac
}
for v in "${variants[@]}"; do flags_of "$v"; done       # every name checked before anything trains
for v in "${variants[@]}"; do
  flags_of "$v"
  stage "$v" transformer --init "$base/vqvae/final" --steps "$steps" "${train_args[@]}" "${flags[@]}"
done
evaluate "${variants[@]}"
