"""NIfTI reader: shared volumes, orientation bookkeeping, header and data problems."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.errors import InputError
from bodyscore.io import read_volume, volume_from_array, write_nifti

# README table: file → shape (x, y, z) as stored (RAS canonical) and spacing (x, y, z) mm
README_SHAPES = {
    "ts_abdomen_pelvis.nii.gz": (122, 101, 112),
    "ts_petct_slab.nii.gz": (256, 256, 20),
    "lidc0314_chest.nii.gz": (256, 256, 275),
    "ge_tilt_head.nii.gz": (170, 203, 56),
    "cptac_pda_chest.nii.gz": (256, 256, 102),
    "vhf_head.nii.gz": (256, 256, 234),
    "vhm_head.nii.gz": (256, 256, 245),
    "vhf_knee_leg.nii.gz": (256, 256, 350),
    "unc_cthead_cadaver_head.nii.gz": (128, 128, 113),
    "crlm1004_abdomen.nii.gz": (170, 170, 41),
    "pyradiomics_lung1_chest.nii.gz": (128, 128, 48),
    "pyradiomics_lung2_chest.nii.gz": (170, 170, 61),
}


def _write(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_all_shared_nifti_files_open(ct_dir: Path) -> None:
    files = sorted(ct_dir.glob("*.nii.gz"))
    assert len(files) >= 20  # 20 CT volumes + one label map
    for file in files:
        volume = read_volume(file)
        stored = nib.load(str(file))
        # stored RAS canonical → reading keeps the data, only transposes to (z, y, x)
        assert volume.shape == tuple(reversed(stored.shape)), file.name
        assert volume.array.dtype == np.int16, file.name
        assert volume.meta["format"] == "nifti"
        assert volume.meta["slice_axis"] == 2
        np.testing.assert_array_equal(volume.slice_order, np.arange(volume.n_slices))
        canonical = nib.as_closest_canonical(stored)  # the label map is stored LAS
        np.testing.assert_allclose(volume.affine, canonical.affine, atol=1e-4)
        assert volume.warnings == ()
        if file.name in README_SHAPES:
            assert stored.shape == README_SHAPES[file.name]


def test_shared_volume_values_and_spacing(ct_dir: Path) -> None:
    volume = read_volume(ct_dir / "ts_petct_slab.nii.gz")
    stored = np.asanyarray(nib.load(str(ct_dir / "ts_petct_slab.nii.gz")).dataobj)
    np.testing.assert_array_equal(volume.array, stored.T)
    np.testing.assert_allclose(volume.spacing_mm, (2.0, 1.953125, 1.953125), rtol=1e-4)
    np.testing.assert_allclose(np.diff(volume.z_mm), 2.0, rtol=1e-6)
    # z positions are world z (affine[2, 3] + affine[2, 2] * k)
    np.testing.assert_allclose(volume.z_mm[0], volume.affine[2, 3])


def test_flipped_consistent_copy_gives_same_canonical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(6, 5, 4)).astype(np.int16)
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    affine[:3, 3] = (10, 20, 30)
    ras = read_volume(_write(tmp_path / "ras.nii.gz", data, affine))
    # flip k (slice axis) and i together with the affine: same image in world space
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[0, 3] = data.shape[0] - 1
    flip[2, 3] = data.shape[2] - 1
    flipped = read_volume(_write(tmp_path / "flip.nii.gz", data[::-1, :, ::-1], affine @ flip))
    np.testing.assert_array_equal(flipped.array, ras.array)
    np.testing.assert_allclose(flipped.affine, ras.affine)
    np.testing.assert_allclose(flipped.z_mm, ras.z_mm)
    np.testing.assert_allclose(ras.z_mm, [30, 33, 36, 39])
    np.testing.assert_array_equal(flipped.slice_order, [3, 2, 1, 0])
    # canonical slice 0 (most inferior) is the flipped file's last slice, x un-flipped
    np.testing.assert_array_equal(flipped.array[0], data[::-1, :, ::-1][::-1, :, 3].T)


def test_slice_axis_first_in_file(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    # file axis 0 runs inferior (world -z), axis 1 → x, axis 2 → y
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [-2.0, 0, 0, 0], [0, 0, 0, 1]])
    volume = read_volume(_write(tmp_path / "a.nii", data, affine))
    assert volume.meta["slice_axis"] == 0
    assert volume.shape == (4, 6, 5)
    np.testing.assert_array_equal(volume.slice_order, [3, 2, 1, 0])
    np.testing.assert_array_equal(volume.array[0], data[3].T)
    assert volume.spacing_mm == (2.0, 1.0, 1.0)


def test_float_data_with_nan_is_float32_and_replaced(tmp_path: Path) -> None:
    data = np.full((3, 3, 2), 10.5, dtype=np.float64)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    volume = read_volume(_write(tmp_path / "f.nii.gz", data, np.eye(4)))
    assert volume.array.dtype == np.float32
    assert volume.array[0, 0, 0] == -1024
    assert volume.array[1, 1, 1] == -1024
    assert any("2 non-finite voxels" in w for w in volume.warnings)


def test_all_nan_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "nan.nii.gz", np.full((2, 2, 2), np.nan, np.float32), np.eye(4))
    with pytest.raises(InputError, match="every voxel"):
        read_volume(path)


def test_integral_scaling_stays_int16(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.array([[[0, 100]]], dtype=np.uint16), np.eye(4))
    img.header.set_slope_inter(1, -1024)
    nib.save(img, str(tmp_path / "s.nii"))
    volume = read_volume(tmp_path / "s.nii")
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array.ravel(), [-1024, -924])
    img.header.set_slope_inter(0.5, 0)
    nib.save(img, str(tmp_path / "h.nii"))
    half = read_volume(tmp_path / "h.nii")
    assert half.array.dtype == np.float32
    np.testing.assert_array_equal(half.array.ravel(), [0, 50])


def test_2d_image_is_one_slice_with_warning(tmp_path: Path) -> None:
    volume = read_volume(_write(tmp_path / "2d.nii", np.zeros((4, 3), np.int16), np.eye(4)))
    assert volume.shape == (1, 3, 4)
    assert any("2-D" in w for w in volume.warnings)


def test_4d_singleton_squeezed_and_real_4d_refused(tmp_path: Path) -> None:
    one = read_volume(_write(tmp_path / "s.nii", np.zeros((4, 3, 2, 1), np.int16), np.eye(4)))
    assert one.shape == (2, 3, 4)
    with pytest.raises(InputError, match="4-D"):
        read_volume(_write(tmp_path / "t.nii", np.zeros((4, 3, 2, 3), np.int16), np.eye(4)))


def test_zero_spacing_refused(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.header["pixdim"][1:4] = (1.0, 0.0, 1.0)
    nib.save(img, str(tmp_path / "z.nii"))
    with pytest.raises(InputError, match="fix the header"):
        read_volume(tmp_path / "z.nii")


def test_negative_pixdim_uses_affine(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.header["pixdim"][1:4] = (-2.0, 3.0, 4.0)
    nib.save(img, str(tmp_path / "n.nii"))
    volume = read_volume(tmp_path / "n.nii")
    assert volume.spacing_mm == (4.0, 3.0, 2.0)


def test_truncated_gz_refused(tmp_path: Path, ct_dir: Path) -> None:
    raw = (ct_dir / "ts_petct_slab.nii.gz").read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.nii\.gz"):
        read_volume(path)


def test_truncated_uncompressed_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.nii", np.zeros((20, 20, 20), np.int16), np.eye(4))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated"):
        read_volume(path)


def test_huge_header_refused_without_allocating(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    header = img.header
    header.set_data_shape((2048, 2048, 1024))  # 4 Gi voxels
    path = tmp_path / "huge.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + b"\0" * 100)
    with pytest.raises(InputError, match="voxels"):
        read_volume(path)
    header.set_data_shape((1024, 1024, 512))  # 1 GiB of int16 claimed by a tiny file
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + b"\0" * 100)
    with pytest.raises(InputError, match="truncated"):
        read_volume(path)


def test_not_an_image_and_missing(tmp_path: Path) -> None:
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.nii\.gz"):
        read_volume(text)
    other = tmp_path / "table.csv"
    other.write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported input format"):
        read_volume(other)
    with pytest.raises(InputError, match="not found"):
        read_volume(tmp_path / "missing.nii.gz")


def test_volume_from_array_and_write_nifti_roundtrip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    volume = volume_from_array(array, (5.0, 2.0, 1.0))
    np.testing.assert_array_equal(volume.affine, np.diag([1.0, 2.0, 5.0, 1.0]))
    path = write_nifti(volume, tmp_path / "sub" / "v.nii.gz")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, array)
    assert back.spacing_mm == (5.0, 2.0, 1.0)
    assert nib.load(str(path)).get_data_dtype() == np.int16
    floats = write_nifti(volume_from_array(array * 0.5, (1, 1, 1)), tmp_path / "f.nii")
    assert nib.load(str(floats)).get_data_dtype() == np.float32
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f.nii", "sub", "v.nii.gz"]


_LEAN_IMPORT_CHECK = r"""
import sys
import numpy as np
from bodyscore.io.nifti import import_nibabel_without_pydicom, read_nifti
import_nibabel_without_pydicom()
assert "pydicom" not in sys.modules, "nibabel imported pydicom"
import nibabel as nib
assert not nib.nifti1.have_dicom
# a NIfTI whose header carries a DICOM extension (ecode 2) still reads; the extension stays bytes
image = nib.Nifti1Image(np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
image.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"not parsed"))
nib.save(image, sys.argv[1])
volume = read_nifti(sys.argv[1])
assert volume.shape == (4, 3, 2), volume.shape
import pydicom  # the DICOM readers can still import it
assert hasattr(pydicom, "dcmread")
print("ok")
"""


def test_nibabel_imported_without_pydicom_still_reads_dicom_extensions(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _LEAN_IMPORT_CHECK, str(tmp_path / "ext.nii.gz")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_lean_nibabel_import_is_a_no_op_once_pydicom_is_imported() -> None:
    code = ("import sys, pydicom; from bodyscore.io.nifti import import_nibabel_without_pydicom;"
            "import_nibabel_without_pydicom(); import nibabel;"
            "assert nibabel.nifti1.have_dicom; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
