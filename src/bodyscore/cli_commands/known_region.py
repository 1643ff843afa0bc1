"""``bodyscore known-region fit``: learn an algorithm's known region from its training data
(thesis sec. 4.3.2, data-driven approach; see :mod:`bodyscore.usecases.known_region`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _cmd_fit(args: argparse.Namespace) -> int:
    from bodyscore.cli import expand_inputs
    from bodyscore.model import load_model
    from bodyscore.usecases.known_region import collect_results, fit_known_region

    model = load_model(args.model, backend=args.backend)
    results, names, failures = collect_results(expand_inputs(args.inputs), model=model)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    region = fit_known_region(results, q_min=args.q_min, q_max=args.q_max, volumes=names)
    path = region.write(args.output)
    bounds = region.bounds
    print(
        f"wrote {path}: scores {bounds.score_min:.1f}..{bounds.score_max:.1f} from "
        f"{len(results)} volumes (q_min {args.q_min}, q_max {args.q_max}, model "
        f"{region.model.get('name')} {region.model.get('version')})",
        file=sys.stderr,
    )
    return 1 if failures else 0


def register(subparsers: Any) -> None:
    """Add ``known-region fit``."""
    parser = subparsers.add_parser(
        "known-region", help="learn a known region from an algorithm's training data"
    )
    sub = parser.add_subparsers(dest="known_region_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "fit",
        help="fit score bounds on training volumes (thesis sec. 4.3.2, data-driven)",
        description="s_min = q_min quantile of the volumes' minimum cleaned scores, s_max = "
        "q_max quantile of their maxima; written with the model that produced the scores.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RESULTS_DIR_OR_IMAGES",
        help="result JSON files or folders of them ('bodyscore predict' output), or images / "
        "image folders / globs, which are scored",
    )
    p.add_argument("-o", "--output", required=True, metavar="KNOWN_REGION.json")
    p.add_argument(
        "--q-min", type=float, default=0.25, help="quantile of the minima (default 0.25)"
    )
    p.add_argument(
        "--q-max", type=float, default=0.75, help="quantile of the maxima (default 0.75)"
    )
    p.add_argument("--model", default="default", help="model name or folder scoring the images")
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.set_defaults(func=_cmd_fit)
