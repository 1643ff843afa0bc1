"""``bodyscore report``: self-contained HTML audit report of a cohort results table, or of the
IDC index metadata alone (see :mod:`bodyscore.cohort.report`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _cmd_report(args: argparse.Namespace) -> int:
    from bodyscore.cohort.report import write_report

    if args.results is None and not args.idc_metadata:
        print("give RESULTS.parquet and/or --idc-metadata", file=sys.stderr)
        return 2
    path = write_report(
        args.output,
        results=args.results,
        idc_metadata=args.idc_metadata,
        anatomy=args.anatomy,
        max_listed=args.max_listed,
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``report``."""
    p = subparsers.add_parser(
        "report", help="HTML audit report: DICOM BodyPartExamined vs predicted tag"
    )
    p.add_argument("results", nargs="?", default=None, metavar="RESULTS.parquet")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.html")
    p.add_argument(
        "--idc-metadata",
        action="store_true",
        help="add the metadata-only view of all CT series in the IDC index",
    )
    p.add_argument(
        "--anatomy",
        default=None,
        metavar="ANATOMY.parquet",
        help="disagreements from 'bodyscore cohort anatomy'",
    )
    p.add_argument(
        "--max-listed", type=int, default=20, help="suspicious series shown per list (default 20)"
    )
    p.set_defaults(func=_cmd_report)
