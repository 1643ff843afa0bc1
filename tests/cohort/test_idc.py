"""IDC selection on the real shipped index (offline) and download + verification with an
injected downloader (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("duckdb")
pytest.importorskip("idc_index_data")

import pyarrow as pa

from bodyscore.cli import main
from bodyscore.cohort import idc
from bodyscore.cohort.idc import (
    SelectionCriteria,
    download_series,
    read_manifest,
    select_series,
    verify_series,
)
from bodyscore.errors import DownloadError, InputError


def test_stratified_selection_balances_manufacturers() -> None:
    table = select_series(SelectionCriteria(stratify=("manufacturer",), max_series=6))
    rows = table.to_pylist()
    assert len(rows) == 6
    assert {r["Modality"] for r in rows} == {"CT"}
    # round robin over strata: the first 6 rows come from 6 different manufacturers
    assert len({r["Manufacturer"] for r in rows}) == 6
    assert all(r["instanceCount"] > 0 for r in rows)
    again = select_series(SelectionCriteria(stratify=("manufacturer",), max_series=6))
    assert again.column("SeriesInstanceUID").to_pylist() == [r["SeriesInstanceUID"] for r in rows]


def test_filters_and_missing_tag() -> None:
    rows = select_series(
        SelectionCriteria(collections=("PHANTOM_FDA",), body_parts=("none",), max_series=5)
    ).to_pylist()
    assert rows
    assert all(r["collection_id"] == "phantom_fda" for r in rows)
    assert all(not (r["BodyPartExamined"] or "").strip() for r in rows)


def test_sql_file_through_cli(tmp_path: Path) -> None:
    sql = tmp_path / "q.sql"
    sql.write_text(
        "SELECT SeriesInstanceUID FROM index WHERE collection_id = 'nlst' "
        "AND Modality = 'CT' LIMIT 3;"
    )
    out = tmp_path / "manifest.parquet"
    assert main(["idc", "select", "--sql", str(sql), "-o", str(out)]) == 0
    rows = read_manifest(out).to_pylist()
    assert len(rows) == 3
    assert {r["collection_id"] for r in rows} == {"nlst"}


def test_geometry_filter_without_the_geometry_index_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("platformdirs.user_data_dir", lambda *a, **k: str(tmp_path))
    with pytest.raises(InputError, match="only available online") as info:
        select_series(SelectionCriteria(slice_thickness_mm=(1.0, 2.0)))
    assert "\n" not in str(info.value)
    assert (
        main(["idc", "select", "--pixel-spacing", "0.5:0.8", "-o", str(tmp_path / "m.parquet")])
        != 0
    )


def test_geometry_filter_with_a_local_geometry_index(tmp_path: Path) -> None:
    first = select_series(SelectionCriteria(collections=("nlst",), max_series=4)).to_pylist()
    uids = [r["SeriesInstanceUID"] for r in first]
    geometry = tmp_path / "ct_index.parquet"
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "SeriesInstanceUID": uids,
                "SliceThickness": [1.0, 2.5, 5.0, 1.25],
                "PixelSpacing_row_mm": [0.7, 0.7, 0.9, 0.6],
            }
        ),
        geometry,
    )
    rows = select_series(
        SelectionCriteria(
            collections=("nlst",), slice_thickness_mm=(1.0, 2.5), pixel_spacing_mm=(0.65, 1.0)
        ),
        geometry_index=geometry,
    ).to_pylist()
    assert sorted(r["SeriesInstanceUID"] for r in rows) == sorted(uids[:2])


def test_unknown_stratify_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match="--stratify"):
        select_series(SelectionCriteria(stratify=("colour",)))


# ------------------------------------------------------------------------------------------
def _write_series(folder: Path, uid: str, n: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.Modality = "CT"
        ds.Rows = ds.Columns = 2
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.zeros((2, 2), np.int16).tobytes()
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)


def _manifest(counts: dict[str, int]) -> pa.Table:
    return pa.table(
        {
            "SeriesInstanceUID": list(counts),
            "instanceCount": list(counts.values()),
            "collection_id": ["c"] * len(counts),
        }
    )


def test_download_verifies_and_resumes(tmp_path: Path) -> None:
    manifest = _manifest({"1.1": 3, "1.2": 4, "1.3": 2, "1.4": 2, "1.5": 1})
    calls: list[str] = []

    def fake(uid: str, folder: Path) -> None:
        calls.append(uid)
        if uid == "1.1":
            _write_series(folder, uid, 3)
        elif uid == "1.2":
            _write_series(folder, uid, 2)  # exits fine, two instances missing
        elif uid == "1.3":
            raise RuntimeError("s5cmd: connection reset")
        elif uid == "1.4":
            folder.mkdir(parents=True)
            (folder / "x.dcm").write_bytes(b"garbage")
        # 1.5: "succeeds" having downloaded nothing

    statuses = {s.series_uid: s for s in download_series(manifest, tmp_path, downloader=fake)}
    assert {u: s.status for u, s in statuses.items()} == {
        "1.1": "ok",
        "1.2": "incomplete",
        "1.3": "failed",
        "1.4": "unreadable",
        "1.5": "missing",
    }
    assert statuses["1.2"].message == "2 of 4 instances"
    assert "connection reset" in statuses["1.3"].message
    assert (tmp_path / ".status" / "1.1.json").is_file()
    table = read_manifest(tmp_path / "downloaded.parquet").to_pylist()
    assert [r["status"] for r in table] == ["ok", "incomplete", "failed", "unreadable", "missing"]

    calls.clear()
    download_series(manifest, tmp_path, downloader=fake)
    assert calls == ["1.2", "1.3", "1.4", "1.5"]  # the verified series is not fetched again


def test_verify_rejects_files_of_another_series(tmp_path: Path) -> None:
    _write_series(tmp_path / "s", "9.9", 2)
    status = verify_series(tmp_path / "s", "1.2.3", 2)
    assert status.status == "unreadable"
    assert "belongs to series 9.9" in status.message


def test_no_network_gives_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idc, "network_available", lambda *a, **k: False)
    with pytest.raises(DownloadError, match="no network"):
        download_series(_manifest({"1.1": 1}), tmp_path)
    manifest = tmp_path / "m.parquet"
    idc.write_manifest(_manifest({"1.1": 1}), manifest)
    assert main(["idc", "download", str(manifest), "-o", str(tmp_path / "d")]) != 0
