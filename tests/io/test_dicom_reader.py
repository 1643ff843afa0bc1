"""DICOM series reader: shared series, geometry, series selection and damaged folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from bodyscore.errors import InputError, MultipleSeriesError, UnsupportedModalityError
from bodyscore.io import list_dicom_series, read_volume


@pytest.fixture(scope="module")
def dicom_dir(ct_dir: Path) -> Path:
    return ct_dir / "dicom"


def _copy_series(src: Path, dst: Path, *, n: int | None = None, **changes: str) -> Path:
    """Copy (the first n files of) a series, rewriting tags given as keyword=value."""
    dst.mkdir(parents=True, exist_ok=True)
    for file in sorted(src.iterdir())[:n]:
        ds = pydicom.dcmread(file)
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(dst / file.name)
    return dst


def test_feet_first_dicom_equals_nifti(ct_dir: Path, dicom_dir: Path) -> None:
    dicom = read_volume(dicom_dir / "lidc0314_chest_ffs_derived")
    nifti = read_volume(ct_dir / "lidc0314_chest.nii.gz")
    assert dicom.shape == (138, 256, 256)
    assert dicom.meta["patient_position"] == "FFS"
    assert dicom.meta["format"] == "dicom"
    assert dicom.meta["modality"] == "CT"
    assert len(dicom.meta["files"]) == len(dicom.meta["sop_instance_uids"]) == 138
    # in-plane columns and origin equal; the DICOM keeps every 2nd slice (2 mm step)
    np.testing.assert_allclose(dicom.affine[:, :2], nifti.affine[:, :2], atol=1e-3)
    np.testing.assert_allclose(dicom.affine[:3, 3], nifti.affine[:3, 3], atol=1e-3)
    np.testing.assert_allclose(dicom.affine[:3, 2], 2 * nifti.affine[:3, 2], atol=1e-4)
    np.testing.assert_allclose(dicom.z_mm, nifti.z_mm[::2][:138], atol=1e-3)
    np.testing.assert_array_equal(dicom.array, nifti.array[::2][:138])
    assert dicom.spacing_mm == pytest.approx((2.0, 1.5625, 1.5625))
    assert dicom.warnings == ()


def test_instance_number_decreasing_with_z_is_sorted_by_position(dicom_dir: Path) -> None:
    volume = read_volume(dicom_dir / "ts_petct_slab")
    assert volume.shape == (20, 512, 512)
    np.testing.assert_allclose(np.diff(volume.z_mm), 2.0)
    assert volume.is_superior_up()
    instances = [
        int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber)
        for f in volume.meta["files"]
    ]
    assert instances == sorted(instances, reverse=True)  # input order = ascending position
    np.testing.assert_array_equal(volume.slice_order, np.arange(20))
    # canonical slice 0 is the most inferior file
    ipp_z = [
        float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
        for f in volume.meta["files"]
    ]
    np.testing.assert_allclose(volume.z_mm, ipp_z)
    first = pydicom.dcmread(volume.meta["files"][0])
    hu = first.pixel_array * float(first.RescaleSlope) + float(first.RescaleIntercept)
    # RAS layout: rows reversed (posterior→anterior), columns reversed (left→right)
    np.testing.assert_array_equal(volume.array[0], hu[::-1, ::-1])


def test_ge_tilt_and_variable_spacing(dicom_dir: Path) -> None:
    volume = read_volume(dicom_dir / "ge_head_tilt18.5_varspacing")
    assert volume.shape == (28, 512, 512)
    assert volume.meta["gantry_tilt_deg"] == pytest.approx(18.5, abs=0.05)
    assert volume.meta["gantry_detector_tilt_deg"] == pytest.approx(18.5)
    assert any("gantry tilt 18.5" in w for w in volume.warnings)
    assert any(w.startswith("non-uniform slice spacing: steps") for w in volume.warnings)
    assert not volume.has_uniform_spacing
    steps = np.diff(volume.z_mm)
    # along the table, steps are the 1.08/4.0/7.0 mm normal distances divided by cos(18.5°)
    np.testing.assert_allclose(
        sorted(set(np.round(steps * np.cos(np.radians(18.5)), 1))), [1.1, 4.0, 7.0], atol=0.05
    )
    assert volume.spacing_mm[0] == pytest.approx(float(np.median(steps)))
    # k column follows the table (world z), not the tilted slice normal
    k = volume.affine[:3, 2] / np.linalg.norm(volume.affine[:3, 2])
    np.testing.assert_allclose(k, [0, 0, 1], atol=1e-6)


def test_single_file_reads_its_series(dicom_dir: Path) -> None:
    file = sorted((dicom_dir / "ts_petct_slab").iterdir())[3]
    assert read_volume(file).n_slices == 20


def test_two_series_need_a_choice(tmp_path: Path, dicom_dir: Path) -> None:
    src = dicom_dir / "ts_petct_slab"
    _copy_series(src, tmp_path / "a", n=3)
    _copy_series(
        src, tmp_path / "b" / "deep", n=4, SeriesInstanceUID="1.2.3.4", SeriesDescription="copy"
    )
    with pytest.raises(MultipleSeriesError, match="--series UID") as info:
        read_volume(tmp_path)
    uids = [uid for uid, _ in info.value.series]
    assert "1.2.3.4" in uids
    assert len(uids) == 2
    assert read_volume(tmp_path, series_uid="1.2.3.4").n_slices == 4
    listed = list_dicom_series(tmp_path)
    assert sorted(s.n_files for s in listed) == [3, 4]
    assert {s.modality for s in listed} == {"CT"}
    with pytest.raises(InputError, match=r"not found; available series: .*1\.2\.3\.4"):
        read_volume(tmp_path, series_uid="9.9")


def test_non_ct_modality(tmp_path: Path, dicom_dir: Path) -> None:
    _copy_series(dicom_dir / "ts_petct_slab", tmp_path, n=2, Modality="PT")
    with pytest.raises(UnsupportedModalityError, match="PT"):
        read_volume(tmp_path)


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no DICOM"):
        read_volume(tmp_path)


def test_non_dicom_files_and_symlink_loop_skipped(tmp_path: Path, dicom_dir: Path) -> None:
    _copy_series(dicom_dir / "ts_petct_slab", tmp_path, n=3)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 200)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    volume = read_volume(tmp_path)
    assert volume.n_slices == 3


def test_duplicates_and_missing_rescale(tmp_path: Path, dicom_dir: Path) -> None:
    folder = _copy_series(dicom_dir / "ts_petct_slab", tmp_path / "s", n=4)
    first = sorted(folder.iterdir())[0]
    shutil.copy(first, folder / "dup.dcm")
    ds = pydicom.dcmread(folder / "dup.dcm")
    ds.SOPInstanceUID = "1.2.3.999"
    ds.save_as(folder / "dup.dcm")
    volume = read_volume(folder)
    assert volume.n_slices == 4
    assert any("duplicate" in w for w in volume.warnings)
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        del ds.RescaleSlope
        del ds.RescaleIntercept
        ds.save_as(file)
    raw = read_volume(folder)
    assert any("RescaleSlope" in w for w in raw.warnings)
    np.testing.assert_array_equal(raw.array.astype(np.int32) - 1024, volume.array)


def test_mixed_sizes_refused(tmp_path: Path, dicom_dir: Path) -> None:
    folder = _copy_series(dicom_dir / "ts_petct_slab", tmp_path, n=3)
    file = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(file)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(file)
    from bodyscore.errors import DicomSeriesError

    with pytest.raises(DicomSeriesError, match="ImageOrientationPatient"):
        read_volume(folder)


@pytest.mark.parametrize("n_files", [1, 2])
def test_multiframe_ct_reads_like_its_single_frame_series(
    dicom_dir: Path, tmp_path: Path, n_files: int
) -> None:
    """Legacy Converted Enhanced CT (highdicom) made of 30 LIDC slices, in one and in two files:
    same voxels, positions and affine as the single-frame files, frames numbered per file."""
    from helpers.dicom_cases import make_multiframe

    lidc = dicom_dir / "lidc0314_chest_ffs_derived"
    single = read_volume(lidc)
    multi = read_volume(make_multiframe(lidc, tmp_path / "mf", n_slices=30, n_files=n_files))
    assert multi.shape == (30, 256, 256)
    np.testing.assert_array_equal(multi.array, single.array[:30])
    np.testing.assert_allclose(multi.z_mm, single.z_mm[:30])
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-6)
    frames = multi.meta["frame_numbers"]
    assert all(isinstance(f, int) and f >= 1 for f in frames)
    assert len(set(zip(multi.meta["sop_instance_uids"], frames, strict=True))) == 30
    assert len(set(multi.meta["sop_instance_uids"])) == n_files
    assert multi.warnings == ()


def test_multiframe_crop_writes_the_selected_frames(dicom_dir: Path, tmp_path: Path) -> None:
    from bodyscore.io import write_cropped
    from helpers.dicom_cases import make_multiframe

    folder = make_multiframe(dicom_dir / "lidc0314_chest_ffs_derived", tmp_path / "mf",
                             n_slices=30, n_files=2)
    whole = read_volume(folder)
    out = write_cropped(folder, tmp_path / "crop", start=10, stop=25)
    cropped = read_volume(out)
    np.testing.assert_array_equal(cropped.array, whole.array[10:25])
    np.testing.assert_allclose(cropped.z_mm, whole.z_mm[10:25])
    assert not set(cropped.meta["sop_instance_uids"]) & set(whole.meta["sop_instance_uids"])


def test_empty_dataset_sop_uids_are_taken_from_the_file_meta(dicom_dir: Path) -> None:
    volume = read_volume(dicom_dir / "ts_petct_slab")
    meta_uids = [
        str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
        for f in volume.meta["files"]
    ]
    assert list(volume.meta["sop_instance_uids"]) == meta_uids
    assert any("file meta information" in w for w in volume.warnings)
