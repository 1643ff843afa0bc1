"""``bodyscore cohort run | query``: batch scoring on Dask and DuckDB questions on the results
(see :mod:`bodyscore.cohort.runner` and :mod:`bodyscore.cohort.table`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _cmd_run(args: argparse.Namespace) -> int:
    from bodyscore.cohort.runner import run_cohort

    bar: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        from tqdm import tqdm

        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc="series", unit="series", file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    try:
        summary = run_cohort(
            args.source,
            args.output,
            model=args.model,
            backend=args.backend,
            workers=args.workers,
            scheduler=args.scheduler,
            retry_failed=args.retry_failed,
            thumbnails=not args.no_thumbnails,
            progress=progress,
        )
    finally:
        if "bar" in bar:
            bar["bar"].close()
    print(
        f"wrote {summary.table}: {summary.n_jobs} series ({summary.n_scored} scored now, "
        f"{summary.n_skipped} already done, {summary.n_failed} failed)",
        file=sys.stderr,
    )
    return 1 if summary.n_failed else 0


def _cmd_query(args: argparse.Namespace) -> int:
    from bodyscore.cohort.table import format_table, query_results

    table = query_results(args.table, args.sql)
    print(format_table(table, fmt=args.format))
    return 0


def _cmd_anatomy(args: argparse.Namespace) -> int:
    from bodyscore.cohort.anatomy import write_anatomy_table

    path = write_anatomy_table(args.table, args.segmentations, args.output)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``cohort run`` and ``cohort query``."""
    parser = subparsers.add_parser("cohort", help="score a cohort on Dask; query the results")
    sub = parser.add_subparsers(dest="cohort_command", required=True, metavar="ACTION")
    p = sub.add_parser("run", help="score every series of a folder or downloaded manifest")
    p.add_argument("source", metavar="MANIFEST_OR_DIR")
    p.add_argument("-o", "--output", required=True, metavar="RESULTS.parquet")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="use an existing Dask scheduler instead of a LocalCluster",
    )
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.add_argument("--retry-failed", action="store_true", help="re-run series that failed")
    p.add_argument("--no-thumbnails", action="store_true", help="skip the PNG per series")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("query", help="run DuckDB SQL on a results table (table name: results)")
    p.add_argument("table", metavar="RESULTS.parquet")
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p.set_defaults(func=_cmd_query)
    p = sub.add_parser("anatomy", help="cross-check predicted regions with SEG/RTSTRUCT files")
    p.add_argument("table", metavar="RESULTS.parquet")
    p.add_argument("segmentations", nargs="+", metavar="SEG_OR_RTSTRUCT")
    p.add_argument("-o", "--output", required=True, metavar="ANATOMY.parquet")
    p.set_defaults(func=_cmd_anatomy)
