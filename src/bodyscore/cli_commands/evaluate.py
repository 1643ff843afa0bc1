"""``bodyscore evaluate``: thesis metrics of a model on annotated CTs, with an HTML/PNG report.

Writes into ``-o OUTDIR`` (atomically): ``metrics.json`` (strict JSON), ``per_landmark.csv``,
``report.html`` (self-contained) and ``report.png``; scored volumes are cached in
``OUTDIR/cache`` (or ``--cache DIR``) so a re-run only scores changed inputs or models.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bodyscore.evaluate.runner import EvaluationReport

__all__ = ["per_landmark_csv", "register"]


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "evaluate",
        help="measure a model on annotated CTs (LMSE, accuracy, R²) and write a report",
        description="Score the annotated volumes of DIR with MODEL and compute the thesis "
        "metrics (sec. 4.2): LMSE ± SE, landmark |error|, 5-class accuracy, R², region accuracy; "
        "with --compare, also the z-test between two models.",
    )
    p.add_argument("--model", required=True, metavar="M", help="model name or package folder")
    p.add_argument("--data", required=True, metavar="DIR", help="folder with the volumes")
    p.add_argument("--landmarks", required=True, metavar="FILE",
                   help="landmarks.json, landmark CSV, or bpreg's table (.xlsx/.csv)")
    p.add_argument("--compare", metavar="M2", help="second model: z-test of the two LMSEs")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--cache", metavar="DIR", help="result cache folder (default OUTDIR/cache)")
    p.add_argument("--no-cache", action="store_true", help="always re-score every volume")
    p.add_argument("--reference", choices=("model", "data"), default="model",
                   help="pseudo-labels: the model's reference table (default) or the mean "
                   "over the evaluated volumes")
    p.add_argument("--scores", choices=("unprocessed", "cleaned"), default="unprocessed",
                   help="which slice scores to evaluate (default: unprocessed)")
    p.add_argument("--all-landmarks", action="store_true",
                   help="count every annotated landmark, not only the 12 of thesis table 4.3")
    p.add_argument("--alpha", type=float, default=0.05, help="z-test significance level")
    p.set_defaults(func=_cmd_evaluate)


def per_landmark_csv(report: EvaluationReport, other: EvaluationReport | None = None) -> str:
    """CSV text: one row per (model, landmark) with LMSE ± SE, |error| ± SE, bias, spread."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "landmark", "n", "reference_score", "lmse", "lmse_se", "mae",
                     "mae_se", "bias", "score_std"])

    def cell(value: float) -> str:
        return f"{value:.6g}" if math.isfinite(value) else ""

    for r in (report,) if other is None else (report, other):
        for e in r.per_landmark:
            writer.writerow([r.name, e.name, e.n, cell(e.reference_score), cell(e.lmse.mean),
                             cell(e.lmse.se), cell(e.mae.mean), cell(e.mae.se), cell(e.bias),
                             cell(e.score_std)])
    return buffer.getvalue()


def _evaluate(args: argparse.Namespace, model: str, cache: Path | None) -> EvaluationReport:
    from bodyscore.evaluate.runner import evaluate_folder

    return evaluate_folder(
        model, args.data, args.landmarks, cache_dir=cache, reference=args.reference,
        score_kind=args.scores, landmarks=None if args.all_landmarks else _default_landmarks(),
    )


def _default_landmarks() -> tuple[str, ...]:
    from bodyscore.evaluate.metrics import EVALUATION_LANDMARKS

    return EVALUATION_LANDMARKS


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bodyscore.evaluate.report import render_html, render_png
    from bodyscore.evaluate.runner import compare_reports
    from bodyscore.export.atomic import atomic_write_bytes, atomic_write_text

    out = Path(args.output)
    cache = None if args.no_cache else Path(args.cache) if args.cache else out / "cache"
    report = _evaluate(args, args.model, cache)
    other = _evaluate(args, args.compare, cache) if args.compare else None
    test = compare_reports(report, other, alpha=args.alpha) if other is not None else None
    document: dict[str, Any] = {"evaluation": report.to_dict()}
    if other is not None and test is not None:
        document["compare"] = {"evaluation": other.to_dict(), "z_test": test.to_dict(),
                               "verdict": test.verdict(report.name, other.name)}
    atomic_write_text(out / "metrics.json", json.dumps(document, indent=2, allow_nan=False))
    atomic_write_text(out / "per_landmark.csv", per_landmark_csv(report, other))
    atomic_write_text(out / "report.html", render_html(report, other, test))
    atomic_write_bytes(out / "report.png", render_png(report, other, test))
    for r in (report,) if other is None else (report, other):
        lmse = r.lmse
        se = f" ± {lmse.se:.3g}" if math.isfinite(lmse.se) else ""
        value = f"{lmse.mean:.4g}{se}" if math.isfinite(lmse.mean) else "n/a"
        print(f"{r.name}: LMSE {value} over {lmse.n} volumes; "
              f"{len(r.skipped)} skipped")
        for message in r.skipped:
            print(f"  skipped {message}", file=sys.stderr)
    if test is not None and other is not None:
        print(test.verdict(report.name, other.name))
    print(f"wrote {out / 'report.html'}")
    return 0
