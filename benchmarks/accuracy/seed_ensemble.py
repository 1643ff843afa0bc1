"""Landmark error of a seed ensemble, cross-validated (issue 17: is averaging seeds worth it?).

    python benchmarks/accuracy/seed_ensemble.py --member runs/cv/seed1-2000 \
        --member runs/cv/seed2-2000 -o benchmarks/accuracy/ablations/seed-noise/seed-ensemble.md

Each ``--member`` is a ``cross_validate.py`` output folder of the same folds (its
``fold-i/model`` packages and ``cv.json``). For every annotated volume, the packages of the
fold that held it out score it; the ensemble's curve is the mean of the members' unprocessed
scores (0–100 scale, each member calibrated on its own fold's training volumes), and the
landmark MAE against the published scale (medium/high confidence, as in ``cv.md``) is
computed with :func:`bodyscore.evaluate.runner.evaluate_model_on` for each member alone and
for the ensemble. This measures the landmark error only: the tag, 5-class and monotony
figures need the ensemble as one package (not built yet).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))
sys.path.insert(0, str(ROOT / "src"))

from evaluate_model import (  # noqa: E402
    CONFIDENCE_SETS,
    CT_DIR,
    landmark_errors,
    only_confidence,
    published_table,
)

from bodyscore.evaluate import metrics as m  # noqa: E402
from bodyscore.evaluate.landmarks import read_landmarks  # noqa: E402
from bodyscore.evaluate.runner import evaluate_model_on  # noqa: E402
from bodyscore.inference import predict  # noqa: E402
from bodyscore.io import read_volume  # noqa: E402
from bodyscore.model import load_model  # noqa: E402


def _folds(member: Path) -> dict[str, int]:
    """Annotated volume → the fold that held it out, from the member's ``cv.json``."""
    volumes = json.loads((member / "cv.json").read_text())["volumes"]
    return {name: int(v["fold"]) for name, v in volumes.items()}


def _mean_result(results: list[Any]) -> Any:
    """The first result with the members' mean unprocessed scores (None where any is None)."""
    curves = np.array([[np.nan if s is None else s for s in r.unprocessed_scores]
                       for r in results], dtype=float)
    mean = curves.mean(axis=0)
    scores = tuple(None if not np.isfinite(s) else float(s) for s in mean)
    return dataclasses.replace(results[0], unprocessed_scores=scores)


def _mae(results: dict[str, Any], annotations: dict[str, Any], published: dict[str, float],
         model: Any) -> tuple[float, float, int]:
    """Landmark MAE ± SE (n landmarks) of ``results`` against the published scale."""
    subset = {k: v for k, v in only_confidence(annotations, CONFIDENCE_SETS["medium_high"]
                                                ).items() if v.landmarks and k in results}
    report = evaluate_model_on(model, subset, reference=published, landmarks=None,
                               results={k: results[k] for k in subset},
                               cache_dir=tempfile.mkdtemp(prefix="bodyscore_ens_"))
    # pooled over landmarks, as cross_validate.py's headline (not the mean over volumes)
    pooled = m.mean_with_se(abs(e) for v in report.volumes
                            for e in landmark_errors(v, report).values() if e is not None)
    return pooled.mean, pooled.se, pooled.n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--member", type=Path, action="append", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    annotations = read_landmarks(CT_DIR / "landmarks.json")
    published = published_table()
    folds = _folds(args.member[0])
    models = {(member, fold): load_model(member / f"fold-{fold}" / "model")
              for member in args.member for fold in set(folds.values())}
    per_member: list[dict[str, Any]] = [{} for _ in args.member]
    for name, fold in sorted(folds.items()):
        volume = read_volume(CT_DIR / f"{name}.nii.gz")
        for index, member in enumerate(args.member):
            per_member[index][name] = predict(volume, models[member, fold])
    ensemble = {name: _mean_result([m[name] for m in per_member]) for name in folds}
    any_model = next(iter(models.values()))
    rows = [(str(member), *_mae(results, annotations, published, any_model))
            for member, results in zip(args.member, per_member, strict=True)]
    rows.append(("mean of the members' unprocessed scores",
                 *_mae(ensemble, annotations, published, any_model)))
    lines = ["# Seed ensemble, cross-validated: landmark MAE (medium/high confidence)", "",
             "Written by `benchmarks/accuracy/seed_ensemble.py`; each volume scored by the "
             "packages of the fold that held it out.", "",
             "| scores | landmark MAE ± SE (n) |", "|---|---|"]
    lines += [f"| {label} | {mae:.2f} ± {se:.2f} (n={n}) |" for label, mae, se, n in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
