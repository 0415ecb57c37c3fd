#!/usr/bin/env bash
# Equal-budget ablation of the transformer stage on one VQ-VAE: SCA+HCC (as the config says),
# SCA off, HCC off, HCC on free-running rollouts; each evaluated with its component ablations.
# Usage: scripts/ablation.sh RUN_DIR STEPS   (RUN_DIR/vqvae/final must exist)
set -euo pipefail
run=${1:-runs/default}; steps=${2:-150}
ae=".venv/bin/alignvar-edge"
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/both" --steps "$steps" --force
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/no-sca" --steps "$steps" --no-sca --force
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/no-hcc" --steps "$steps" --hcc-weight 0 --force
$ae train transformer --init "$run/vqvae/final" --out "$run/ablation/hcc-free" --steps "$steps" --hcc-rollout gumbel --force
for v in both no-sca no-hcc hcc-free; do
  echo "== $v"; $ae eval "$run/ablation/$v/final" --max-side 256 --ablations --json "$run/ablation/$v/eval.json"
done
