"""Anatomy cross-check with SEG (highdicom) and RTSTRUCT (pydicom) objects made by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bodyscore.cohort.anatomy import (
    StructureExtent,
    check_structures,
    expected_regions,
    read_structure_extents,
    write_anatomy_table,
)
from bodyscore.errors import InputError
from bodyscore.result import ScoreResult

hd = pytest.importorskip("highdicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

N_SLICES, STEP_MM = 10, 10.0
SERIES_UID = generate_uid()


def _ct_series() -> list[Dataset]:
    study, frame = generate_uid(), generate_uid()
    out = []
    for k in range(N_SLICES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, SERIES_UID, frame
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "p", "p^", "", "O"
        ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "1", "20200101", "", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, k * STEP_MM]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], STEP_MM
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
        out.append(ds)
    return out


def _segment(number: int, label: str, code: str, meaning: str) -> object:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept(code, "SCT", meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def _seg_file(tmp_path: Path, ct: list[Dataset]) -> Path:
    mask = np.zeros((N_SLICES, 4, 4, 3), dtype=bool)
    mask[5:8, 1:3, 1:3, 0] = True  # lung at z = 50..70 mm
    mask[0:3, 1:3, 1:3, 1] = True  # liver at z = 0..20 mm
    mask[5:8, 1:3, 1:3, 2] = True  # "brain" at z = 50..70 mm: wrong place
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _segment(1, "Lung", "39607008", "Lung"),
            _segment(2, "Liver", "10200004", "Liver"),
            _segment(3, "Brain", "12738006", "Brain"),
        ],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    return path


def _rtstruct_file(tmp_path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "RTSTRUCT"
    series = Dataset()
    series.SeriesInstanceUID = SERIES_UID
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    rois, contours = [], []
    for number, name, z_values in (
        (1, "Heart", (40.0, 60.0)),
        (2, "Bladder", (60.0, 80.0)),
        (3, "GTV", (10.0,)),
    ):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        rois.append(roi)
        contour_items = []
        for z in z_values:
            item = Dataset()
            item.ContourData = [1.0, 1.0, z, 2.0, 1.0, z, 2.0, 2.0, z]
            contour_items.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ContourSequence = Sequence(contour_items)
        contours.append(roi_contour)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    path = tmp_path / "rtstruct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _result() -> ScoreResult:
    """Slices at z = 0..90 mm: 0-3 abdomen, 4-9 chest (hand-made)."""
    scores = [40.0 + 3 * k for k in range(N_SLICES)]
    return ScoreResult(
        cleaned_scores=scores,
        z_mm=[k * STEP_MM for k in range(N_SLICES)],
        unprocessed_scores=scores,
        body_part_examined={"abdomen": (0, 1, 2, 3), "chest": (4, 5, 6, 7, 8, 9)},
        body_part_examined_tag="CHEST-ABDOMEN",
        lookup_table={},
        reverse_z_ordering=False,
        valid_z_spacing=True,
        expected_slope=0.3,
        observed_slope=0.3,
        slope_ratio=1.0,
        expected_z_spacing=STEP_MM,
        z_spacing=STEP_MM,
        input={"series_instance_uid": SERIES_UID},
    )


def test_seg_extents_and_check(tmp_path: Path) -> None:
    extents = read_structure_extents(_seg_file(tmp_path, _ct_series()))
    by_name = {e.structure: e for e in extents}
    assert (by_name["Lung"].z_min_mm, by_name["Lung"].z_max_mm) == (50.0, 70.0)
    assert (by_name["Liver"].z_min_mm, by_name["Liver"].z_max_mm) == (0.0, 20.0)
    assert by_name["Lung"].code == "39607008"
    assert by_name["Lung"].series_uid == SERIES_UID
    checks = {c.structure: c for c in check_structures(_result(), extents)}
    assert checks["Lung"].agrees
    assert checks["Lung"].share == 1.0
    assert checks["Liver"].agrees
    assert checks["Liver"].found == ("abdomen",)
    assert not checks["Brain"].agrees
    assert checks["Brain"].share == 0.0
    assert "expected in head" in checks["Brain"].message


def test_rtstruct_extents_and_check(tmp_path: Path) -> None:
    extents = read_structure_extents(_rtstruct_file(tmp_path))
    assert [(e.structure, e.z_min_mm, e.z_max_mm) for e in extents] == [
        ("Heart", 40.0, 60.0),
        ("Bladder", 60.0, 80.0),
        ("GTV", 10.0, 10.0),
    ]
    checks = {c.structure: c for c in check_structures(_result(), extents)}
    assert checks["Heart"].agrees
    assert not checks["Bladder"].agrees  # pelvis organ in chest slices
    assert checks["GTV"].agrees
    assert checks["GTV"].share is None


def test_structure_outside_the_scan_disagrees() -> None:
    extent = StructureExtent(SERIES_UID, "Lung", "", 500.0, 600.0, "x")
    (check,) = check_structures(_result(), [extent])
    assert not check.agrees
    assert "outside" in check.message


def test_expected_regions_by_code_then_name() -> None:
    assert expected_regions("whatever", "39607008") == ("chest",)
    assert expected_regions("Kidney_L") == ("abdomen",)
    assert expected_regions("PTV") == ()


def test_not_a_segmentation_is_an_input_error(tmp_path: Path) -> None:
    ct = _ct_series()[0]
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="neither SEG nor RTSTRUCT"):
        read_structure_extents(tmp_path / "ct.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"nope")
    with pytest.raises(InputError, match="not a readable"):
        read_structure_extents(tmp_path / "bad.dcm")


def test_anatomy_table_feeds_the_report(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bodyscore.cohort.report import write_report
    from bodyscore.export.json_writer import write_json

    result_json = write_json(_result(), tmp_path / "r.json")
    pq.write_table(
        pa.table(
            {
                "key": ["s"],
                "series_uid": [SERIES_UID],
                "status": ["ok"],
                "result_json": [str(result_json)],
                "predicted_tag": ["CHEST"],
            }
        ),
        tmp_path / "results.parquet",
    )
    out = write_anatomy_table(
        tmp_path / "results.parquet",
        [_seg_file(tmp_path, _ct_series()), _rtstruct_file(tmp_path)],
        tmp_path / "anatomy.parquet",
    )
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["structure"] for r in rows if not r["agrees"]) == ["Bladder", "Brain"]
    html = write_report(
        tmp_path / "r.html", results=tmp_path / "results.parquet", anatomy=out
    ).read_text()
    assert "<h3>Anatomy disagreement (1)</h3>" in html
    assert "Bladder" in html
