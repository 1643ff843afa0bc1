"""In-process tests of the command line (``main(argv) -> int``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.cli import expand_inputs, input_stem, main
from bodyscore.result import BPREG_KEYS


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


def load_strict(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)


def write_small_ct(path: Path, n_slices: int = 12, *, spacing=(1.5, 1.5, 5.0)) -> Path:
    """A small body-like NIfTI: an ellipse of soft tissue with a bright 'spine' in air."""
    yy, xx = np.mgrid[:64, :64]
    body = ((xx - 32) / 26.0) ** 2 + ((yy - 32) / 18.0) ** 2 < 1
    spine = ((xx - 32) / 4.0) ** 2 + ((yy - 42) / 4.0) ** 2 < 1
    data = np.full((64, 64, n_slices), -1000, dtype=np.int16)
    for k in range(n_slices):
        data[..., k][body.T] = 40 + 3 * k
        data[..., k][spine.T] = 700
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


def test_input_stem_strips_known_suffixes() -> None:
    assert input_stem("a/b/ct.nii.gz") == "ct"
    assert input_stem("x.nrrd") == "x"
    assert input_stem("/data/dicom_folder/") == "dicom_folder"


def test_expand_inputs_globs_and_keeps_missing(tmp_path: Path) -> None:
    for name in ("b.nii.gz", "a.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    out = expand_inputs([str(tmp_path / "*.nii.gz"), "missing.nii"])
    assert [Path(p).name for p in out] == ["a.nii.gz", "b.nii.gz", "missing.nii"]


def test_help_exits_zero_and_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from bodyscore.cli import main\n"
        "rc = main(['--help'])\n"
        "assert rc == 0, rc\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "import bodyscore\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "predict" in proc.stdout


def test_usage_error_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict"]) == 2


def test_predict_writes_strict_json_with_all_bpreg_keys(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = write_small_ct(tmp_path / "small ct.nii.gz")
    out = tmp_path / "out"
    rc = main(
        ["-q", "predict", str(ct), "-o", str(out), "--model", str(tiny_model_dir), "--csv", "--png"]
    )
    assert rc == 0, capsys.readouterr().err
    data = load_strict(out / "small ct.json")
    for key in BPREG_KEYS:
        assert key in data
    assert len(data["cleaned slice scores"]) == 12
    assert data["schema_version"]
    csv_lines = (out / "small ct.csv").read_text().splitlines()
    assert csv_lines[0].startswith("slice_index,")
    assert len(csv_lines) == 13
    assert (out / "small ct.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_stdout(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = write_small_ct(tmp_path / "ct.nii.gz", n_slices=5)
    rc = main(["-q", "predict", str(ct), "-o", "-", "--model", str(tiny_model_dir)])
    assert rc == 0
    data = json.loads(capsys.readouterr().out, parse_constant=_reject_constant)
    assert len(data["z"]) == 5


def test_predict_partial_failure_keeps_good_outputs(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_small_ct(tmp_path / "good.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:200])  # truncated gzip
    missing = tmp_path / "missing.nii.gz"
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "predict",
            str(bad),
            str(good),
            str(missing),
            "-o",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert (out / "good.json").exists()
    assert not (out / "bad.json").exists()
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 2
    assert any("bad.nii.gz" in line for line in error_lines)
    assert any("missing.nii.gz" in line for line in error_lines)
    assert "Traceback" not in err
    assert not list(out.glob("*.part"))


def test_predict_skip_existing(tmp_path: Path, tiny_model_dir: Path) -> None:
    ct = write_small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert main(["-q", "predict", str(ct), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    (out / "ct.json").write_text("{}")
    assert (
        main(
            [
                "-q",
                "predict",
                str(ct),
                "-o",
                str(out),
                "--model",
                str(tiny_model_dir),
                "--skip-existing",
            ]
        )
        == 0
    )
    assert (out / "ct.json").read_text() == "{}"


def test_predict_unknown_model_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = write_small_ct(tmp_path / "ct.nii.gz")
    rc = main(["-q", "predict", str(ct), "-o", str(tmp_path), "--model", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error:")
    assert "Traceback" not in err


def test_predict_one_slice_gives_a_result(tmp_path: Path, tiny_model_dir: Path) -> None:
    ct = write_small_ct(tmp_path / "one.nii.gz", n_slices=1)
    out = tmp_path / "out"
    assert main(["-q", "predict", str(ct), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    data = load_strict(out / "one.json")
    assert len(data["cleaned slice scores"]) == 1
    assert data["valid z-spacing"] is None
    assert isinstance(data["body part examined tag"], str)


def test_crop_by_scores_writes_nifti_subset(tmp_path: Path, tiny_model_dir: Path) -> None:
    ct = write_small_ct(tmp_path / "ct.nii.gz")
    out = tmp_path / "cropped.nii.gz"
    rc = main(
        [
            "-q",
            "crop",
            str(ct),
            "-o",
            str(out),
            "--scores",
            "-1000",
            "1000",
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert rc == 0
    cropped = nib.load(str(out))
    assert cropped.shape[:2] == (64, 64)
    assert 1 <= cropped.shape[2] <= 12
    original = nib.load(str(ct))
    assert cropped.get_data_dtype() == original.get_data_dtype()


def test_models_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "default" in out
    assert "bpreg-public" in out


def test_models_info_of_a_folder(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", str(tiny_model_dir)]) == 0
    assert "expected slope" in capsys.readouterr().out


def test_outputs_get_normal_file_permissions(tmp_path: Path, tiny_model_dir: Path) -> None:
    import os

    ct = write_small_ct(tmp_path / "ct.nii.gz", n_slices=4)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert main(["-q", "predict", str(ct), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    finally:
        os.umask(old)
    assert (out / "ct.json").stat().st_mode & 0o777 == 0o644
