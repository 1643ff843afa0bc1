"""Label maps following their CT's crop (io/label_maps.py): NIfTI, NRRD, DICOM SEG."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.errors import InputError, OutputError
from bodyscore.io.label_maps import check_same_grid, read_grid, write_label_slices

N = 10  # slices


def _affine(*, flip_k: bool = False, shift_mm: float = 0.0) -> np.ndarray:
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = (-6.0 + shift_mm, -4.0, -15.0)
    if flip_k:  # k grows towards the feet: file slice 0 is the most superior
        affine[2, 2], affine[2, 3] = -3.0, -15.0 + 3.0 * (N - 1)
    return affine


def _ct(path: Path, *, flip_k: bool = False) -> Path:
    data = np.full((8, 6, N), -1000, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, _affine(flip_k=flip_k)), str(path))
    return path


def _labels_by_slice(*, flip_k: bool = False) -> np.ndarray:
    """Label map (i, j, k) whose value on file slice k is k + 1 (so every slice is traceable)."""
    data = np.zeros((8, 6, N), dtype=np.uint8)
    for k in range(N):
        data[2:6, 1:4, k] = k + 1
    return data[:, :, ::-1].copy() if flip_k else data


def _label_nifti(path: Path, *, flip_k: bool = False, shift_mm: float = 0.0) -> Path:
    img = nib.Nifti1Image(_labels_by_slice(flip_k=flip_k), _affine(flip_k=flip_k,
                                                                    shift_mm=shift_mm))
    img.set_data_dtype(np.uint8)
    nib.save(img, str(path))
    return path


def _surviving(path: Path) -> set[int]:
    """Label values left in a label map (value v = CT slice v - 1 of the unflipped CT)."""
    values = set(np.unique(np.asarray(nib.load(str(path)).dataobj)).tolist())
    return values - {0}


@pytest.mark.parametrize("flip_ct", [False, True])
@pytest.mark.parametrize("flip_labels", [False, True])
def test_crop_keeps_labels_of_the_kept_ct_slices_only(
    tmp_path: Path, flip_ct: bool, flip_labels: bool
) -> None:
    ct = _ct(tmp_path / "ct.nii.gz", flip_k=flip_ct)
    labels = _label_nifti(tmp_path / "seg.nii.gz", flip_k=flip_labels)
    start, stop = 3, 7  # of the CT file's own slices
    out = write_label_slices(labels, tmp_path / "out.nii.gz", ct=ct, start=start, stop=stop)
    # the CT's file slices 3..6 are, feet to head, slices 3..6 (or N-7..N-4 when flipped)
    anatomical = range(start, stop) if not flip_ct else range(N - stop, N - start)
    assert _surviving(out) == {k + 1 for k in anatomical}
    cropped = nib.load(str(out))
    assert cropped.shape == (8, 6, stop - start)
    assert cropped.get_data_dtype() == np.uint8
    # the crop's affine puts its first slice where the kept slice was in the original
    original = nib.load(str(labels))
    first = 0 if not flip_labels else N - 1
    position = original.affine @ [0, 0, first, 1]
    k_in_crop = (cropped.affine[2, 3] - position[2]) / cropped.affine[2, 2]
    assert abs(round(k_in_crop) - k_in_crop) < 1e-6


def test_mask_outside_keeps_grid_and_zeroes_outside(tmp_path: Path) -> None:
    ct = _ct(tmp_path / "ct.nii.gz")
    labels = _label_nifti(tmp_path / "seg.nii.gz")
    out = write_label_slices(labels, tmp_path / "masked.nii.gz", ct=ct, start=2, stop=5,
                             mask_outside=True)
    masked, original = nib.load(str(out)), nib.load(str(labels))
    assert masked.shape == original.shape
    np.testing.assert_allclose(masked.affine, original.affine)
    data = np.asarray(masked.dataobj)
    np.testing.assert_array_equal(data[:, :, 2:5], np.asarray(original.dataobj)[:, :, 2:5])
    assert not data[:, :, :2].any()
    assert not data[:, :, 5:].any()


def test_grids_must_match(tmp_path: Path) -> None:
    ct = _ct(tmp_path / "ct.nii.gz")
    shifted = _label_nifti(tmp_path / "shifted.nii.gz", shift_mm=1.5)
    with pytest.raises(InputError, match=r"shifted\.nii\.gz: .*not on the CT grid"):
        write_label_slices(shifted, tmp_path / "o.nii.gz", ct=ct, start=0, stop=3)
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 6, N), np.uint8), _affine()), str(small))
    with pytest.raises(InputError, match=r"small\.nii\.gz: its grid .* differs from the CT's"):
        write_label_slices(small, tmp_path / "o.nii.gz", ct=ct, start=0, stop=3)
    assert not (tmp_path / "o.nii.gz").exists()
    # the same grid stored the other way round is the same grid
    check_same_grid(read_grid(ct), read_grid(_label_nifti(tmp_path / "f.nii.gz", flip_k=True)))


def test_output_must_not_be_an_input(tmp_path: Path) -> None:
    ct = _ct(tmp_path / "ct.nii.gz")
    labels = _label_nifti(tmp_path / "seg.nii.gz")
    with pytest.raises(OutputError, match="overwrite an input"):
        write_label_slices(labels, labels, ct=ct, start=0, stop=2, mask_outside=True)


def test_nrrd_label_map_on_a_nifti_ct(tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    ct = _ct(tmp_path / "ct.nii.gz")
    # the same grid as an ITK (LPS) image: array (k, j, i); direction flips x and y
    image = sitk.GetImageFromArray(_labels_by_slice().transpose(2, 1, 0).copy())
    image.SetSpacing((1.5, 1.5, 3.0))
    affine = _affine()
    image.SetOrigin((-affine[0, 3], -affine[1, 3], affine[2, 3]))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    # LPS with x and y reversed: voxel i grows to the patient's left like the NIfTI's
    labels = tmp_path / "seg.nrrd"
    sitk.WriteImage(image, str(labels))
    check_same_grid(read_grid(ct), read_grid(labels))
    out = write_label_slices(labels, tmp_path / "out.nrrd", ct=ct, start=4, stop=8)
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out)))).tolist()) - {0}
    assert values == {5, 6, 7, 8}
    masked = write_label_slices(labels, tmp_path / "masked.nrrd", ct=ct, start=4, stop=8,
                                mask_outside=True)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(masked)))
    assert array.shape == (N, 6, 8)
    assert set(np.unique(array).tolist()) - {0} == {5, 6, 7, 8}


# -- DICOM SEG --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seg_on_dicom(ct_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, Path, np.ndarray]:
    """A two-segment DICOM SEG of the shared feet-first DICOM CT, and its label array
    (k, rows, cols) in the series' own file order."""
    hd = pytest.importorskip("highdicom")
    import pydicom

    from bodyscore.io.dicom import locate_series

    series = ct_dir / "dicom" / "lidc0314_chest_ffs_derived"
    layout = locate_series(series)
    sources = [pydicom.dcmread(str(f)) for f in layout.files]
    for source in sources:  # this derived series lost a common frame of reference
        source.FrameOfReferenceUID = sources[0].get("FrameOfReferenceUID", "1.2.3.4")
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    masks = np.zeros((len(sources), rows, cols, 2), dtype=bool)
    masks[:, 50:100, 50:100, 0] = True  # segment 1 on every slice
    masks[5:9, 150:180, 150:180, 1] = True  # segment 2 on slices 5..8 only
    hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=hd.sr.CodedConcept("123109", "DCM", "Manual Processing")
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"box {number}",
            segmented_property_category=hd.sr.CodedConcept(
                "91723000", "SCT", "Anatomical Structure"
            ),
            segmented_property_type=hd.sr.CodedConcept("10200004", "SCT", "Liver"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="bodyscore tests",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
        omit_empty_frames=True,
    )
    folder = tmp_path_factory.mktemp("seg")
    path = folder / "seg.dcm"
    seg.save_as(str(path))
    labels = masks[..., 0].astype(np.uint8) + 2 * masks[..., 1].astype(np.uint8)
    return series, path, labels


