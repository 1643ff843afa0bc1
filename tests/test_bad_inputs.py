"""Every bad input of issue 3 through the CLI: a one-line error naming the file, exit != 0,
no traceback — or a correct result where one exists."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bodyscore.cli import main


def _body(n_slices: int, *, value: float = 40.0) -> np.ndarray:
    """(x, y, z) float array: an ellipse of tissue in air."""
    xx, yy = np.mgrid[:48, :48]
    body = ((xx - 24) / 20.0) ** 2 + ((yy - 24) / 14.0) ** 2 < 1
    data = np.full((48, 48, n_slices), -1000.0, dtype=np.float32)
    data[body] = value
    return data


def _nifti(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (2.0, 2.0, 5.0)) -> Path:
    img = nib.Nifti1Image(data, np.diag([*zooms[:3], 1.0]) if len(zooms) >= 3 else np.eye(4))
    img.header.set_zooms(zooms[: data.ndim] if data.ndim <= len(zooms) else (*zooms, 1.0))
    nib.save(img, str(path))
    return path


# --- inputs that must fail with a clear one-line error ---------------------------------------
def _missing(tmp: Path) -> Path:
    return tmp / "does_not_exist.nii.gz"


def _not_an_image(tmp: Path) -> Path:
    path = tmp / "notes.nii.gz"
    path.write_text("this is not an image")
    return path


def _truncated(tmp: Path) -> Path:
    good = _nifti(tmp / "good.nii.gz", _body(10))
    path = tmp / "truncated.nii.gz"
    path.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    return path


def _empty_folder(tmp: Path) -> Path:
    path = tmp / "no_dicom_here"
    path.mkdir()
    (path / "readme.txt").write_text("nothing")
    return path


def _real_4d(tmp: Path) -> Path:
    return _nifti(
        tmp / "four_d.nii.gz", np.stack([_body(4), _body(4)], axis=-1), (2.0, 2.0, 5.0, 1.0)
    )


def _zero_spacing(tmp: Path) -> Path:
    path = _nifti(tmp / "zero_spacing.nii", _body(6))
    raw = bytearray(path.read_bytes())
    raw[88:92] = np.float32(0.0).tobytes()  # pixdim[3] (nibabel refuses to write a 0 itself)
    raw[252:254] = raw[254:256] = np.int16(0).tobytes()  # qform_code = sform_code = 0
    path.write_bytes(bytes(raw))
    return path


def _all_nan(tmp: Path) -> Path:
    return _nifti(tmp / "all_nan.nii.gz", np.full((32, 32, 5), np.nan, dtype=np.float32))


FAILING: dict[str, Callable[[Path], Path]] = {
    "file not found": _missing,
    "not an image": _not_an_image,
    "truncated nii.gz": _truncated,
    "folder with no DICOM": _empty_folder,
    "4-D image": _real_4d,
    "zero spacing": _zero_spacing,
    "all voxels NaN": _all_nan,
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_bad_input_gives_one_line_error(
    case: str, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = FAILING[case](tmp_path)
    out = tmp_path / "out"
    rc = main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc != 0
    assert "Traceback" not in err
    assert len(errors) == 1, err
    assert src.name in errors[0]
    assert not list(out.glob("*.json")) if out.exists() else True


def _dicom_series(ct_dir: Path, tmp: Path) -> Path:
    dst = tmp / "series"
    shutil.copytree(ct_dir / "dicom" / "ts_petct_slab", dst)
    return dst


def test_non_ct_dicom_is_refused(
    ct_dir: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _dicom_series(ct_dir, tmp_path)
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.Modality = "PT"
        ds.save_as(f)
    rc = main(
        ["-q", "predict", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "PT" in err
    assert "Traceback" not in err


def test_several_series_are_listed_and_can_be_chosen_or_all_scored(
    ct_dir: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _dicom_series(ct_dir, tmp_path)
    files = sorted(folder.glob("*.dcm"))
    second_uid = pydicom.uid.generate_uid()
    for f in files[:10]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = second_uid
        ds.save_as(f)
    out = tmp_path / "out"
    rc = main(["-q", "predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert rc == 1
    assert second_uid in err
    assert "--series" in err
    rc = main(
        [
            "-q",
            "predict",
            str(folder),
            "-o",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--series",
            second_uid,
        ]
    )
    assert rc == 0
    assert len(json.loads((out / "series.json").read_text())["z"]) == 10
    rc = main(
        [
            "-q",
            "predict",
            str(folder),
            "-o",
            str(tmp_path / "all"),
            "--model",
            str(tiny_model_dir),
            "--series",
            "all",
        ]
    )
    assert rc == 0
    assert len(list((tmp_path / "all").glob("series_*.json"))) == 2


# --- inputs that have a correct answer -------------------------------------------------------
@pytest.mark.parametrize("n_slices", [1, 2, 3])
def test_few_slices_give_a_result(n_slices: int, tmp_path: Path, tiny_model_dir: Path) -> None:
    src = _nifti(tmp_path / f"n{n_slices}.nii.gz", _body(n_slices))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    data = json.loads((out / f"n{n_slices}.json").read_text())
    assert len(data["unprocessed slice scores"]) == n_slices


def test_2d_image_is_one_slice(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _nifti(tmp_path / "flat.nii.gz", _body(1)[..., 0], (2.0, 2.0))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    data = json.loads((out / "flat.json").read_text())
    assert len(data["z"]) == 1
    assert any("2-D" in w or "2D" in w for w in data["warnings"])


def test_nan_voxels_are_replaced_with_a_warning(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = _body(6)
    data[10:12, 10:12, 2] = np.nan
    data[0, 0, 0] = np.inf
    src = _nifti(tmp_path / "some_nan.nii.gz", data)
    out = tmp_path / "out"
    assert main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    result = json.loads((out / "some_nan.json").read_text())
    assert any("non-finite" in w or "NaN" in w for w in result["warnings"])
    assert all(v is not None for v in result["unprocessed slice scores"])


def test_all_constant_volume_gives_a_result(tmp_path: Path, tiny_model_dir: Path) -> None:
    src = _nifti(tmp_path / "air.nii.gz", np.full((32, 32, 8), -1000.0, dtype=np.float32))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    result = json.loads((out / "air.json").read_text())
    # every slice is empty (s0): nothing is left after cleaning and the tag says so
    assert all(v is None for v in result["cleaned slice scores"])
    assert result["body part examined tag"] == "NONE"


def test_negative_spacing_uses_the_affine(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = _nifti(tmp_path / "neg.nii.gz", _body(6))
    img = nib.load(str(path))
    header = img.header.copy()
    header["pixdim"][3] = -5.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header), str(path))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(path), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    assert json.loads((out / "neg.json").read_text())["z-spacing"] == pytest.approx(5.0)


def test_non_uniform_spacing_is_reported(
    ct_dir: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    src = ct_dir / "dicom" / "ge_head_tilt18.5_varspacing"
    out = tmp_path / "out"
    assert main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    result = json.loads((out / "ge_head_tilt18.5_varspacing.json").read_text())
    warnings = " ".join(result["warnings"])
    assert "non-uniform" in warnings
    assert "tilt" in warnings
    z = np.asarray(result["z"])
    steps = np.diff(np.sort(z))
    assert steps.max() / steps.min() > 3
