"""HTML report: hand-made results rows, metadata-only IDC view, headless Chromium screenshot
without console errors; tag comparison rules."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bodyscore.cli import main
from bodyscore.cohort.report import render_report, viewer_url
from bodyscore.cohort.runner import RESULT_COLUMNS
from bodyscore.cohort.tags import compare_tags, dicom_tag_parts

# a 1x1 PNG
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(
    ("dicom", "predicted", "expected"),
    [
        ("LUNG", "CHEST-ABDOMEN", "agree"),
        ("CHESTABDPELVIS", "ABDOMEN-PELVIS", "agree"),
        ("Chest/Abd/Pelvis", "PELVIS", "agree"),
        ("HEAD", "CHEST", "wrong"),
        ("PELVIS", "HEAD-NECK", "wrong"),
        ("", "CHEST", "missing"),
        (None, "CHEST", "missing"),
        ("PARTIALBODY", "CHEST", "unmapped"),
        ("CHEST", "NONE", "no prediction"),
    ],
)
def test_compare_tags(dicom: str | None, predicted: str, expected: str) -> None:
    assert compare_tags(dicom, predicted) == expected


def test_dicom_tag_parts() -> None:
    assert dicom_tag_parts("HEADNECK") == ("HEAD", "NECK")
    assert dicom_tag_parts("  ") == ()
    assert dicom_tag_parts("WRIST") is None


def _row(key: str, **values: object) -> dict:
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(
        key=key,
        status="ok",
        series_uid=f"1.2.{len(key)}",
        study_uid="1.2.840.1",
        z_spacing_mm=2.0,
        expected_z_spacing_mm=2.1,
        reverse_z=False,
        valid_z_spacing=True,
    )
    row.update(values)
    row["tag_agreement"] = compare_tags(row["dicom_body_part"], row["predicted_tag"])
    return row


@pytest.fixture
def results_table(tmp_path: Path) -> Path:
    thumb = tmp_path / "t.png"
    thumb.write_bytes(_PNG)
    rows = [
        _row(
            "a",
            dicom_body_part="CHEST",
            predicted_tag="CHEST-ABDOMEN",
            collection="nlst",
            manufacturer="SIEMENS",
        ),
        _row(
            "b",
            dicom_body_part=None,
            predicted_tag="HEAD-NECK",
            collection="nlst",
            manufacturer="GE",
        ),
        _row(
            "c",
            dicom_body_part="HEAD",
            predicted_tag="ABDOMEN-PELVIS",
            collection="tcga",
            manufacturer="GE",
            reverse_z=True,
            valid_z_spacing=False,
            thumbnail_png=str(thumb),
        ),
        _row("d", status="error", error="d.nii.gz: truncated file; re-download it"),
    ]
    schema = pa.schema([(n, pa.type_for_alias(t)) for n, t in RESULT_COLUMNS.items()])
    path = tmp_path / "results.parquet"
    pq.write_table(pa.table({n: [r[n] for r in rows] for n in RESULT_COLUMNS}, schema=schema), path)
    return path


def test_report_content(results_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(results_table), "-o", str(out)]) == 0
    text = out.read_text()
    assert "Cohort: 4 series (3 scored, 1 failed)" in text
    assert "<h3>Reversed z-order (1)</h3>" in text
    assert "<h3>Tag mismatch (1)</h3>" in text
    assert "data:image/png;base64," in text
    assert html.escape(viewer_url("1.2.840.1", "1.2.1") or "") in text
    # confusion table cell: DICOM HEAD predicted ABDOMEN-PELVIS counted once
    assert re.search(r"<th class=\"l\">HEAD</th><td>1</td>", text)
    # missing / wrong share by collection: nlst 50 % missing, tcga 100 % wrong
    assert '<td class="l">nlst</td><td>2</td><td>50%</td><td>0%</td><td>50%</td>' in text
    assert '<td class="l">tcga</td><td>1</td><td>0%</td><td>100%</td><td>0%</td>' in text
    assert "truncated file" in text
    # self-contained: no external resource
    assert not re.search(r"(src|href)=\"(https?:)?//(?!viewer\.imaging)", text)


def test_viewer_url() -> None:
    assert viewer_url("1.2", "3.4") == (
        "https://viewer.imaging.datacommons.cancer.gov/v3/viewer/?StudyInstanceUIDs=1.2"
        "&SeriesInstanceUIDs=3.4"
    )
    assert viewer_url(None, "3.4") is None


def test_idc_metadata_view_and_chromium_screenshot(results_table: Path, tmp_path: Path) -> None:
    pytest.importorskip("idc_index_data")
    out = tmp_path / "report.html"
    assert main(["report", str(results_table), "--idc-metadata", "-o", str(out)]) == 0
    text = out.read_text()
    match = re.search(r"IDC index: all (\d+) CT series", text)
    assert match
    assert int(match.group(1)) > 100_000
    assert "Missing BodyPartExamined per collection" in text
    assert "nlst" in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            "--enable-logging=stderr",
            "--v=0",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_render_report_without_anything_is_just_the_header() -> None:
    text = render_report()
    assert text.startswith("<!DOCTYPE html>")
    assert "<h2>" not in text
