"""Crop writer (NIfTI, NRRD, DICOM) and the SimpleITK reader."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.errors import InputError, OutputError
from bodyscore.io import read_volume, write_cropped

sitk = pytest.importorskip("SimpleITK")


def _nifti(path: Path, *, flip_k: bool) -> Path:
    data = np.arange(4 * 3 * 6, dtype=np.int16).reshape(4, 3, 6)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    if flip_k:
        affine[2, 2], affine[2, 3] = -3.0, 15.0
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.mark.parametrize("flip_k", [False, True])
def test_nifti_crop_keeps_slices_and_affine(tmp_path: Path, flip_k: bool) -> None:
    source = _nifti(tmp_path / "in.nii.gz", flip_k=flip_k)
    out = write_cropped(source, tmp_path / "out.nii.gz", start=1, stop=4)
    original, cropped = nib.load(str(source)), nib.load(str(out))
    np.testing.assert_array_equal(cropped.get_fdata(), original.get_fdata()[:, :, 1:4])
    np.testing.assert_allclose(cropped.affine, original.affine @ _shift_k(1))
    assert cropped.get_data_dtype() == np.int16
    full, part = read_volume(source), read_volume(out)
    # the canonical slices of the crop are the input slices 1..3
    keep = np.isin(full.slice_order, [1, 2, 3])
    np.testing.assert_array_equal(part.array, full.array[keep])
    np.testing.assert_allclose(part.z_mm, full.z_mm[keep])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.nii.gz"]


def _shift_k(k: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = k
    return shift


def test_crop_refuses_input_range_and_format(tmp_path: Path) -> None:
    source = _nifti(tmp_path / "in.nii", flip_k=False)
    with pytest.raises(OutputError, match="overwrite the input"):
        write_cropped(source, tmp_path / "in.nii", start=0, stop=1)
    with pytest.raises(OutputError, match="outside"):
        write_cropped(source, tmp_path / "o.nii", start=2, stop=9)
    with pytest.raises(OutputError, match=r"\.nii or \.nii\.gz"):
        write_cropped(source, tmp_path / "o.nrrd", start=0, stop=1)
    with pytest.raises(OutputError, match="cannot write output"):
        write_cropped(source, source / "sub" / "o.nii", start=0, stop=1)  # parent is a file


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_crop_read_only_destination(tmp_path: Path) -> None:
    source = _nifti(tmp_path / "in.nii", flip_k=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            write_cropped(source, locked / "o.nii", start=0, stop=1)
    finally:
        locked.chmod(0o700)


def test_nrrd_read_and_crop(tmp_path: Path, ct_dir: Path) -> None:
    nifti = read_volume(ct_dir / "ts_petct_slab.nii.gz")
    image = sitk.GetImageFromArray(nifti.array)  # (z, y, x) → ITK index (x, y, z)
    lps = np.diag([-1.0, -1.0, 1.0]) @ nifti.affine[:3, :3] / np.array(nifti.spacing_mm[::-1])
    image.SetSpacing(nifti.spacing_mm[::-1])
    image.SetDirection(lps.ravel().tolist())
    image.SetOrigin((np.diag([-1.0, -1.0, 1.0]) @ nifti.affine[:3, 3]).tolist())
    path = tmp_path / "slab.nrrd"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert volume.meta["format"] == "nrrd"
    np.testing.assert_array_equal(volume.array, nifti.array)
    np.testing.assert_allclose(volume.affine, nifti.affine, atol=1e-4)
    out = write_cropped(path, tmp_path / "crop.nrrd", start=5, stop=9)
    part = read_volume(out)
    np.testing.assert_array_equal(part.array, nifti.array[5:9])
    np.testing.assert_allclose(part.z_mm, nifti.z_mm[5:9], atol=1e-4)
    mha = tmp_path / "slab.mha"
    sitk.WriteImage(image, str(mha))
    assert read_volume(mha).meta["format"] == "mha"


def test_itk_vector_image_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 2], sitk.sitkVectorUInt8, 3), str(path))
    with pytest.raises(InputError, match="components"):
        read_volume(path)


def test_dicom_crop_copies_files(tmp_path: Path, ct_dir: Path) -> None:
    source = ct_dir / "dicom" / "ts_petct_slab"
    volume = read_volume(source)
    out = write_cropped(source, tmp_path / "crop", start=3, stop=7)
    copied = sorted(p.name for p in out.iterdir())
    expected = sorted(Path(f).name for f in volume.meta["files"][3:7])
    assert copied == expected
    for name in copied:
        assert (out / name).read_bytes() == (source / name).read_bytes()
    part = read_volume(out)
    np.testing.assert_array_equal(part.array, volume.array[3:7])
    with pytest.raises(OutputError, match="already exists"):
        write_cropped(source, out, start=0, stop=1)
    with pytest.raises(OutputError, match="overwrite the input"):
        write_cropped(source, source, start=0, stop=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop"]
