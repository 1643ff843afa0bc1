"""Per-slice table export: one CSV row per input slice."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from bodyscore.export.atomic import atomic_write_text
from bodyscore.result import ScoreResult

__all__ = ["CSV_COLUMNS", "result_to_csv", "write_csv"]

#: Columns of the per-slice CSV.
CSV_COLUMNS: tuple[str, ...] = (
    "slice_index",
    "z_mm",
    "unprocessed_score",
    "cleaned_score",
    "regions",
)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def result_to_csv(result: ScoreResult) -> str:
    """CSV text with one row per input slice (input's own order).

    ``regions`` joins the body part examined dictionary entries of the slice with ``|``;
    a missing score is an empty cell.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    regions = result.region_of_slices()
    for i in range(result.n_slices):
        writer.writerow(
            [
                i,
                f"{result.z_mm[i]:.6g}",
                _cell(result.unprocessed_scores[i]),
                _cell(result.cleaned_scores[i]),
                "|".join(regions[i]),
            ]
        )
    return buffer.getvalue()


def write_csv(result: ScoreResult, path: str | os.PathLike[str]) -> Path:
    """Write :func:`result_to_csv` to ``path`` atomically."""
    return atomic_write_text(path, result_to_csv(result))
