"""``bodyscore idc select | download``: pick CT series from the Imaging Data Commons index
(offline) and download + verify them (see :mod:`bodyscore.cohort.idc`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _range(text: str) -> tuple[float, float]:
    try:
        lo, _, hi = text.partition(":")
        low = float(lo)
        return low, float(hi) if hi else low
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN:MAX in mm, e.g. 1:2.5") from exc


def _cmd_select(args: argparse.Namespace) -> int:
    from bodyscore.cohort.idc import SelectionCriteria, select_series, write_manifest

    sql = None
    if args.sql is not None:
        try:
            sql = Path(args.sql).read_text(encoding="utf-8").strip().rstrip(";")
        except OSError as exc:
            print(f"{args.sql}: cannot read the SQL file ({exc.strerror})", file=sys.stderr)
            return 2
    criteria = SelectionCriteria(
        modality=args.modality,
        collections=args.collection,
        manufacturers=args.manufacturer,
        body_parts=args.body_part_examined,
        slice_thickness_mm=args.slice_thickness,
        pixel_spacing_mm=args.pixel_spacing,
        stratify=args.stratify,
        max_series=args.max_series,
        sql=sql,
        seed=args.seed,
    )
    table = select_series(criteria, geometry_index=args.geometry_index)
    write_manifest(table, args.output)
    print(f"wrote {args.output}: {table.num_rows} series", file=sys.stderr)
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from bodyscore.cohort.idc import download_series, read_manifest

    manifest = read_manifest(args.manifest)
    statuses = download_series(manifest, args.output)
    bad = [s for s in statuses if s.status != "ok"]
    for status in bad:
        print(f"{status.series_uid}: {status.status} ({status.message})", file=sys.stderr)
    print(
        f"{len(statuses) - len(bad)} of {len(statuses)} series verified; table: "
        f"{Path(args.output) / 'downloaded.parquet'}",
        file=sys.stderr,
    )
    return 1 if bad else 0


def register(subparsers: Any) -> None:
    """Add ``idc select`` and ``idc download``."""
    parser = subparsers.add_parser(
        "idc", help="select and download CT series from Imaging Data Commons"
    )
    sub = parser.add_subparsers(dest="idc_command", required=True, metavar="ACTION")
    p = sub.add_parser("select", help="select series from the IDC index (works offline)")
    p.add_argument("--modality", default="CT")
    p.add_argument(
        "--collection", type=_csv, default=(), help="collection_id list, comma-separated"
    )
    p.add_argument("--manufacturer", type=_csv, default=(), help="Manufacturer list")
    p.add_argument(
        "--body-part-examined",
        type=_csv,
        default=(),
        help="BodyPartExamined list (NONE = tag missing)",
    )
    p.add_argument(
        "--slice-thickness",
        type=_range,
        default=None,
        metavar="MIN:MAX",
        help="mm; needs IDC's ct_index (online only)",
    )
    p.add_argument(
        "--pixel-spacing",
        type=_range,
        default=None,
        metavar="MIN:MAX",
        help="mm; needs IDC's ct_index (online only)",
    )
    p.add_argument(
        "--geometry-index",
        default=None,
        metavar="FILE",
        help="a local ct_index.parquet for the two filters above",
    )
    p.add_argument(
        "--stratify",
        type=_csv,
        default=(),
        help="balance over these columns, e.g. manufacturer,collection",
    )
    p.add_argument("--max-series", type=int, default=None, metavar="N")
    p.add_argument(
        "--sql",
        default=None,
        metavar="FILE",
        help="DuckDB query over the table 'index' returning SeriesInstanceUID",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="MANIFEST.parquet")
    p.set_defaults(func=_cmd_select)
    p = sub.add_parser("download", help="download the series of a manifest and verify them")
    p.add_argument("manifest", metavar="MANIFEST.parquet")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.set_defaults(func=_cmd_download)
