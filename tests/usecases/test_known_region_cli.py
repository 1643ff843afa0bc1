"""``bodyscore crop --labels/--mask-outside/--known-region`` and ``bodyscore known-region fit``
(thesis sec. 4.3.2), in-process on a synthetic CT with the bundled model. The expected slices
come from the same model's scores, never from fixed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import bodyscore
from bodyscore.cli import main
from bodyscore.result import ScoreResult
from bodyscore.usecases.crop import CropBounds, slices_in_bounds
from bodyscore.usecases.known_region import KnownRegion, fit_known_region, model_mismatch
from helpers.region_ct import (
    middle_bounds,
    surviving_slices,
    write_slice_labels,
    write_synthetic_ct,
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ScoreResult]:
    folder = tmp_path_factory.mktemp("region_ct")
    ct = write_synthetic_ct(folder / "ct.nii.gz")
    labels = write_slice_labels(folder / "seg.nii.gz", ct)
    return ct, labels, bodyscore.predict(ct)


def _expected(result: ScoreResult, bounds: tuple[float, float]) -> set[int]:
    kept = slices_in_bounds(result, CropBounds(*bounds))
    assert kept is not None
    assert 0 < len(kept) < result.n_slices
    return set(range(kept.start, kept.stop))


def test_crop_with_labels(scored: tuple[Path, Path, ScoreResult], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    ct, labels, result = scored
    lo, hi = middle_bounds(result.cleaned)
    out, labels_out = tmp_path / "ct_crop.nii.gz", tmp_path / "seg_crop.nii.gz"
    argv = ["-q", "crop", str(ct), "-o", str(out), "--scores", str(lo), str(hi),
            "--labels", str(labels), "--labels-out", str(labels_out)]
    assert main(argv) == 0
    expected = _expected(result, (lo, hi))
    assert surviving_slices(labels_out) == expected
    assert nib.load(str(out)).shape == nib.load(str(labels_out)).shape
    np.testing.assert_allclose(nib.load(str(out)).affine, nib.load(str(labels_out)).affine)
    assert "labels on slices" in capsys.readouterr().err


def test_crop_labels_default_name(scored: tuple[Path, Path, ScoreResult], tmp_path: Path) -> None:
    ct, labels, result = scored
    lo, hi = middle_bounds(result.cleaned)
    out = tmp_path / "ct_crop.nii.gz"
    argv = ["-q", "crop", str(ct), "-o", str(out), "--scores", str(lo), str(hi),
            "--labels", str(labels)]
    assert main(argv) == 0
    assert surviving_slices(tmp_path / "seg_cropped.nii.gz") == _expected(result, (lo, hi))


def test_mask_outside_writes_only_the_masked_labels(
    scored: tuple[Path, Path, ScoreResult], tmp_path: Path
) -> None:
    ct, labels, result = scored
    lo, hi = middle_bounds(result.cleaned)
    out = tmp_path / "seg_masked.nii.gz"
    argv = ["-q", "crop", str(ct), "-o", str(out), "--scores", str(lo), str(hi),
            "--labels", str(labels), "--mask-outside"]
    assert main(argv) == 0
    assert nib.load(str(out)).shape == nib.load(str(labels)).shape
    assert surviving_slices(out) == _expected(result, (lo, hi))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_masked.nii.gz"]


def test_label_errors_are_one_line(scored: tuple[Path, Path, ScoreResult], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ct, labels, _ = scored
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 10), np.uint8), np.eye(4)), str(other))
    base = ["-q", "crop", str(ct), "-o", str(tmp_path / "o.nii.gz"), "--scores", "0", "100"]
    assert main([*base, "--labels", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {other}: its grid")
    assert main([*base, "--mask-outside"]) == 1
    assert "give the label map with --labels" in capsys.readouterr().err
    assert main([*base, "--labels", str(labels), "--mask-outside", "--labels-out", "x.nii"]) == 1
    assert "masked labels go to -o" in capsys.readouterr().err


def test_known_region_fit_and_reuse(scored: tuple[Path, Path, ScoreResult], tmp_path: Path
                                    ) -> None:
    ct, labels, result = scored
    results_dir = tmp_path / "results"
    assert main(["-q", "predict", str(ct), "-o", str(results_dir)]) == 0
    region_file = tmp_path / "known-region.json"
    assert main(["-q", "known-region", "fit", str(results_dir), "--q-min", "0.25", "--q-max",
                 "0.75", "-o", str(region_file)]) == 0
    data = json.loads(region_file.read_text())
    one = ScoreResult.from_json(results_dir / "ct.json")
    assert data["score_min"] == pytest.approx(float(np.nanmin(one.cleaned)))
    assert data["score_max"] == pytest.approx(float(np.nanmax(one.cleaned)))
    assert data["model"]["sha256"] == one.model["sha256"]
    assert data["q_min"] == 0.25
    assert data["n_volumes"] == 1
    # images are scored when no result files are given: same bounds
    from_images = tmp_path / "from-images.json"
    assert main(["-q", "known-region", "fit", str(ct), "-o", str(from_images)]) == 0
    assert json.loads(from_images.read_text())["score_min"] == pytest.approx(data["score_min"])
    # a region spanning the whole volume keeps every slice with a score
    out = tmp_path / "crop.nii.gz"
    assert main(["-q", "crop", str(ct), "-o", str(out), "--known-region", str(region_file),
                 "--labels", str(labels)]) == 0
    kept = slices_in_bounds(result, KnownRegion.read(region_file).bounds)
    assert kept is not None
    assert surviving_slices(tmp_path / "seg_cropped.nii.gz") == set(range(kept.start, kept.stop))


def test_fit_quantiles_and_model_check(scored: tuple[Path, Path, ScoreResult]) -> None:
    _, _, result = scored
    shifted = [result.replace(cleaned_scores=tuple(
        None if v is None else v + offset for v in result.cleaned_scores)) for offset in
        (0.0, 10.0, 20.0)]
    lo = float(np.nanmin(result.cleaned))
    hi = float(np.nanmax(result.cleaned))
    region = fit_known_region(shifted, q_min=0.5, q_max=0.5, volumes=["a", "b", "c"])
    # medians of the minima and maxima: the middle volume's (hand-worked)
    assert region.bounds.score_min == pytest.approx(lo + 10.0)
    assert region.bounds.score_max == pytest.approx(hi + 10.0)
    assert KnownRegion.from_dict(json.loads(json.dumps(region.to_dict()))) == region
    assert model_mismatch(region, result.model) is None
    assert "refit" in (model_mismatch(region, {"name": "x", "version": "1", "sha256": "f"}) or "")
    other = result.replace(model={**result.model, "sha256": "other"})
    with pytest.raises(bodyscore.InputError, match="different models"):
        fit_known_region([result, other])


def test_known_region_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"score_min": 1}')
    with pytest.raises(bodyscore.InputError, match="not a known-region file"):
        KnownRegion.read(bad)
    with pytest.raises(bodyscore.InputError, match="not found"):
        KnownRegion.read(tmp_path / "missing.json")
