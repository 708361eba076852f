#!/usr/bin/env bash
# What separates our converged 784-200-200-50 VAE (-87.86, longruns/vae-iwae-s0) from Burda et
# al.'s -86.76 (issue #41 item 1): their recipe differs from ours in three things, each tried
# alone and all together, side by side at equal epochs over the first stages of their schedule
# (stages 0-3 end at epoch 40, stage 4 at epoch 121; lr 1e-3 * 10^(-i/7) for 3^i epochs):
#   b100    ours: batch 100, Adam eps 1e-8, PyTorch's initialisation (the long run's recipe)
#   b20     batch 20 (five times the steps per epoch)
#   eps     Adam eps 1e-4 on their loss scale: they minimize the minibatch *mean* of the per-datum
#           bound, we the whole-data bound (N/M times the minibatch sum, N = 60,000), whose
#           gradients are N times theirs; Adam is invariant to that scale except for eps, so
#           their 1e-4 is our 1e-4 x 60,000 = 6 (our eps 1e-4 changes nothing measurable)
#   glorot  Glorot & Bengio's uniform initialisation, zero biases
#   burda   all three: batch 20, eps 6 (their 1e-4), Glorot
# In longruns/burda-<name>/. Seed 0 each, a metrics row (train ELBO, single-sample test ELBO on all 10,000 test images)
# every epoch. Each run is resumable: rerunning this script continues where it stopped, first
# every variant to epoch 40, then every variant to epoch 121. From the repository root:
#   nohup bash longruns/burda-recipe.sh > logs/burda-recipe.log 2>&1 &
#   uv run python longruns/burda-recipe-table.py
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A RECIPE=(
  [b100]=""
  [b20]="--batch-size 20"
  [eps]="--optimizer-option eps=6"
  [glorot]="--init glorot"
  [burda]="--batch-size 20 --optimizer-option eps=6 --init glorot"
)
process=(--jit --threads 1 --no-progress -k 100 --num-test 1000 --data-dir ../shared/data)
for epochs in 40 121; do
  for name in b100 b20 eps glorot burda; do
    dir=longruns/burda-$name
    last=$([ -f "$dir/metrics.csv" ] && tail -n 1 "$dir/metrics.csv" | cut -d, -f1 || echo 0)
    [ "$last" -ge "$epochs" ] && continue
    if [ -f "$dir/checkpoint.pt" ]; then
      uv run pyro-vae train --resume --run-dir "$dir" --epochs "$epochs" "${process[@]}"
    else
      # shellcheck disable=SC2086
      uv run pyro-vae train --preset iwae --lr-schedule iwae --epochs "$epochs" --seed 0 \
        ${RECIPE[$name]} --run-dir "$dir" "${process[@]}"
    fi
  done
done
