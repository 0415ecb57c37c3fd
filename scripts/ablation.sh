#!/usr/bin/env bash
# Equal-budget ablation of the transformer stage on the default VQ-VAE: SCA+HCC, SCA off, HCC off.
# Usage: scripts/ablation.sh RUN_DIR STEPS   (RUN_DIR/vqvae/final must exist)
set -euo pipefail
run=${1:-runs/default}; steps=${2:-150}
ae=".venv/bin/alignvar-edge"
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/both" --steps "$steps" --force
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/no-sca" --steps "$steps" --no-sca --force
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/no-hcc" --steps "$steps" --hcc-weight 0 --force
for v in both no-sca no-hcc; do
  echo "== $v"; $ae eval "$run/ablation/$v/final" --max-side 256 --json "$run/ablation/$v/eval.json"
done
