"""Real-world DICOM end to end: every shared series, multi-frame CT (one and several files), an
anonymised series with empty data-set UIDs and one with per-slice frames of reference each give
JSON + SEG + SR that highdicom reads, that dciodvfy passes with 0 errors, whose SEG frames refer
to the right source frames and whose SR reads back to the same result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from bodyscore.cli import main
from helpers.dicom_cases import (
    DCIODVFY,
    dciodvfy_errors,
    empty_sop_uids,
    make_multiframe,
    own_frame_of_reference,
    rewrite_series,
)

SHARED_SERIES = ("ge_head_tilt18.5_varspacing", "lidc0314_chest_ffs_derived", "ts_petct_slab")
MADE_SERIES = ("enhanced_one_file", "enhanced_two_files", "ge_empty_sop_uids",
               "ge_own_frames_of_reference")
#: A note each case must state in the JSON warnings (the choice made for the SEG/SR).
EXPECTED_NOTE = {
    "ge_head_tilt18.5_varspacing": "DeidentificationMethod is empty",
    "lidc0314_chest_ffs_derived": "treated as one frame of reference",
    "ts_petct_slab": "identified by the file meta information",
    "ge_empty_sop_uids": "identified by the file meta information",
    "ge_own_frames_of_reference": "treated as one frame of reference",
}


@pytest.fixture(scope="module")
def default_model() -> str:
    import bodyscore
    from bodyscore.errors import ModelError

    try:
        bodyscore.load_model("default")
    except ModelError:
        pytest.skip("the default model package is not installed")
    return "default"


@pytest.fixture(scope="module")
def series_dirs(ct_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dicom = ct_dir / "dicom"
    made = tmp_path_factory.mktemp("series")
    lidc, ge = dicom / "lidc0314_chest_ffs_derived", dicom / "ge_head_tilt18.5_varspacing"
    dirs = {name: dicom / name for name in SHARED_SERIES}
    dirs["enhanced_one_file"] = make_multiframe(lidc, made / "enhanced_one_file", n_slices=40)
    dirs["enhanced_two_files"] = make_multiframe(
        lidc, made / "enhanced_two_files", n_slices=40, n_files=2
    )
    dirs["ge_empty_sop_uids"] = rewrite_series(ge, made / "ge_empty_sop_uids", empty_sop_uids)
    dirs["ge_own_frames_of_reference"] = rewrite_series(
        ge, made / "ge_own_frames_of_reference", own_frame_of_reference
    )
    return dirs


@pytest.fixture(scope="module")
def written(series_dirs: dict[str, Path], default_model: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``bodyscore dicom --seg --sr`` of every case: paths of its JSON, SEG and SR."""
    out = tmp_path_factory.mktemp("out")
    cases = {}
    for name, folder in series_dirs.items():
        assert main(["dicom", str(folder), "-o", str(out / name), "--seg", "--sr",
                     "--model", default_model]) == 0, name
        stem = folder.name
        cases[name] = {
            "source": folder,
            "json": out / name / f"{stem}.json",
            "seg": out / name / f"{stem}_seg.dcm",
            "sr": out / name / f"{stem}_sr.dcm",
        }
    return cases


ALL = SHARED_SERIES + MADE_SERIES


def _source_positions(folder: Path) -> dict[tuple[str, int | None], np.ndarray]:
    """ImagePositionPatient of every (SOPInstanceUID, frame number or None) of a series."""
    from bodyscore.io.dicom import frame_attributes, sop_uids

    positions = {}
    for file in folder.iterdir():
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        uid = sop_uids(ds)[1]
        if "PerFrameFunctionalGroupsSequence" in ds:
            for f in range(1, int(ds.NumberOfFrames) + 1):
                ipp = frame_attributes(ds, f).ImagePositionPatient
                positions[uid, f] = np.asarray(ipp, dtype=float)
        else:
            positions[uid, None] = np.asarray(ds.ImagePositionPatient, dtype=float)
    return positions


