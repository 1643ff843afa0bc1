"""Select CT series from the Imaging Data Commons (IDC) index, download and verify them.

The selection runs offline: the IDC metadata index (one row per DICOM series: ``collection_id``,
``Modality``, ``Manufacturer``, ``BodyPartExamined``, ``SeriesInstanceUID``, ``instanceCount``,
...) ships inside the ``idc-index-data`` wheel as a Parquet file, queried here with DuckDB (the
same table :class:`idc_index.IDCClient` exposes as ``index``). Pixel spacing and slice thickness
are NOT in that table: they live in IDC's optional ``ct_index``, which ``idc-index`` fetches on
demand from the network; offline, geometry filters fail with a one-line message unless the file
is already there (``IDCClient().fetch_index("ct_index")`` when online, or ``geometry_index=``).

Downloads go through ``idc-index`` (s5cmd). Because it can return successfully having fetched
nothing, every series is verified afterwards (file count against the manifest's
``instanceCount``, every file readable by pydicom with the right SeriesInstanceUID) and its status
is written to ``<dir>/.status/<uid>.json``; a second run only fetches what is not verified.
The downloader is injectable (tests run without network).

This implements the data side of the IDC project (seed 000: "use IDC to obtain a varied CT
dataset ... pixel spacing, slice thickness, manufacturer").
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bodyscore.errors import DownloadError, InputError, OutputError
from bodyscore.export.atomic import atomic_path, atomic_write_text

__all__ = [
    "MANIFEST_COLUMNS",
    "SelectionCriteria",
    "SeriesStatus",
    "default_downloader",
    "download_series",
    "geometry_index_path",
    "index_parquet_path",
    "read_manifest",
    "select_series",
    "verify_series",
    "write_manifest",
]

logger = logging.getLogger(__name__)

#: Columns of the IDC index copied into a manifest (``instanceCount`` is used for verification).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "collection_id",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "SeriesDescription",
    "instanceCount",
    "series_size_MB",
)

#: Manifest columns allowed in ``stratify``.
STRATIFY_COLUMNS: frozenset[str] = frozenset(
    {"collection_id", "Manufacturer", "ManufacturerModelName", "BodyPartExamined", "PatientSex"}
)
_STRATIFY_ALIASES = {
    "collection": "collection_id",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "body_part": "BodyPartExamined",
    "bodypartexamined": "BodyPartExamined",
    "sex": "PatientSex",
}

#: A downloader fetches one series into a folder: ``downloader(series_uid, folder)``.
Downloader = Callable[[str, Path], None]


def _arrow(cursor: Any) -> Any:
    """Result as a pyarrow table (``to_arrow_table`` from duckdb 1.4, ``fetch_arrow_table``
    before)."""
    method = getattr(cursor, "to_arrow_table", None) or cursor.fetch_arrow_table
    return method()


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise InputError("IDC selection needs duckdb; pip install 'bodyscore[idc]'") from exc
    return duckdb


def index_parquet_path() -> Path:
    """Path of the IDC series index shipped in the ``idc-index-data`` wheel (offline)."""
    try:
        import idc_index_data
    except ImportError as exc:
        raise InputError("idc-index-data is not installed; pip install 'bodyscore[idc]'") from exc
    return Path(str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH))


def geometry_index_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of IDC's per-series CT geometry index (``ct_index.parquet``: pixel spacing, slice
    thickness), which ``idc-index`` downloads on demand and does not ship.

    Raises
    ------
    InputError
        When it is not on this machine (offline, never fetched).
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"{path}: geometry index not found; give an existing ct_index.parquet")
        return path
    try:
        from importlib.metadata import version

        import platformdirs

        folder = platformdirs.user_data_dir(
            "idc_index_data", "IDC", version=version("idc-index-data")
        )
    except Exception as exc:
        raise InputError(
            f"IDC geometry index unavailable ({exc}); pip install 'bodyscore[idc]'"
        ) from exc
    path = Path(folder) / "ct_index.parquet"
    if not path.is_file():
        raise InputError(
            f"{path}: IDC's geometry index (ct_index: pixel spacing, slice thickness) is not "
            "installed and is only available online; when online run "
            "python -c \"from idc_index import IDCClient; IDCClient().fetch_index('ct_index')\" "
            "or pass --geometry-index FILE"
        )
    return path


@dataclass(frozen=True)
class SelectionCriteria:
    """What to select from the IDC index.

    Attributes
    ----------
    modality : str
        DICOM Modality (default ``"CT"``).
    collections, manufacturers, body_parts : tuple of str
        Keep series whose ``collection_id`` / ``Manufacturer`` / ``BodyPartExamined`` is one of
        these (case-insensitive); empty = no filter. ``"NONE"`` in ``body_parts`` matches a
        missing tag.
    slice_thickness_mm, pixel_spacing_mm : (float, float) or None
        Closed ranges in mm; need the geometry index (see :func:`geometry_index_path`).
    stratify : tuple of str
        Columns to balance the sample over (round robin over their strata).
    max_series : int or None
        Sample size.
    sql : str or None
        A DuckDB query over the table ``index`` returning at least ``SeriesInstanceUID``; it
        replaces the column filters.
    seed : int
        Seed of the deterministic sampling order.
    """

    modality: str = "CT"
    collections: tuple[str, ...] = ()
    manufacturers: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    slice_thickness_mm: tuple[float, float] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    stratify: tuple[str, ...] = ()
    max_series: int | None = None
    sql: str | None = None
    seed: int = 0


def _normalise_stratify(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        column = _STRATIFY_ALIASES.get(name.strip().lower(), name.strip())
        if column not in STRATIFY_COLUMNS:
            raise InputError(
                f"--stratify: unknown column {name!r}; use one of "
                f"{sorted(set(_STRATIFY_ALIASES) | STRATIFY_COLUMNS)}"
            )
        out.append(column)
    return out


def _in_list(column: str, values: Sequence[str], params: list[Any]) -> str:
    clauses = []
    wanted = [v.upper() for v in values if v.upper() != "NONE"]
    if wanted:
        clauses.append(f"upper({column}) IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    if len(wanted) < len(values):
        clauses.append(f"({column} IS NULL OR trim({column}) = '')")
    return "(" + " OR ".join(clauses) + ")"


def select_series(
    criteria: SelectionCriteria,
    *,
    index_path: str | os.PathLike[str] | None = None,
    geometry_index: str | os.PathLike[str] | None = None,
) -> Any:
    """Select series from the IDC index (offline).

    Parameters
    ----------
    criteria : SelectionCriteria
    index_path : path-like, optional
        IDC series index Parquet (default: the one in ``idc-index-data``).
    geometry_index : path-like, optional
        ``ct_index.parquet`` for spacing/thickness filters (default: idc-index's data folder).

    Returns
    -------
    pyarrow.Table
        One row per series with :data:`MANIFEST_COLUMNS` (plus ``SliceThickness`` and
        ``PixelSpacing_row_mm`` with geometry filters), in sampling order.
    """
    duckdb = _duckdb()
    source = index_parquet_path() if index_path is None else Path(index_path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW \"index\" AS SELECT * FROM read_parquet('{_sql_path(source)}')")  # noqa: S608 - paths are quoted, values bound
    params: list[Any] = []
    if criteria.sql is not None:
        # ``FROM index`` as in idc-index's examples; DuckDB needs the keyword quoted
        user_sql = re.sub(
            r"\b(FROM|JOIN)\s+index\b", r'\1 "index"', criteria.sql, flags=re.IGNORECASE
        )
        user_sql = user_sql.strip().rstrip(";")
        base = 'SELECT i.* FROM "index" i'
        where = [f"i.SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM ({user_sql}))"]  # noqa: S608 - paths are quoted, values bound
    else:
        base = 'SELECT i.* FROM "index" i'
        where = ["upper(i.Modality) = ?"]
        params.append(criteria.modality.upper())
        for column, values in (
            ("i.collection_id", criteria.collections),
            ("i.Manufacturer", criteria.manufacturers),
            ("i.BodyPartExamined", criteria.body_parts),
        ):
            if values:
                where.append(_in_list(column, values, params))
    geometry_columns = ""
    if criteria.slice_thickness_mm is not None or criteria.pixel_spacing_mm is not None:
        geometry = geometry_index_path(geometry_index)
        con.execute(f"CREATE VIEW ct_index AS SELECT * FROM read_parquet('{_sql_path(geometry)}')")  # noqa: S608 - paths are quoted, values bound
        base = base.replace(
            'FROM "index" i', 'FROM "index" i JOIN ct_index g USING (SeriesInstanceUID)'
        )
        geometry_columns = ", g.SliceThickness, g.PixelSpacing_row_mm"
        for column, bounds in (
            ("g.SliceThickness", criteria.slice_thickness_mm),
            ("g.PixelSpacing_row_mm", criteria.pixel_spacing_mm),
        ):
            if bounds is not None:
                where.append(f"{column} BETWEEN ? AND ?")
                params.extend([float(bounds[0]), float(bounds[1])])
    base = base.replace("SELECT i.*", "SELECT i.*" + geometry_columns)
    strata = _normalise_stratify(criteria.stratify)
    partition = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in strata) or "1"
    columns = ", ".join(f'"{c}"' for c in MANIFEST_COLUMNS) + (
        ", SliceThickness, PixelSpacing_row_mm" if geometry_columns else ""
    )
    query = (
        f"WITH selected AS ({base} WHERE {' AND '.join(where)}), "  # noqa: S608 - paths are quoted, values bound
        f"ranked AS (SELECT *, hash(SeriesInstanceUID || '{int(criteria.seed)}') AS _h FROM "
        f"selected), ordered AS (SELECT *, row_number() OVER (PARTITION BY {partition} "
        f"ORDER BY _h) AS _rank FROM ranked) "
        f"SELECT {columns} FROM ordered ORDER BY _rank, _h"
    )
    if criteria.max_series is not None:
        query += f" LIMIT {int(criteria.max_series)}"
    try:
        table = _arrow(con.execute(query, params))
    except duckdb.Error as exc:
        raise InputError(f"IDC selection query failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    logger.info("selected %d series from %s", table.num_rows, source)
    return table


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def write_manifest(table: Any, path: str | os.PathLike[str]) -> Path:
    """Write a selection as a Parquet manifest atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_manifest(path: str | os.PathLike[str]) -> Any:
    """Read a Parquet manifest; it must have ``SeriesInstanceUID``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(
            f"{path}: not a readable Parquet manifest; create one with 'bodyscore idc select'"
        ) from exc
    if "SeriesInstanceUID" not in table.column_names:
        raise InputError(f"{path}: manifest lacks the column SeriesInstanceUID")
    return table


# ------------------------------------------------------------------------------------------
# download and verification
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesStatus:
    """Outcome of downloading and verifying one series.

    Attributes
    ----------
    series_uid : str
    status : str
        ``"ok"``, ``"incomplete"`` (fewer files than ``instanceCount``), ``"unreadable"``,
        ``"missing"`` (nothing downloaded) or ``"failed"`` (the downloader raised).
    path : str
        Folder of the series.
    n_files, expected_files : int
        Files found / ``instanceCount`` of the manifest (0 when unknown).
    message : str
        Details of a problem (empty when ok).
    """

    series_uid: str
    status: str
    path: str
    n_files: int
    expected_files: int
    message: str = ""


def _series_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def verify_series(
    folder: str | os.PathLike[str], series_uid: str, expected_files: int
) -> SeriesStatus:
    """Check a downloaded series: file count and that every file is DICOM of that series.

    Parameters
    ----------
    folder : path-like
        Folder holding the series' files (searched recursively).
    series_uid : str
        Expected SeriesInstanceUID.
    expected_files : int
        The manifest's ``instanceCount`` (0 = unknown, only readability is checked).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    files = _series_files(folder)
    n = len(files)
    if n == 0:
        return SeriesStatus(
            series_uid, "missing", str(folder), 0, expected_files, "no files downloaded"
        )
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
            uid = str(ds.SeriesInstanceUID)
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            return SeriesStatus(
                series_uid,
                "unreadable",
                str(folder),
                n,
                expected_files,
                f"{file.name}: not readable as DICOM ({exc})",
            )
        if uid != series_uid:
            return SeriesStatus(
                series_uid,
                "unreadable",
                str(folder),
                n,
                expected_files,
                f"{file.name}: belongs to series {uid}",
            )
    if expected_files and n < expected_files:
        return SeriesStatus(
            series_uid,
            "incomplete",
            str(folder),
            n,
            expected_files,
            f"{n} of {expected_files} instances",
        )
    return SeriesStatus(series_uid, "ok", str(folder), n, expected_files)


def network_available(
    host: str = "s3.amazonaws.com", port: int = 443, timeout_s: float = 3.0
) -> bool:
    """True when a TCP connection to IDC's storage can be opened."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def default_downloader() -> Downloader:
    """A downloader through ``idc_index.IDCClient.download_dicom_series``.

    Raises
    ------
    DownloadError
        When idc-index is missing or IDC's storage cannot be reached (no network).
    """
    if not network_available():
        raise DownloadError(
            "no network: cannot reach IDC storage (s3.amazonaws.com:443); connect to the "
            "internet and run the same command again (it resumes)"
        )
    try:
        from idc_index import IDCClient
    except ImportError as exc:
        raise DownloadError("downloading needs idc-index; pip install 'bodyscore[idc]'") from exc
    client = IDCClient()

    def download(series_uid: str, folder: Path) -> None:
        client.download_dicom_series(
            seriesInstanceUID=series_uid,
            downloadDir=str(folder.parent),
            dirTemplate=folder.name,
            quiet=True,
            show_progress_bar=False,
        )

    return download


def _status_file(out_dir: Path, uid: str) -> Path:
    return out_dir / ".status" / f"{uid}.json"


def _previous_ok(out_dir: Path, uid: str) -> bool:
    try:
        data = json.loads(_status_file(out_dir, uid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return data.get("status") == "ok"


def download_series(
    manifest: Any,
    out_dir: str | os.PathLike[str],
    *,
    downloader: Downloader | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SeriesStatus]:
    """Download every series of a manifest into ``out_dir/<SeriesInstanceUID>/`` and verify it.

    Resumable: a series whose status file says ``ok`` and that still verifies is not fetched
    again. Writes ``out_dir/.status/<uid>.json`` per series and ``out_dir/downloaded.parquet``
    (the manifest plus ``path``, ``status``, ``n_files``, ``message``), which
    ``bodyscore cohort run`` accepts.

    Parameters
    ----------
    manifest : pyarrow.Table
        From :func:`select_series` / :func:`read_manifest`.
    out_dir : path-like
    downloader : callable, optional
        ``downloader(series_uid, folder)``; default :func:`default_downloader` (needs network).
    progress : callable, optional
        ``progress(done, total)``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the download folder ({exc}); choose another -o"
        ) from exc
    rows = manifest.to_pylist()
    statuses: list[SeriesStatus] = []
    for done, row in enumerate(rows, start=1):
        uid = str(row["SeriesInstanceUID"])
        expected = int(row.get("instanceCount") or 0)
        folder = out / uid
        status = verify_series(folder, uid, expected) if _previous_ok(out, uid) else None
        if status is None or status.status != "ok":
            if downloader is None:
                downloader = default_downloader()
            try:
                downloader(uid, folder)
            except Exception as exc:
                status = SeriesStatus(
                    uid,
                    "failed",
                    str(folder),
                    len(_series_files(folder)),
                    expected,
                    f"download failed: {exc}".splitlines()[0],
                )
            else:
                status = verify_series(folder, uid, expected)
        else:
            logger.info("%s: already downloaded and verified", uid)
        atomic_write_text(_status_file(out, uid), json.dumps(asdict(status), indent=1) + "\n")
        statuses.append(status)
        if progress is not None:
            progress(done, len(rows))
    by_uid = {s.series_uid: s for s in statuses}
    extra = {
        "path": [by_uid[str(r["SeriesInstanceUID"])].path for r in rows],
        "status": [by_uid[str(r["SeriesInstanceUID"])].status for r in rows],
        "n_files": [by_uid[str(r["SeriesInstanceUID"])].n_files for r in rows],
        "message": [by_uid[str(r["SeriesInstanceUID"])].message for r in rows],
    }
    table = manifest
    for name, values in extra.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, pa.array(values))
    with atomic_path(out / "downloaded.parquet") as tmp:
        pq.write_table(table, tmp)
    return statuses
