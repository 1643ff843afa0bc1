"""DICOM SEG / TID 1500 SR export and the DICOMweb address/auth parsing (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from bodyscore.errors import InputError
from bodyscore.io.dicomweb import DicomwebAuth, is_dicomweb_url, parse_dicomweb_url

GE = ("data", "ct", "dicom", "ge_head_tilt18.5_varspacing")
NECK = tuple(range(0, 10))
HEAD = tuple(range(5, 28))


@pytest.fixture(scope="module")
def ge_dir(shared_dir: Path) -> Path:
    return shared_dir.joinpath(*GE)


@pytest.fixture(scope="module")
def scored(ge_dir: Path, tiny_model_dir: Path):
    """(volume, result with hand-set regions, source series) of the GE head series."""
    from bodyscore.inference import predict
    from bodyscore.io import read_volume
    from bodyscore.io.dicom_source import read_source_series

    volume = read_volume(ge_dir)
    result = predict(volume, str(tiny_model_dir)).replace(
        body_part_examined={"legs": (), "shoulder-neck": NECK, "head": HEAD},
        body_part_examined_tag="HEAD-NECK",
    )
    source = read_source_series(volume.meta["files"], volume.meta["sop_instance_uids"],
                                volume.meta["frame_numbers"])
    return volume, result, source


def test_body_mask_keeps_large_components_and_fills_holes() -> None:
    from bodyscore.export.seg import body_mask

    hu = np.full((20, 30), -1000.0)
    hu[2:10, 2:10] = 40.0  # 64 px with a hole
    hu[5:7, 5:7] = -1000.0
    hu[2:10, 20:28] = 40.0  # second "leg", 64 px
    hu[15:17, 15:17] = 500.0  # 4 px: dropped (< half the largest)
    mask = body_mask(hu)
    assert mask[2:10, 2:10].all()
    assert mask[2:10, 20:28].all()
    assert mask.sum() == 128
    assert not body_mask(np.full((5, 5), -1000.0)).any()


def test_seg_segments_frames_and_references(scored, tmp_path: Path) -> None:
    import highdicom as hd

    from bodyscore.export.seg import build_region_segmentation, write_dataset

    volume, result, images = scored
    path = write_dataset(build_region_segmentation(result, images), tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["Shoulder-neck", "Head"]
    types = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert types == ["45048000", "69536005"]
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "bodyscore"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.meta["series_instance_uid"]
    assert seg.FrameOfReferenceUID == images.images[0].FrameOfReferenceUID
    uids = volume.meta["sop_instance_uids"]
    seen: dict[int, set[str]] = {1: set(), 2: set()}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        seen[number].add(source.ReferencedSOPInstanceUID)
    assert seen[1] == {uids[i] for i in NECK}
    assert seen[2] == {uids[i] for i in HEAD}
    # OHIF/Slicer need these
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality",
                    "SharedFunctionalGroupsSequence", "DimensionIndexSequence"):
        assert keyword in seg
    assert seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"


def test_sr_groups_regions_and_summary(scored, tmp_path: Path) -> None:
    import highdicom as hd

    from bodyscore.export.seg import write_dataset
    from bodyscore.export.sr import build_measurement_report

    volume, result, images = scored
    path = write_dataset(build_measurement_report(result, images), tmp_path / "sr.dcm")
    sr = hd.sr.srread(path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == volume.meta["series_instance_uid"]
    assert len(evidence.ReferencedSOPSequence) == len(images.images)
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == result.n_slices + 1  # every slice has a group, + summary
    slice_0 = groups[0]
    first_uid = volume.meta["sop_instance_uids"][0]
    assert slice_0.source_images[0].referenced_sop_instance_uid == first_uid
    from highdicom.sr.utils import find_content_items
    from pydicom.sr.codedict import codes

    def sites(group):  # IDC's "Finding Site" evaluations (highdicom lists them as sites)
        items = find_content_items(group[0], name=codes.SCT.FindingSite)
        return [item.ConceptCodeSequence[0].CodeValue for item in items]

    assert sites(slice_0) == ["45048000"]
    assert sites(groups[6]) == ["45048000", "69536005"]
    summary = groups[-1]
    assert summary.tracking_identifier == "Series summary"
    values = {e.name.meaning: e.value.meaning for e in summary.get_qualitative_evaluations()}
    assert values["Body part examined tag"] == "HEAD-NECK"
    assert values["Reverse z-ordering"] in ("Yes", "No")


def test_source_series_problems_are_clear(ct_dir: Path, tmp_path: Path) -> None:
    from bodyscore.io import read_volume
    from bodyscore.io.dicom_source import read_source_series

    ge = read_volume(ct_dir / "dicom" / "ge_head_tilt18.5_varspacing")
    files, uids = list(ge.meta["files"]), list(ge.meta["sop_instance_uids"])
    with pytest.raises(InputError, match="one of each per slice"):
        read_source_series([], [])
    with pytest.raises(InputError, match="differs from the scored slice"):
        read_source_series(files, uids[::-1])
    # an instance with no SOPInstanceUID anywhere: refused, the reason named
    bare = tmp_path / "bare.dcm"
    ds = pydicom.dcmread(files[0])
    ds.SOPInstanceUID = ""
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    ds.save_as(bare)
    with pytest.raises(InputError, match="cannot reference this instance"):
        read_source_series([bare], [""])
    # two studies in one series cannot become one SEG
    other = tmp_path / "other.dcm"
    ds = pydicom.dcmread(files[1])
    ds.StudyInstanceUID = "1.2.3.4"
    ds.save_as(other)
    with pytest.raises(InputError, match="studies"):
        read_source_series([files[0], other], uids[:2])


def test_dicomweb_urls() -> None:
    s = parse_dicomweb_url("dicomweb://h:8042/dicom-web/?study=1.2&series=1.3")
    assert (s.base_url, s.study_uid, s.series_uid) == ("http://h:8042/dicom-web", "1.2", "1.3")
    assert parse_dicomweb_url("dicomwebs://h/x", series_uid="9").base_url == "https://h/x"
    assert is_dicomweb_url("dicomweb://h")
    assert not is_dicomweb_url("ct.nii.gz")
    for bad in ("ftp://h/x", "dicomweb://u:p@h/x", "dicomweb://h/x?foo=1"):
        with pytest.raises(InputError):
            parse_dicomweb_url(bad)
    with pytest.raises(InputError, match="differs"):
        parse_dicomweb_url("dicomweb://h/x?series=1", series_uid="2")


def test_auth_sources_hide_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    auth = DicomwebAuth.from_sources(username="u", password_file=secret)
    assert (auth.kind, auth.username, auth.secret) == ("basic", "u", "s3cret")
    assert "s3cret" not in repr(auth)
    env = {"BODYSCORE_DICOMWEB_TOKEN": "tok"}
    assert DicomwebAuth.from_environment(env).kind == "bearer"
    assert DicomwebAuth.from_environment({}).kind == "none"
    with pytest.raises(InputError, match="unset"):
        DicomwebAuth.from_sources(username="u", password_env="NOPE_VAR", environ={})


def test_cli_dicom_folder_writes_json_and_sr(ge_dir: Path, tiny_model_dir: Path,
                                            tmp_path: Path) -> None:
    from bodyscore.cli import main

    out = tmp_path / "out"
    assert main(["dicom", str(ge_dir), "-o", str(out), "--sr", "--model", str(tiny_model_dir)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{ge_dir.name}.json", f"{ge_dir.name}_sr.dcm"]
    assert json.loads((out / names[0]).read_text())["input"]["format"] == "dicom"


def test_cli_seg_without_regions_fails_and_writes_nothing(ge_dir: Path, tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    from bodyscore.cli import main

    # the random tiny model puts no slice in a region its table can define
    out = tmp_path / "out"
    code = main(["dicom", str(ge_dir), "-o", str(out), "--seg", "--model", str(tiny_model_dir)])
    assert code == 1
    assert not out.exists() or not any(out.iterdir())
