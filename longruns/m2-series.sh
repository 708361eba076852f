#!/usr/bin/env bash
# M2 with its default recipe (alpha = 2.3 N, enumeration, 784-500-50 networks, Adam 1e-3),
# 100 / 600 / 1000 / 3000 labels x seeds 0, 1, 2 (the seed also draws the labelled images),
# 100 epochs each, test error of q(y|x) on all 10,000 test images in every metrics row
# (issue #23 item 1). Runs one after another in longruns/m2-<labels>-s<seed>/, seed 0 first.
#
# Start or continue the series from the repository root (it picks up where it stopped):
#   nohup bash longruns/m2-series.sh > logs/m2-series.log 2>&1 &
#
# A run in progress continues bit for bit from its checkpoint.pt. A finished run (its
# metrics.csv reaches epoch 100) keeps only metrics.csv in git: its checkpoint is moved to
# final.pt (not tracked), so the repository does not carry twelve 15 MB files.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=100
for seed in 0 1 2; do
  for labels in 100 600 1000 3000; do
    dir=longruns/m2-$labels-s$seed
    if [ -f "$dir/metrics.csv" ] && [ "$(tail -n 1 "$dir/metrics.csv" | cut -d, -f1)" = "$EPOCHS" ]; then
      [ -f "$dir/checkpoint.pt" ] && mv "$dir/checkpoint.pt" "$dir/final.pt"
      continue
    fi
    process=(--threads 1 --no-progress -k 1 --num-test 1000 --data-dir ../shared/data)
    if [ -f "$dir/checkpoint.pt" ]; then
      uv run pyro-vae train --resume --run-dir "$dir" "${process[@]}"
    else
      per_batch=$([ "$labels" -lt 1000 ] && echo 10 || echo 20)
      uv run pyro-vae train --model m2 --estimator enum --hidden 500 --z-dim 50 --dataset mnist \
        --num-labels "$labels" --labelled-per-batch "$per_batch" --epochs "$EPOCHS" --seed "$seed" \
        --run-dir "$dir" "${process[@]}"
    fi
    mv "$dir/checkpoint.pt" "$dir/final.pt"
  done
done
