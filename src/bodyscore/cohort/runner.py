"""Batch scoring of a cohort on a Dask distributed cluster, one row per series, resumable.

Each series runs the core pipeline (:func:`bodyscore.io.read_volume` +
:func:`bodyscore.inference.predict`) in a worker process. Every finished series (success or
failure) writes, atomically and in this order, its result JSON, a PNG thumbnail (score curve +
coronal view coloured by region) and its row file ``<parts>/<key>.row.json``. The Parquet table
is (re)built from the row files, so a run killed at any moment loses no finished row and
duplicates none; a re-run skips every series with a row file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bodyscore.cohort.tags import compare_tags
from bodyscore.errors import BodyscoreError, InputError
from bodyscore.export.atomic import atomic_path, atomic_write_text
from bodyscore.volume import Volume

__all__ = [
    "RESULT_COLUMNS",
    "CohortJob",
    "CohortSummary",
    "build_table",
    "cached_model",
    "discover_jobs",
    "parts_dir_for",
    "run_cohort",
    "run_tasks",
    "score_job",
]

logger = logging.getLogger(__name__)

_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Columns of the results table, in order, with their Arrow type names.
RESULT_COLUMNS: dict[str, str] = {
    "key": "string",
    "source": "string",
    "series_uid": "string",
    "study_uid": "string",
    "patient_id": "string",
    "collection": "string",
    "format": "string",
    "manufacturer": "string",
    "dicom_body_part": "string",
    "predicted_tag": "string",
    "tag_agreement": "string",
    "n_slices": "int64",
    "score_min": "float64",
    "score_max": "float64",
    "reverse_z": "bool",
    "valid_z_spacing": "bool",
    "z_spacing_mm": "float64",
    "expected_z_spacing_mm": "float64",
    "slope_ratio": "float64",
    "status": "string",
    "error": "string",
    "error_type": "string",
    "read_s": "float64",
    "predict_s": "float64",
    "total_s": "float64",
    "worker": "string",
    "result_json": "string",
    "thumbnail_png": "string",
}


@dataclass(frozen=True)
class CohortJob:
    """One series to score.

    Attributes
    ----------
    key : str
        Unique, file-name safe identifier (SeriesInstanceUID when known).
    path : str
        NIfTI/NRRD file or DICOM folder.
    series_uid : str or None
        Series to read from a DICOM folder.
    meta : dict
        Known metadata (``collection``, ``dicom_body_part``, ``manufacturer``, ``study_uid``,
        ``patient_id``); the reader's header values fill what is missing.
    error : str or None
        Set when the job is already known to fail (e.g. a download that did not verify).
    """

    key: str
    path: str
    series_uid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class CohortSummary:
    """Outcome of :func:`run_cohort`: counts and the table path."""

    table: Path
    n_jobs: int
    n_scored: int
    n_skipped: int
    n_failed: int


def _safe_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip("._") or "series"


def parts_dir_for(table_path: str | os.PathLike[str]) -> Path:
    """Folder of the per-series files of a results table: ``results.parquet`` →
    ``results.parts/``."""
    path = Path(table_path)
    return path.with_name(path.name.removesuffix(".parquet") + ".parts")


# ------------------------------------------------------------------------------------------
# job discovery
# ------------------------------------------------------------------------------------------
def _is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_VOLUME_SUFFIXES)


def _dicom_leaf_dirs(root: Path) -> list[Path]:
    from bodyscore.io._common import is_dicom_file

    leaves = []
    for folder in sorted({root, *(p for p in root.rglob("*") if p.is_dir())}):
        files = [f for f in folder.iterdir() if f.is_file() and not _is_volume_file(f)]
        if any(is_dicom_file(f) for f in files[:20]):
            leaves.append(folder)
    return leaves


def _jobs_from_dir(root: Path) -> list[CohortJob]:
    from bodyscore.io import list_dicom_series

    jobs = [
        CohortJob(key=_safe_key(str(p.relative_to(root))), path=str(p))
        for p in sorted(root.rglob("*"))
        if _is_volume_file(p) and "_seg" not in p.name.lower()
    ]
    for leaf in _dicom_leaf_dirs(root):
        try:
            series = list_dicom_series(leaf)
        except BodyscoreError as exc:
            jobs.append(
                CohortJob(
                    key=_safe_key(str(leaf.relative_to(root))), path=str(leaf), error=str(exc)
                )
            )
            continue
        rel = str(leaf.relative_to(root)) if leaf != root else leaf.name
        for number, info in enumerate(series):
            if info.modality.upper() != "CT":
                continue
            key = info.uid or (rel if len(series) == 1 else f"{rel}-{number}")
            jobs.append(
                CohortJob(
                    key=_safe_key(key),
                    path=str(leaf),
                    series_uid=info.uid,
                    meta={
                        "dicom_body_part": info.body_part_examined or None,
                        "manufacturer": info.manufacturer or None,
                    },
                )
            )
    return jobs


def _jobs_from_manifest(path: Path) -> list[CohortJob]:
    from bodyscore.cohort.idc import read_manifest

    rows = read_manifest(path).to_pylist()
    if rows and "path" not in rows[0]:
        raise InputError(
            f"{path}: manifest has no 'path' column; download it first with "
            "'bodyscore idc download MANIFEST -o DIR' and run on DIR/downloaded.parquet"
        )
    jobs = []
    for row in rows:
        uid = str(row["SeriesInstanceUID"])
        status = row.get("status") or "ok"
        meta = {
            "collection": row.get("collection_id"),
            "dicom_body_part": row.get("BodyPartExamined"),
            "manufacturer": row.get("Manufacturer"),
            "study_uid": row.get("StudyInstanceUID"),
            "patient_id": row.get("PatientID"),
        }
        error = None if status == "ok" else f"download {status}: {row.get('message') or ''}".strip()
        jobs.append(
            CohortJob(
                key=_safe_key(uid), path=str(row["path"]), series_uid=uid, meta=meta, error=error
            )
        )
    return jobs


def discover_jobs(source: str | os.PathLike[str]) -> list[CohortJob]:
    """Series to score from a folder (NIfTI/NRRD files and DICOM series, recursively) or a
    downloaded manifest (``downloaded.parquet`` from ``bodyscore idc download``).

    Raises
    ------
    InputError
        Missing source, or keys that are not unique.
    """
    source = Path(source)
    if source.is_dir():
        downloaded = source / "downloaded.parquet"
        jobs = _jobs_from_manifest(downloaded) if downloaded.is_file() else _jobs_from_dir(source)
    elif source.is_file() and source.suffix == ".parquet":
        jobs = _jobs_from_manifest(source)
    else:
        raise InputError(
            f"{source}: not a folder or a .parquet manifest; give a folder of CT "
            "volumes or a downloaded manifest"
        )
    unique = {job.key: job for job in jobs}
    if len(unique) < len(jobs):
        logger.warning("%s: %d duplicate series ignored", source, len(jobs) - len(unique))
    return list(unique.values())


# ------------------------------------------------------------------------------------------
# one series (runs in a worker)
# ------------------------------------------------------------------------------------------
_MODEL_CACHE: dict[tuple[str, str], Any] = {}


def cached_model(name: str, backend: Any) -> Any:
    """The model ``name`` loaded once per worker process (:func:`bodyscore.model.load_model`).

    One network thread: a cohort runs one worker process per core, and each worker's reading
    and preprocessing threads run beside its network.
    """
    if (name, backend) not in _MODEL_CACHE:
        from bodyscore.model import load_model

        _MODEL_CACHE[(name, backend)] = load_model(name, backend=backend, threads=1)
    return _MODEL_CACHE[(name, backend)]


def _row_file(parts: Path, key: str) -> Path:
    return parts / f"{key}.row.json"


def _empty_row(job: CohortJob) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
    row.update(key=job.key, source=job.path, series_uid=job.series_uid)
    for name in ("collection", "dicom_body_part", "manufacturer", "study_uid", "patient_id"):
        row[name] = job.meta.get(name)
    return row


def _fill_from_result(row: dict[str, Any], result: Any, volume: Any) -> None:
    import numpy as np

    meta = volume.meta
    for column, key in (
        ("series_uid", "series_instance_uid"),
        ("study_uid", "study_instance_uid"),
        ("dicom_body_part", "body_part_examined"),
        ("manufacturer", "manufacturer"),
    ):
        if not row.get(column) and meta.get(key):
            row[column] = str(meta[key])
    cleaned = result.cleaned
    finite = cleaned[np.isfinite(cleaned)]
    row.update(
        format=str(meta.get("format", "")),
        predicted_tag=result.body_part_examined_tag,
        n_slices=result.n_slices,
        score_min=float(finite.min()) if finite.size else None,
        score_max=float(finite.max()) if finite.size else None,
        reverse_z=result.reverse_z_ordering,
        valid_z_spacing=result.valid_z_spacing,
        z_spacing_mm=result.z_spacing,
        expected_z_spacing_mm=result.expected_z_spacing,
        slope_ratio=result.slope_ratio,
        status="ok",
    )
    row["tag_agreement"] = compare_tags(row.get("dicom_body_part"), row["predicted_tag"])


def score_job(
    job: CohortJob, *, model: str, backend: str, parts_dir: str, thumbnails: bool = True
) -> dict[str, Any]:
    """Score one series and write its files; never raises for a bad series.

    Writes ``<parts>/<key>.json`` (the :class:`~bodyscore.result.ScoreResult`),
    ``<parts>/<key>.png`` (thumbnail) and last ``<parts>/<key>.row.json`` (the table row).

    Returns
    -------
    dict
        The row, with :data:`RESULT_COLUMNS` keys; ``status`` is ``"ok"`` or ``"error"``.
    """
    import socket

    from bodyscore.export.json_writer import write_json

    parts = Path(parts_dir)
    row = _empty_row(job)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        if job.error is not None:
            raise InputError(job.error)
        from bodyscore.inference import score_input
        from bodyscore.io import read_volume

        volume: Any = job.path  # without a thumbnail, a NIfTI file is scored while read
        if thumbnails:
            volume = read_volume(job.path, series_uid=job.series_uid)
            row["read_s"] = time.perf_counter() - start
        tick = time.perf_counter()
        result, volume = score_input(volume, cached_model(model, backend),
                                     series_uid=job.series_uid)
        row["predict_s"] = time.perf_counter() - tick
        _fill_from_result(row, result, volume)
        row["result_json"] = str(write_json(result, parts / f"{job.key}.json"))
        if thumbnails and isinstance(volume, Volume):
            row["thumbnail_png"] = _thumbnail(result, volume, parts / f"{job.key}.png")
    except Exception as exc:
        row.update(
            status="error",
            error=str(exc).splitlines()[0] if str(exc) else repr(exc),
            error_type=type(exc).__name__,
        )
        if not isinstance(exc, BodyscoreError):
            logger.warning("%s: unexpected %s", job.path, type(exc).__name__, exc_info=True)
    row["total_s"] = time.perf_counter() - start
    atomic_write_text(_row_file(parts, job.key), json.dumps(row, allow_nan=False) + "\n")
    return row


def _thumbnail(result: Any, volume: Any, path: Path) -> str | None:
    from bodyscore.export.plots import write_png

    try:
        return str(write_png(result, path, volume.canonical()))
    except BodyscoreError as exc:  # matplotlib missing: no thumbnail, not a failure
        logger.info("%s: no thumbnail (%s)", path, exc)
        return None


# ------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------
def _read_rows(parts: Path, keys: Iterable[str] | None) -> list[dict[str, Any]]:
    wanted = None if keys is None else set(keys)
    rows = []
    for file in sorted(parts.glob("*.row.json")):
        key = file.name.removesuffix(".row.json")
        if wanted is not None and key not in wanted:
            continue
        try:
            rows.append(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            logger.warning("%s: unreadable row file ignored (series will be re-run)", file)
    return rows


def build_table(
    parts_dir: str | os.PathLike[str],
    table_path: str | os.PathLike[str],
    *,
    keys: Iterable[str] | None = None,
) -> Path:
    """(Re)build the Parquet results table from the row files, atomically, sorted by key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(_read_rows(Path(parts_dir), keys), key=lambda r: str(r["key"]))
    schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in RESULT_COLUMNS.items()])
    columns = {name: [row.get(name) for row in rows] for name in RESULT_COLUMNS}
    table = pa.table(columns, schema=schema)
    with atomic_path(table_path) as tmp:
        pq.write_table(table, tmp)
    return Path(table_path)


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------
def _make_client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise InputError("cohort runs need dask.distributed; pip install 'bodyscore[idc]'") from exc
    if not logger.isEnabledFor(logging.DEBUG):  # dask's INFO chatter is not for users
        for name in ("distributed", "distributed.nanny", "distributed.scheduler"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit=0,
    )
    return Client(cluster), cluster


