#!/usr/bin/env bash
# Ablations of issues 4/11 against the default recipe (configs/default.yaml, 2026.11.3): each
# variant changes one thing, trained on fold 0 of the 5-fold split for 500 steps. with-synthetic
# adds the 40 synthetic volumes the recipe dropped; slope-band-synthetic(-share) are the third
# round's synthetic rows (8 volumes; 40 volumes at 15 % of the samples; 40 at 30 % teaching only
# the order); the 4-volume row is
# `--variant slope-band --set synthetic_volumes=4`. The trainer generates synthetic volumes into
# the shared cache. Table: python benchmarks/accuracy/ablation_table.py runs/cv-ablation/*/cv.json
set -eu
cd "$(dirname "$0")/../.."
mkdir -p runs
for variant in baseline no-synthetic with-synthetic no-regions no-anchors no-augment res64 \
    slope-band-synthetic slope-band-synthetic-share slope-band-synthetic-order; do
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --only-folds 0 --steps 500 --variant "$variant" --threads 1 \
    -o "runs/cv-ablation/$variant" >> runs/cv-ablation.log 2>&1
done