def test_dicom_seg_crop_and_mask(seg_on_dicom: tuple[Path, Path, np.ndarray],
                                 tmp_path: Path) -> None:
    series, seg, labels = seg_on_dicom
    out = write_label_slices(seg, tmp_path / "seg.nii.gz", ct=series, start=7, stop=12)
    cropped = nib.load(str(out))
    expected = labels.transpose(2, 1, 0)  # (i = column, j = row, k = file)
    np.testing.assert_array_equal(np.asarray(cropped.dataobj), expected[:, :, 7:12])
    masked = write_label_slices(seg, tmp_path / "m.nii.gz", ct=series, start=7, stop=12,
                                mask_outside=True)
    data = np.asarray(nib.load(str(masked)).dataobj)
    assert data.shape == expected.shape
    np.testing.assert_array_equal(data[:, :, 7:12], expected[:, :, 7:12])
    assert not data[:, :, :7].any()
    assert not data[:, :, 12:].any()
    assert set(np.unique(data[:, :, 7:9]).tolist()) == {0, 1, 2}  # segment 2 survives on 7, 8


def test_dicom_seg_needs_its_dicom_series(seg_on_dicom: tuple[Path, Path, np.ndarray],
                                          ct_dir: Path, tmp_path: Path) -> None:
    series, seg, _ = seg_on_dicom
    with pytest.raises(InputError, match="give that DICOM series as the CT"):
        write_label_slices(seg, tmp_path / "o.nii.gz", ct=ct_dir / "ts_petct_slab.nii.gz",
                           start=0, stop=3)
    other = ct_dir / "dicom" / "ts_petct_slab"
    with pytest.raises(InputError, match="does not refer to the CT series"):
        write_label_slices(seg, tmp_path / "o.nii.gz", ct=other, start=0, stop=3)
    with pytest.raises(OutputError, match=r"NIfTI label map; name it \.nii"):
        write_label_slices(seg, tmp_path / "o.nrrd", ct=series, start=0, stop=3)


def test_nifti_label_map_on_the_dicom_grid(ct_dir: Path, tmp_path: Path) -> None:
    """The shared TotalSegmentator label map lies on the original DICOM grid (and not on the
    downsampled NIfTI's)."""
    series = ct_dir / "dicom" / "ts_petct_slab"
    labels = ct_dir / "ts_petct_slab_seg_fullres.nii.gz"
    out = write_label_slices(labels, tmp_path / "seg.nii.gz", ct=series, start=0, stop=10)
    assert nib.load(str(out)).shape[2] == 10
    with pytest.raises(InputError, match="differs from the CT's"):
        write_label_slices(labels, tmp_path / "x.nii.gz", ct=ct_dir / "ts_petct_slab.nii.gz",
                           start=0, stop=10)