def run_tasks(
    function: Callable[..., Any],
    items: Sequence[Any],
    *,
    keys: Sequence[str],
    workers: int = 2,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """Run ``function(item, **kwargs)`` for every item on a Dask cluster; yield each result as
    it completes.

    ``function`` must be importable by the workers (a module-level function), never raise for a
    bad item, and write its own outputs (so that a killed run loses nothing it finished).

    Parameters
    ----------
    function : callable
        ``function(item, **kwargs) -> result``.
    items : sequence
        Picklable work items.
    keys : sequence of str
        One unique Dask task key per item.
    workers : int
        ``LocalCluster`` worker processes (1 thread each), at most one per item; ignored with
        ``scheduler``.
    scheduler : str, optional
        Address of an existing Dask scheduler.
    progress : callable, optional
        ``progress(done, total)`` after each item.
    """
    if not items:
        return
    client, cluster = _make_client(max(1, min(workers, len(items))), scheduler)
    try:
        from dask.distributed import as_completed

        futures = [
            client.submit(function, item, key=key, pure=False, **kwargs)
            for item, key in zip(items, keys, strict=True)
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            if progress is not None:
                progress(done, len(items))
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_cohort(
    source: str | os.PathLike[str],
    table_path: str | os.PathLike[str],
    *,
    model: str = "default",
    backend: str = "auto",
    workers: int = 2,
    scheduler: str | None = None,
    retry_failed: bool = False,
    thumbnails: bool = True,
    progress: Callable[[int, int], None] | None = None,
    jobs: Sequence[CohortJob] | None = None,
) -> CohortSummary:
    """Score every series of a cohort on a Dask cluster and write the results table.

    Parameters
    ----------
    source : path-like
        Folder of volumes / DICOM series, or a downloaded manifest (see :func:`discover_jobs`).
    table_path : path-like
        Output Parquet table; per-series files go to :func:`parts_dir_for` ``(table_path)``.
    model, backend : str
        Model name or package folder, and backend, as for :func:`bodyscore.model.load_model`.
    workers : int
        Worker processes of the ``LocalCluster`` (1 thread each); ignored with ``scheduler``.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``).
    retry_failed : bool
        Re-run series whose previous row is an error (default: keep them).
    thumbnails : bool
        Write a PNG per series (needed by the report's suspicious-series lists).
    progress : callable, optional
        ``progress(done, total)`` after each series.
    jobs : sequence of CohortJob, optional
        Use these instead of discovering them from ``source``.
    """
    all_jobs = list(jobs) if jobs is not None else discover_jobs(source)
    parts = parts_dir_for(table_path)
    parts.mkdir(parents=True, exist_ok=True)
    done_rows = {r["key"]: r for r in _read_rows(parts, [j.key for j in all_jobs])}
    todo = [
        j
        for j in all_jobs
        if j.key not in done_rows or (retry_failed and done_rows[j.key].get("status") != "ok")
    ]
    n_failed = 0
    for row in run_tasks(
        score_job,
        todo,
        keys=[f"bodyscore-{job.key}" for job in todo],
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        model=str(model),
        backend=backend,
        parts_dir=str(parts),
        thumbnails=thumbnails,
    ):
        if row["status"] != "ok":
            n_failed += 1
            logger.warning("%s: %s", row["source"], row["error"])
    build_table(parts, table_path, keys=[j.key for j in all_jobs])
    n_failed += sum(
        1
        for j in all_jobs
        if j.key in done_rows and j not in todo and done_rows[j.key].get("status") != "ok"
    )
    return CohortSummary(
        table=Path(table_path),
        n_jobs=len(all_jobs),
        n_scored=len(todo),
        n_skipped=len(all_jobs) - len(todo),
        n_failed=n_failed,
    )


def summary_dict(summary: CohortSummary) -> dict[str, Any]:
    """The summary as a JSON-ready dict."""
    data = asdict(summary)
    data["table"] = str(summary.table)
    return data
