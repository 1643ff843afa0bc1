"""MONAI ``CropToBodyRegiond`` and TorchIO ``CropToBodyRegion`` in real ``Compose`` pipelines
with image + label, and their inverses restoring the original grid (extras [monai], [torchio];
CI installs both). Expected slices come from the same model's scores."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import bodyscore
from bodyscore.errors import InputError
from bodyscore.integrations._core import SCORES_KEY
from bodyscore.result import ScoreResult
from bodyscore.usecases.crop import CropBounds, slices_in_bounds
from helpers.region_ct import middle_bounds, write_slice_labels, write_synthetic_ct


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ScoreResult]:
    folder = tmp_path_factory.mktemp("transforms")
    ct = write_synthetic_ct(folder / "ct.nii.gz")
    labels = write_slice_labels(folder / "seg.nii.gz", ct)
    return ct, labels, bodyscore.predict(ct)


def _kept(result: ScoreResult, bounds: tuple[float, float]) -> tuple[int, int]:
    kept = slices_in_bounds(result, CropBounds(*bounds))
    assert kept is not None
    assert 0 < len(kept) < result.n_slices
    return kept.start, kept.stop


# -- MONAI ------------------------------------------------------------------------------------
def test_monai_compose_crop_and_invertd(case: tuple[Path, Path, ScoreResult]) -> None:
    pytest.importorskip("monai")
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        Invertd,
        LoadImaged,
        ScaleIntensityRanged,
    )

    from bodyscore.integrations.monai import CropToBodyRegiond

    ct, labels, result = case
    bounds = middle_bounds(result.cleaned)
    start, stop = _kept(result, bounds)
    keys = ["image", "label"]
    pre = Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        CropToBodyRegiond(keys=keys, scores=bounds),
        ScaleIntensityRanged(keys="image", a_min=-1000, a_max=1500, b_min=0.0, b_max=1.0),
    ])
    out = pre({"image": str(ct), "label": str(labels)})
    original = nib.load(str(labels))
    assert tuple(out["image"].shape) == (1, 64, 64, stop - start)
    assert tuple(out["label"].shape) == (1, 64, 64, stop - start)
    # labels on the crop are exactly those of the kept slices (value = slice index + 1)
    assert set(np.unique(out["label"].numpy()).tolist()) - {0} == set(range(start + 1, stop + 1))
    np.testing.assert_allclose(out["label"].affine.numpy()[:3, 3],
                               (original.affine @ [0, 0, start, 1])[:3], atol=1e-4)
    cache = json.loads(out["image"].meta[SCORES_KEY])
    assert len(cache["cleaned"]) == stop - start
    # a "prediction" on the crop is pasted back into the full grid by Invertd
    out["pred"] = out["label"].clone()
    restored = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(out)
    pred = restored["pred"]
    assert tuple(pred.shape[1:]) == original.shape
    np.testing.assert_allclose(pred.affine.numpy(), original.affine, atol=1e-4)
    full = np.asarray(original.dataobj)
    np.testing.assert_array_equal(pred[0].numpy()[:, :, start:stop], full[:, :, start:stop])
    assert not pred[0].numpy()[:, :, :start].any()
    assert not pred[0].numpy()[:, :, stop:].any()
    # and the transform's own inverse does the same for the label key
    back = pre.transforms[2].inverse({"image": out["image"], "label": out["label"]})
    assert tuple(back["label"].shape[1:]) == original.shape


def test_monai_uses_cached_scores_and_refuses_empty(case: tuple[Path, Path, ScoreResult],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("monai")
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from bodyscore.integrations import _core
    from bodyscore.integrations.monai import CropToBodyRegiond

    ct, _labels, result = case
    bounds = middle_bounds(result.cleaned)
    load = Compose([LoadImaged(keys=["image"], image_only=True),
                    EnsureChannelFirstd(keys=["image"])])
    first = CropToBodyRegiond(keys=["image"], scores=(-1e6, 1e6))(load({"image": str(ct)}))
    calls: list[int] = []
    monkeypatch.setattr(_core.BodyRegionCropper, "_score",
                        lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    again = CropToBodyRegiond(keys=["image"], scores=bounds)(first)  # from the cache
    assert not calls
    start, stop = _kept(result, bounds)
    assert again["image"].shape[-1] == stop - start
    with pytest.raises(InputError, match="no slice scores within"):
        CropToBodyRegiond(keys=["image"], scores=(500.0, 600.0))(first)
    kept = CropToBodyRegiond(keys=["image"], scores=(500.0, 600.0), on_empty="keep")(first)
    assert kept["image"].shape == first["image"].shape
    with pytest.raises(InputError, match="exactly one of"):
        CropToBodyRegiond(keys=["image"], scores=(1.0, 2.0), region="chest")


# -- TorchIO ----------------------------------------------------------------------------------
def test_torchio_compose_crop_and_inverse(case: tuple[Path, Path, ScoreResult]) -> None:
    tio = pytest.importorskip("torchio")
    from bodyscore.integrations.torchio import CropToBodyRegion

    ct, labels, result = case
    bounds = middle_bounds(result.cleaned)
    start, stop = _kept(result, bounds)
    subject = tio.Subject(ct=tio.ScalarImage(ct), seg=tio.LabelMap(labels))
    transform = tio.Compose([CropToBodyRegion(scores=bounds), tio.RescaleIntensity()])
    out = transform(subject)
    assert out["ct"].spatial_shape == (64, 64, stop - start)
    assert out["seg"].spatial_shape == (64, 64, stop - start)
    assert set(np.unique(out["seg"].numpy()).tolist()) - {0} == set(range(start + 1, stop + 1))
    assert len(json.loads(out[SCORES_KEY])["cleaned"]) == stop - start
    assert [t.name for t in out.get_applied_transforms()] == ["Crop", "RescaleIntensity"]
    restored = out.apply_inverse_transform(warn=False)
    original = nib.load(str(labels))
    assert restored["seg"].spatial_shape == original.shape
    np.testing.assert_allclose(restored["seg"].affine, original.affine, atol=1e-4)
    full = np.asarray(original.dataobj)
    seg = restored["seg"].numpy()[0]
    np.testing.assert_array_equal(seg[:, :, start:stop], full[:, :, start:stop])
    assert not seg[:, :, :start].any()
    assert not seg[:, :, stop:].any()


def test_torchio_known_region_file_and_cache(case: tuple[Path, Path, ScoreResult],
                                             tmp_path: Path) -> None:
    tio = pytest.importorskip("torchio")
    from bodyscore.integrations.torchio import CropToBodyRegion
    from bodyscore.usecases.known_region import fit_known_region

    ct, labels, result = case
    region_file = fit_known_region([result], q_min=0.0, q_max=1.0).write(tmp_path / "kr.json")
    subject = tio.Subject(ct=tio.ScalarImage(ct), seg=tio.LabelMap(labels))
    out = CropToBodyRegion(known_region=region_file, image_name="ct")(subject)
    kept = slices_in_bounds(result, CropBounds(float(np.nanmin(result.cleaned)),
                                               float(np.nanmax(result.cleaned))))
    assert kept is not None
    assert out["ct"].spatial_shape[2] == len(kept)
    with pytest.raises(InputError, match="no image 'missing'"):
        CropToBodyRegion(scores=(0.0, 1.0), image_name="missing")(subject)
