"""DuckDB questions on a cohort results table (exposed to SQL as ``results``).

>>> sql = "SELECT dicom_body_part, predicted_tag, count(*) FROM results GROUP BY ALL"
>>> query_results("results.parquet", sql)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bodyscore.errors import InputError

__all__ = ["format_table", "query_results"]


def _arrow(cursor: Any) -> Any:
    """Result as a pyarrow table (``to_arrow_table`` from duckdb 1.4, ``fetch_arrow_table``
    before)."""
    method = getattr(cursor, "to_arrow_table", None) or cursor.fetch_arrow_table
    return method()


def query_results(table_path: str | os.PathLike[str], sql: str) -> Any:
    """Run DuckDB SQL over a Parquet results table registered as the view ``results``.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    InputError
        Missing table, or SQL that DuckDB rejects (its first message line).
    """
    try:
        import duckdb
    except ImportError as exc:
        raise InputError("queries need duckdb; pip install 'bodyscore[idc]'") from exc
    path = Path(table_path)
    if not path.is_file():
        raise InputError(f"{path}: results table not found; create it with 'bodyscore cohort run'")
    con = duckdb.connect()
    try:
        escaped = str(path).replace("'", "''")
        con.execute(f"CREATE VIEW results AS SELECT * FROM read_parquet('{escaped}')")  # noqa: S608 - paths are quoted, values bound
        return _arrow(con.execute(sql))
    except duckdb.Error as exc:
        raise InputError(f"{path}: query failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


def format_table(table: Any, *, fmt: str = "text") -> str:
    """Render a pyarrow table as aligned text, CSV or JSON lines."""
    rows = table.to_pylist()
    names = list(table.column_names)
    if fmt == "json":
        return "\n".join(json.dumps(row, default=str) for row in rows)
    cells = [["" if row[n] is None else str(row[n]) for n in names] for row in rows]
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(cells)
        return buffer.getvalue().rstrip("\n")
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)