@pytest.mark.parametrize("name", ALL)
def test_seg_frames_refer_to_the_source_frame_at_their_position(written, name: str) -> None:
    import highdicom as hd

    case = written[name]
    seg = hd.seg.segread(case["seg"])
    assert seg.number_of_segments >= 1
    positions = _source_positions(case["source"])
    multiframe = name.startswith("enhanced")
    for item in seg.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame = int(ref.ReferencedFrameNumber) if multiframe else None
        if not multiframe:
            assert "ReferencedFrameNumber" not in ref
        source = positions[str(ref.ReferencedSOPInstanceUID), frame]
        here = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(here, source, atol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_sr_reads_back_to_the_json_result(written, name: str, tmp_path: Path) -> None:
    from bodyscore.export.sr import read_measurement_report
    from bodyscore.result import ScoreResult

    case = written[name]
    expected = ScoreResult.from_json(case["json"])
    back = read_measurement_report(case["sr"])
    assert back.n_slices == expected.n_slices
    np.testing.assert_allclose(back.cleaned, expected.cleaned, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(back.unprocessed, expected.unprocessed, rtol=1e-9,
                               equal_nan=True)
    np.testing.assert_allclose(back.z, expected.z, rtol=1e-9)
    assert dict(back.body_part_examined) == dict(expected.body_part_examined)
    assert back.body_part_examined_tag == expected.body_part_examined_tag
    assert back.reverse_z_ordering == expected.reverse_z_ordering
    assert back.valid_z_spacing == expected.valid_z_spacing
    for field in ("expected_slope", "observed_slope", "slope_ratio", "expected_z_spacing",
                  "z_spacing"):
        assert getattr(back, field) == pytest.approx(getattr(expected, field), rel=1e-9)
    assert back.model["name"] == expected.model["name"]
    # the CLI writes the same result as JSON
    out = tmp_path / "audit"
    assert main(["dicom", "--read-sr", str(case["sr"]), "-o", str(out)]) == 0
    again = json.loads((out / f"{case['sr'].name[:-4]}.json").read_text())
    assert again["body part examined tag"] == expected.body_part_examined_tag
    assert again["input"]["format"] == "dicom-sr"


@pytest.mark.parametrize("name", ALL)
def test_json_states_the_choices_made(written, name: str) -> None:
    data = json.loads(written[name]["json"].read_text())
    assert data["input"]["format"] == "dicom"
    if name in EXPECTED_NOTE:
        assert any(EXPECTED_NOTE[name] in w for w in data["warnings"]), data["warnings"]


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["seg", "sr"])
@pytest.mark.parametrize("name", ALL)
def test_dciodvfy_finds_no_errors(written, name: str, kind: str) -> None:
    assert dciodvfy_errors(written[name][kind]) == []


def test_sr_declares_its_private_coding_scheme(written) -> None:
    from bodyscore.export.sr import BODYSCORE_SCHEME

    sr = pydicom.dcmread(written["ge_head_tilt18.5_varspacing"]["sr"])
    designators = [i.CodingSchemeDesignator for i in sr.CodingSchemeIdentificationSequence]
    assert BODYSCORE_SCHEME in designators


def test_empty_series_uids_get_one_derived_uid(written) -> None:
    """ts_petct_slab has empty Study/Series UIDs too: SEG and SR share one derived study, and
    the SR references the instances by their file meta UIDs."""
    seg = pydicom.dcmread(written["ts_petct_slab"]["seg"])
    sr = pydicom.dcmread(written["ts_petct_slab"]["sr"])
    assert seg.StudyInstanceUID == sr.StudyInstanceUID != ""
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    referenced = {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSOPSequence}
    meta = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
            for f in written["ts_petct_slab"]["source"].iterdir()}
    assert referenced == meta


def test_read_sr_refuses_other_objects(written, tmp_path: Path, capsys) -> None:
    code = main(["dicom", "--read-sr", str(written["lidc0314_chest_ffs_derived"]["seg"]),
                 "-o", str(tmp_path / "x")])
    assert code == 1
    err = capsys.readouterr().err
    assert "structured report" in err or "not a bodyscore SR" in err
