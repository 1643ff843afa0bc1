"""``bodyscore crop-dataset``: crop an nnU-Net raw / MSD dataset to a known region
(see :mod:`bodyscore.usecases.dataset_crop`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _cmd_crop_dataset(args: argparse.Namespace) -> int:
    from bodyscore.model import load_model
    from bodyscore.usecases.dataset_crop import crop_dataset
    from bodyscore.usecases.known_region import KnownRegion, resolve_bounds

    model = load_model(args.model, backend=args.backend)
    region = None if args.known_region is None else KnownRegion.read(args.known_region)
    bounds = resolve_bounds(
        lookup_table=model.settings.lookup_table,
        model_info=model.info,
        region=args.region,
        landmarks=args.landmarks,
        scores=None if args.scores is None else (args.scores[0], args.scores[1]),
        known_region=region,
    )
    summary = crop_dataset(
        args.source,
        args.output,
        bounds=bounds,
        model=args.model,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        known_region=None if region is None else region.to_dict(),
    )
    print(
        f"wrote {summary.destination}: {summary.n_cases} cases, {summary.n_kept} cropped, "
        f"{summary.n_dropped} dropped (no slice in {bounds.score_min:.1f}..{bounds.score_max:.1f}),"
        f" {summary.n_failed} failed, {summary.n_skipped} done before; table {summary.table}",
        file=sys.stderr,
    )
    return 1 if summary.n_failed else 0


def register(subparsers: Any) -> None:
    """Add ``crop-dataset``."""
    p = subparsers.add_parser(
        "crop-dataset",
        help="crop an nnU-Net raw or MSD dataset (images and labels) to a known region",
        description="Writes a new dataset folder with the same layout, file names and "
        "dataset.json; cases without a slice in the region are dropped. Per-case table: "
        "OUTDIR/bodyscore-crop.csv. Re-running resumes.",
    )
    p.add_argument("source", metavar="DATASET", help="nnU-Net raw or MSD dataset folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="new dataset folder")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--region",
        choices=("legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head"),
        help="a body region of thesis table 4.6",
    )
    how.add_argument("--landmarks", nargs=2, metavar=("FROM", "TO"), help="e.g. L5 Th8")
    how.add_argument("--scores", nargs=2, type=float, metavar=("MIN", "MAX"))
    how.add_argument("--known-region", metavar="FILE", help="a known-region.json")
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="1: run in this process (default); N > 1: a Dask LocalCluster of N workers",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    p.add_argument("--retry-failed", action="store_true", help="re-run cases that failed")
    p.set_defaults(func=_cmd_crop_dataset)
