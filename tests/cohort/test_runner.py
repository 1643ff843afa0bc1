"""Cohort runner on a 2-worker Dask LocalCluster: real volumes, reversed and corrupted copies,
SIGKILL mid-run and resume without duplicate or lost rows; DuckDB queries on the table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")
pytest.importorskip("duckdb")

from bodyscore.cli import main
from bodyscore.cohort.runner import (
    RESULT_COLUMNS,
    build_table,
    discover_jobs,
    parts_dir_for,
    run_cohort,
)
from bodyscore.cohort.table import query_results
from bodyscore.errors import InputError

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> Path:
    """Two small NIfTI volumes, one DICOM series, a z-reversed copy and two corrupted copies."""
    import nibabel as nib
    import numpy as np

    root = tmp_path_factory.mktemp("cohort")
    for name in ("ts_petct_slab.nii.gz", "pyradiomics_lung1_chest.nii.gz"):
        shutil.copy(ct_dir / name, root / name)
    shutil.copytree(ct_dir / "dicom" / "ts_petct_slab", root / "dicom_slab")
    image = nib.load(ct_dir / "pyradiomics_lung1_chest.nii.gz")
    reversed_data = np.asarray(image.dataobj)[:, :, ::-1]  # anatomy upside down, same affine
    nib.save(nib.Nifti1Image(reversed_data, image.affine), root / "reversed_lung1.nii.gz")
    data = (ct_dir / "ts_petct_slab.nii.gz").read_bytes()
    (root / "corrupt_truncated.nii.gz").write_bytes(data[: len(data) // 3])
    broken = root / "dicom_broken"
    shutil.copytree(ct_dir / "dicom" / "ts_petct_slab", broken)
    for file in sorted(broken.iterdir())[:5]:  # pixel data cut short in a quarter of the files
        raw = file.read_bytes()
        file.write_bytes(raw[: len(raw) - 200_000])
    return root


def _rows(table: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(table).to_pylist()


def test_discover_jobs_finds_volumes_and_dicom_series(cohort_dir: Path) -> None:
    keys = sorted(job.key for job in discover_jobs(cohort_dir))
    assert keys == [
        "corrupt_truncated.nii.gz",
        "dicom_broken",
        "dicom_slab",
        "pyradiomics_lung1_chest.nii.gz",
        "reversed_lung1.nii.gz",
        "ts_petct_slab.nii.gz",
    ]


def test_discover_jobs_rejects_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        discover_jobs(tmp_path / "nothing.txt")


def test_killed_run_resumes_without_duplicate_or_lost_rows(
    cohort_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    table = tmp_path / "results.parquet"
    parts = parts_dir_for(table)
    n_jobs = len(discover_jobs(cohort_dir))
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = "import sys; from bodyscore.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "-q",
            "cohort",
            "run",
            str(cohort_dir),
            "-o",
            str(table),
            "--workers",
            "2",
            "--model",
            str(tiny_model_dir),
            "--no-thumbnails",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(parts.glob("*.row.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its Dask workers, mid-run
    proc.wait(timeout=30)
    done_at_kill = {p.name for p in parts.glob("*.row.json")}
    assert 1 <= len(done_at_kill) < n_jobs
    assert not table.exists()

    summary = run_cohort(cohort_dir, table, model=str(tiny_model_dir), workers=2, thumbnails=False)
    rows = _rows(table)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == n_jobs
    assert summary.n_skipped == len(done_at_kill)
    assert summary.n_scored == n_jobs - len(done_at_kill)
    by_key = {r["key"]: r for r in rows}
    assert by_key["corrupt_truncated.nii.gz"]["status"] == "error"
    assert by_key["dicom_broken"]["status"] == "error"
    assert by_key["dicom_broken"]["error_type"]
    assert summary.n_failed == 2
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    for row in ok:
        assert Path(row["result_json"]).is_file()
        assert json.loads(Path(row["result_json"]).read_text())["body part examined tag"]
        assert row["n_slices"] > 0
        assert row["total_s"] > 0
    assert by_key["dicom_slab"]["dicom_body_part"] == "PARTIALBODY"
    assert by_key["dicom_slab"]["manufacturer"] == "SIEMENS"
    assert by_key["dicom_slab"]["format"] == "dicom"
    assert list(rows[0]) == list(RESULT_COLUMNS)
    # the reversed copy is the same anatomy upside down: opposite reverse flag
    assert (
        by_key["reversed_lung1.nii.gz"]["reverse_z"]
        != by_key["pyradiomics_lung1_chest.nii.gz"]["reverse_z"]
    )

    # a second run skips everything and rebuilds the same table
    again = run_cohort(cohort_dir, table, model=str(tiny_model_dir), workers=2)
    assert (again.n_scored, again.n_skipped) == (0, n_jobs)
    assert [r["key"] for r in _rows(table)] == keys

    answer = query_results(
        table, "SELECT status, count(*) AS n FROM results GROUP BY status ORDER BY status"
    ).to_pylist()
    assert answer == [{"status": "error", "n": 2}, {"status": "ok", "n": 4}]
    assert main(["cohort", "query", str(table), "SELECT count(*) AS n FROM results"]) == 0


def test_build_table_ignores_half_written_and_foreign_parts(tmp_path: Path) -> None:
    parts = tmp_path / "r.parts"
    parts.mkdir()
    (parts / "a.row.json").write_text(json.dumps({"key": "a", "status": "ok", "n_slices": 3}))
    (parts / "b.row.json").write_text('{"key": "b", "sta')  # torn file: ignored, re-run later
    (parts / "c.row.json").write_text(json.dumps({"key": "c", "status": "error"}))
    rows = _rows(build_table(parts, tmp_path / "r.parquet", keys=["a", "b"]))
    assert [(r["key"], r["n_slices"], r["error"]) for r in rows] == [("a", 3, None)]


def test_query_reports_bad_sql_in_one_line(tmp_path: Path) -> None:
    table = (
        build_table(tmp_path / "p", tmp_path / "r.parquet")
        if (tmp_path / "p").mkdir() is None
        else None
    )
    assert table is not None
    with pytest.raises(InputError, match="query failed") as info:
        query_results(table, "SELEC nonsense")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="not found"):
        query_results(tmp_path / "missing.parquet", "SELECT 1")
