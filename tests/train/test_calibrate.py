"""Tests of the calibration (reference table, slopes, s0, monotone knots)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bodyscore.errors import ModelError
from bodyscore.postprocess import transform_scores
from bodyscore.settings import InferenceSettings, LandmarkStats
from bodyscore.train.calibrate import (
    ScoreCurve,
    calibrate_from_curves,
    calibration_knots,
    empty_slice_score,
    landmark_raw_scores,
    score_slices,
)

SLOPE = 0.02  # raw units per mm
RAW = {"pelvis_start": -2.0, "L1": 0.0, "eyes_end": 6.0}


def linear_curves(jitter=(-0.1, 0.0, 0.1, 0.2)):
    """Linear raw curves raw = SLOPE·z + c; landmark k placed where raw hits its value."""
    curves = []
    for i, dj in enumerate(jitter):
        dz = (2.0, 3.0, 5.0, 1.5)[i % 4]
        n = int(500 / dz)
        z = 100.0 * i + dz * np.arange(n)
        raw0 = -3.0 + 0.1 * i
        raw = raw0 + SLOPE * (z - z[0])
        landmarks = {name: (value - raw0) / (SLOPE * dz) for name, value in RAW.items()}
        landmarks["L1"] += dj / (SLOPE * dz)  # L1 raw score = dj
        curves.append(ScoreCurve(f"v{i}", raw, z, landmarks))
    return curves


def test_landmark_raw_scores_interpolates_fractional_k():
    curve = ScoreCurve("v", np.array([0.0, 1.0, 4.0]), np.arange(3.0), {"a": 1.5, "b": 9.0})
    assert landmark_raw_scores(curve) == {"a": 2.5}


def test_recovers_reference_table_and_slopes():
    curves = linear_curves()
    settings = calibrate_from_curves(curves, empty_slice_score=7.5)
    table = settings.lookup_table_original
    assert list(table) == ["pelvis_start", "eyes_end", "L1"]  # bpreg's landmark order
    assert table["pelvis_start"].mean == pytest.approx(-2.0)
    assert table["eyes_end"].mean == pytest.approx(6.0)
    l1 = np.array([-0.1, 0.0, 0.1, 0.2])
    assert table["L1"].mean == pytest.approx(l1.mean())
    assert table["L1"].std == pytest.approx(l1.std())
    t = settings.lookup_table
    assert t["pelvis_start"].mean == pytest.approx(0.0, abs=1e-9)
    assert t["eyes_end"].mean == pytest.approx(100.0)
    assert t["L1"].mean == pytest.approx((l1.mean() + 2) * 100 / 8)
    # std · 100 / (max − min), not bpreg's / max (bug 4)
    assert t["L1"].std == pytest.approx(l1.std() * 100 / 8)
    slope = SLOPE * 100 / 8  # transformed units per mm
    assert settings.slope_mean == pytest.approx(slope, rel=0.02)
    assert settings.slope_median == pytest.approx(slope, rel=0.02)
    assert settings.slope_std < 0.02 * slope
    assert settings.tangential_slope_min <= slope <= settings.tangential_slope_max
    assert settings.tangential_slope_mean == pytest.approx(slope, rel=0.05)
    assert settings.empty_slice_score == 7.5
    assert settings.calibration == ()
    # the settings round-trip through bpreg's file format
    again = InferenceSettings.from_bpreg_dict(settings.to_bpreg_dict())
    assert again.lookup_table["L1"].mean == pytest.approx(t["L1"].mean)


def test_missing_start_landmark_and_decreasing_model():
    curves = linear_curves()
    without = [ScoreCurve(c.volume_id, c.raw, c.z_mm,
                          {k: v for k, v in c.landmarks.items() if k != "pelvis_start"})
               for c in curves]
    with pytest.raises(ModelError, match="pelvis_start"):
        calibrate_from_curves(without)
    reversed_curves = [ScoreCurve(c.volume_id, -c.raw, c.z_mm, c.landmarks) for c in curves]
    with pytest.raises(ModelError, match="not trained enough"):
        calibrate_from_curves(reversed_curves)


def test_calibration_knots_strictly_monotone():
    ours = {"pelvis_start": -2.0, "femur_end": -1.0, "L3": 0.5, "L1": 0.2, "eyes_end": 6.0,
            "only_ours": 1.0}
    published = {"pelvis_start": 0.0, "femur_end": 13.6, "L3": 33.8, "L1": 40.0,
                 "eyes_end": 100.0, "only_published": 50.0}
    knots = calibration_knots(ours, published)
    # L3/L1 are swapped in our model: one of them is dropped, the rest is kept
    assert len(knots) == 4
    raws, scores = zip(*knots, strict=True)
    assert all(b > a for a, b in itertools.pairwise(raws))
    assert all(b > a for a, b in itertools.pairwise(scores))
    assert knots[0] == (-2.0, 0.0)
    assert knots[-1] == (6.0, 100.0)
    # the anchors are kept even when a longer chain without them exists
    crowd = {f"m{i}": -3.0 + 0.01 * i for i in range(5)}
    crowd_published = {f"m{i}": 20.0 + i for i in range(5)}
    ours2 = {"pelvis_start": -1.0, "eyes_end": 6.0, **crowd}
    published2 = {"pelvis_start": 0.0, "eyes_end": 100.0, **crowd_published}
    knots2 = calibration_knots(ours2, published2, candidates=None)
    assert knots2 == ((-1.0, 0.0), (6.0, 100.0))


def test_piecewise_calibration_maps_landmarks_to_published_scale():
    curves = linear_curves()
    published = InferenceSettings(
        lookup_table_original={"pelvis_start": LandmarkStats(-2.7, 0.1),
                               "eyes_end": LandmarkStats(5.5, 0.1),
                               "L1": LandmarkStats(0.0, 0.1)},
        lookup_table={"pelvis_start": LandmarkStats(0.0, 1.0),
                      "eyes_end": LandmarkStats(100.0, 1.0), "L1": LandmarkStats(40.0, 1.0)},
        slope_mean=0.12, tangential_slope_min=0.01, tangential_slope_max=0.2,
    )
    settings = calibrate_from_curves(curves, published=published)
    assert len(settings.calibration) == 3
    mapped = transform_scores(np.array([-2.0, settings.lookup_table_original["L1"].mean, 6.0]),
                              settings=settings)
    np.testing.assert_allclose(mapped, [0.0, 40.0, 100.0], atol=1e-9)
    assert settings.lookup_table["L1"].mean == pytest.approx(40.0)


def test_score_slices_and_s0_with_a_torch_model():
    class MeanNet(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).reshape(-1, 1) * 3.0

    slices = np.stack([np.full((8, 8), v, np.float32) for v in (-1.0, 0.0, 0.5)])
    np.testing.assert_allclose(score_slices(MeanNet(), slices, batch_size=2), [-3.0, 0.0, 1.5])
    assert empty_slice_score(MeanNet(), size=8) == pytest.approx(-3.0)


def test_calibration_knots_use_the_evaluation_landmarks_only():
    # C2, C3 and teeth (not evaluation landmarks) are out of order with C1 in our raw means:
    # with every landmark as a candidate they outvote C1; by default only the twelve
    # evaluation landmarks are candidates, so C1 gets its knot and lands on its published mean
    ours = {"pelvis_start": 0.0, "C6": 6.6, "C3": 7.23, "C2": 7.24, "teeth": 7.26, "C1": 7.2,
            "eyes_end": 8.4}
    published = {"pelvis_start": 0.0, "C6": 79.5, "C3": 85.6, "C2": 85.8, "teeth": 86.9,
                 "C1": 89.2, "eyes_end": 100.0}
    every = calibration_knots(ours, published, candidates=None)
    assert (7.2, 89.2) not in every
    assert len(every) == 6
    default = calibration_knots(ours, published)
    assert default == ((0.0, 0.0), (6.6, 79.5), (7.2, 89.2), (8.4, 100.0))
    mapped = np.interp([7.2], *zip(*default, strict=True))
    assert mapped[0] == pytest.approx(89.2)


def test_calibrate_model_never_uses_the_held_out_split(tmp_path):
    from bodyscore.train.data import Manifest, cache_volume

    class MeanNet(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).reshape(-1, 1) * 10.0

    ramp = np.linspace(-0.9, 0.9, 40, dtype=np.float32)[:, None, None] * np.ones((1, 8, 8))
    train = cache_volume(tmp_path, "train_vol", ramp, spacing_mm=(5.0, 1.0, 1.0),
                         landmarks={"pelvis_start": 5.0, "eyes_end": 35.0})
    # the held-out volume's annotation is absurd: were it used, pelvis_start's mean would move
    held = cache_volume(tmp_path, "held_vol", ramp, spacing_mm=(5.0, 1.0, 1.0),
                        landmarks={"pelvis_start": 30.0, "eyes_end": 35.0})
    from dataclasses import replace

    from bodyscore.train.calibrate import calibrate_model

    both = Manifest(volumes=(train, replace(held, split="test")))
    only_train = Manifest(volumes=(train,))
    got = calibrate_model(MeanNet(), both, tmp_path)
    expected = calibrate_model(MeanNet(), only_train, tmp_path)
    assert got.lookup_table_original == expected.lookup_table_original
    assert got.lookup_table_original["pelvis_start"].mean == pytest.approx(
        10.0 * float(ramp[5].mean()), abs=1e-2)


def test_sanity_slope_comes_from_real_volumes_when_there_are_enough():
    real = linear_curves(jitter=(0.0,) * 5)
    # synthetic bodies twice as "short" per score unit: raw climbs twice as fast per mm
    synthetic = [ScoreCurve(f"synth_{i}", c.raw, c.z_mm / 2.0,
                            dict(c.landmarks)) for i, c in enumerate(real[:3])]
    mixed = calibrate_from_curves(real + synthetic)
    only_real = calibrate_from_curves(real)
    # (not exactly equal: the synthetic curves still move the tail-removal quantiles a little)
    assert mixed.slope_mean == pytest.approx(only_real.slope_mean, rel=1e-3)
    # a real crop with a single landmark has nothing pinning its scale: it does not count
    crop = ScoreCurve("crop", real[0].raw, real[0].z_mm * 3.0,
                      {"L1": real[0].landmarks["L1"]})
    with_crop = calibrate_from_curves([*real, crop])
    assert with_crop.slope_mean == pytest.approx(only_real.slope_mean, rel=1e-3)
    # with fewer real volumes than min_real_for_slope, every curve counts
    pooled = calibrate_from_curves(real + synthetic, min_real_for_slope=6)
    assert pooled.slope_mean > only_real.slope_mean * 1.2


def test_spacing_threshold_is_the_largest_relative_error_of_long_real_volumes():
    real = linear_curves(jitter=(0.0,) * 5)
    exact = calibrate_from_curves(real)
    # every real curve has the same slope: γ̂ = 0, so θ stays at bpreg's 0.28
    assert exact.r_slope_threshold == pytest.approx(0.28)
    assert exact.spacing_check_min_extent_mm == 100.0
    # a real volume with 1.4× the slope per mm (its z squeezed) raises θ to its γ̂, measured
    # against the m̄s of the curves with >= 2 landmarks (the squeezed one has none)
    squeezed = ScoreCurve("squeezed", real[0].raw, real[0].z_mm / 1.4, {})
    with_squeezed = calibrate_from_curves([*real, squeezed])
    assert with_squeezed.slope_mean == pytest.approx(exact.slope_mean, rel=1e-3)
    assert with_squeezed.r_slope_threshold == pytest.approx(0.4)   # γ̂ = 0.4 (to 1e-9)
    # the same curve cut to 60 mm is too short to count, and so is a synthetic one
    short = ScoreCurve("short", real[0].raw[:31], real[0].z_mm[:31] / 1.4, {})
    synthetic = ScoreCurve("synth_9", squeezed.raw, squeezed.z_mm, {})
    assert calibrate_from_curves([*real, short, synthetic]).r_slope_threshold == pytest.approx(
        0.28)
