#!/usr/bin/env bash
# Fifth ablation round (issue 17) against the default recipe (configs/default.yaml, 2026.12.1:
# the 20 annotated volumes plus 271 unlabelled real CTs, region-balanced unlabelled draws at half
# of each epoch, batch 16, correspondence term, automatic lung anchors, 64² input): each variant
# changes one thing, trained on fold 0 of the 5-fold split for 500 steps; the default recipe's own
# fold 0 is that of the cross-validation (runs/cv/default). Earlier rounds (issues 4 and 11,
# against the 2026.11 recipes): benchmarks/accuracy/ablations/README.md; reproduce them with the
# variants listed there against configs/real-only.yaml and configs/synthetic-2026.11.4.yaml.
# Table (runs/abl/default: the default recipe's fold 0 alone, which this script aggregates from
# the cross-validation's runs/cv/default/fold-0 when that exists):
#   python benchmarks/accuracy/ablation_table.py runs/abl/default/cv.json \
#       runs/cv-ablation/*/cv.json -o benchmarks/accuracy/ablations/unlabelled-round
#
# Sixth round (session 6, `run_ablations.sh 6`), the same way against the same recipe: the legs
# (region_weights: legs slices weigh 5 in the region term, legs bound raw 0.1 -> 0.0; with and
# without twice the legs share of the unlabelled draws), the training length (1000 steps), the
# number of unlabelled volumes (41 of the 258 OpenKBP CTs: openkbp_train0[0-4]*, with the 13
# others) and synthetic CT beside the unlabelled real CT (8 synthetic volumes).
# Table:
#   python benchmarks/accuracy/ablation_table.py --steps-may-differ runs/abl/default/cv.json \
#       runs/cv-ablation-6/*/cv.json -o benchmarks/accuracy/ablations/legs-budget-round
set -eu
cd "$(dirname "$0")/../.."
mkdir -p runs
ROUND="${1:-5}"
cv() {  # label, extra arguments
  local label="$1"; shift
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --only-folds 0 --threads 1 --label "$label" "$@" \
    -o "runs/cv-ablation$([ "$ROUND" = 5 ] || echo "-$ROUND")/$label" >> "runs/cv-ablation-$label.log" 2>&1
}
if [ -f runs/cv/default/fold-0/result.json ] && [ ! -f runs/abl/default/cv.json ]; then
  mkdir -p runs/abl/default   # the first row of both tables: the recipe's own fold 0
  cp -r runs/cv/default/fold-0 runs/cv/default/folds.json runs/abl/default/
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --steps 500 --aggregate-only --label "default recipe" -o runs/abl/default
fi
if [ "$ROUND" = 5 ]; then
  for variant in no-correspondence no-lung-anchors no-new-signals uniform-sampling \
      annotated-only res128; do
    cv "$variant" --steps 500 --variant "$variant"
  done
  exit 0
fi
UNLABELLED="$(cd ../shared/data/ct-unlabelled && pwd)"
BOUNDS='{"legs":[null,0.0],"pelvis":[-0.1,2.5134],"abdomen":[2.3134,3.7960],"chest":[3.5960,6.4122],"shoulder-neck":[6.2122,7.5714],"head":[7.3714,null]}'
SUBSET="[\"$UNLABELLED/*.nii.gz\",\"$UNLABELLED/openkbp/openkbp_train0[0-4]*.nii.gz\"]"
# two at a time on the 2 cores, one thread each
cv legs-weighted --steps 500 --set "region_bounds=$BOUNDS" --set 'region_weights={"legs":5.0}' &
cv legs-weighted-share --steps 500 --set "region_bounds=$BOUNDS" \
  --set 'region_weights={"legs":5.0}' --set 'region_shares={"legs":2.0}'
wait
cv recipe-1000-steps --steps 1000 &
cv unlabelled-41-openkbp --steps 500 --set "unlabelled_sources=$SUBSET"
cv with-synthetic-8 --steps 500 --set 'synthetic_volumes=8'
wait
