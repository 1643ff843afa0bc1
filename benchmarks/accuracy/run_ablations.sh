#!/usr/bin/env bash
# Ablations of issue 11: every variant on fold 0 of the 5-fold split, 500 steps each.
set -u
cd "$(dirname "$0")/../.."
for variant in baseline no-regions no-anchors no-synthetic no-augment res64; do
  python - "$variant" <<'PY'
import importlib.util, shutil, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("cv", "benchmarks/accuracy/cross_validate.py")
cv = importlib.util.module_from_spec(spec); spec.loader.exec_module(cv)
from bodyscore.train import load_train_config
config = cv.variant_config(load_train_config("configs/default.yaml"), sys.argv[1])
cache = Path("runs/cv-ablation") / f"cache-{cv.cache_key(config)}"
if config.synthetic_volumes and not (cache / "synthetic").is_dir():
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copytree("runs/default-v2/cache/synthetic", cache / "synthetic")
PY
  python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
    --only-folds 0 --steps 500 --variant "$variant" --threads 1 \
    -o "runs/cv-ablation/$variant" >> runs/cv-ablation.log 2>&1
done
echo done >> runs/cv-ablation.log
