#!/usr/bin/env bash
# Fifth ablation round (issue 17) against the default recipe (configs/default.yaml, 2026.12.1:
# the 20 annotated volumes plus 271 unlabelled real CTs, region-balanced unlabelled draws at half
# of each epoch, batch 16, correspondence term, automatic lung anchors, 64² input): each variant
# changes one thing, trained on fold 0 of the 5-fold split for 500 steps; the default recipe's own
# fold 0 is that of the cross-validation (runs/cv/default). Earlier rounds (issues 4 and 11,
# against the 2026.11 recipes): benchmarks/accuracy/ablations/README.md; reproduce them with the
# variants listed there against configs/real-only.yaml and configs/synthetic-2026.11.4.yaml.
# Table: python benchmarks/accuracy/ablation_table.py runs/cv/default/cv.json \
#            runs/cv-ablation/*/cv.json -o benchmarks/accuracy/ablations
set -eu
cd "$(dirname "$0")/../.."
mkdir -p runs
for variant in no-correspondence no-lung-anchors no-new-signals uniform-sampling annotated-only \
    res128; do
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --only-folds 0 --steps 500 --variant "$variant" --threads 1 \
    -o "runs/cv-ablation/$variant" >> runs/cv-ablation.log 2>&1
done
