#!/usr/bin/env bash
# Ablations of issue 11 against the default recipe (configs/default.yaml): each variant changes
# one thing, trained on fold 0 of the 5-fold split for 500 steps. with-synthetic adds the 40
# synthetic volumes the recipe dropped (the trainer generates them into the shared cache).
# Table: python benchmarks/accuracy/ablation_table.py runs/cv-ablation/*/cv.json
set -eu
cd "$(dirname "$0")/../.."
mkdir -p runs
for variant in baseline with-synthetic no-regions no-anchors no-augment res64; do
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --only-folds 0 --steps 500 --variant "$variant" --threads 1 \
    -o "runs/cv-ablation/$variant" >> runs/cv-ablation.log 2>&1
done
