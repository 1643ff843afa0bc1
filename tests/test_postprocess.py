"""Tests of bodyscore.postprocess (thesis sec. 4.3, fig. 4.8, eq. 4.12, 4.17)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import gaussian_filter1d

from bodyscore.errors import InputError, ModelError
from bodyscore.postprocess import (
    clean_scores,
    filter_empty_slices,
    fit_slope,
    inverse_transform_scores,
    remove_tails,
    smooth_scores,
    transform_scores,
)
from bodyscore.settings import InferenceSettings

SETTINGS_FILE = Path("data/bpreg-public-model/inference-settings.json")


def _knotted(settings: InferenceSettings) -> InferenceSettings:
    return dataclasses.replace(settings, calibration=((-3.0, -10.0), (0.0, 40.0), (5.0, 100.0)))


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


# -- filter s0 ----------------------------------------------------------------------------------
def test_filter_background_scores_rounded_to_two_decimals() -> None:
    raw = np.array([1.0, 6.2201, 6.224, 6.226, 110.834, np.inf, 3.0])
    out = filter_empty_slices(raw, background_scores=(6.22, 110.83))
    # 6.2201 and 6.224 round to 6.22, 110.834 to 110.83; 6.226 rounds to 6.23; inf is invalid
    np.testing.assert_array_equal(np.isnan(out), [0, 1, 1, 0, 1, 1, 0])
    assert out[0] == 1.0
    assert out[3] == 6.226
    assert raw[1] == 6.2201  # input untouched


def test_filter_empty_mask_and_shape_check() -> None:
    out = filter_empty_slices([1.0, 2.0, 3.0], empty_mask=[False, True, False])
    np.testing.assert_array_equal(np.isnan(out), [False, True, False])
    with pytest.raises(InputError, match="empty_mask"):
        filter_empty_slices([1.0, 2.0], empty_mask=[True])


# -- transform (eq. 4.12) -----------------------------------------------------------------------
def test_linear_transform_maps_landmarks_to_0_and_100(public_settings: InferenceSettings) -> None:
    lo, hi = -2.6928066412607827, 5.488396673491507
    out = transform_scores([lo, hi, (lo + hi) / 2, 0.0, np.nan], settings=public_settings)
    np.testing.assert_allclose(out[:3], [0.0, 100.0, 50.0], atol=1e-12)
    # hand: (0 + 2.6928066412607827) * 100 / 8.1812033147522897
    assert out[3] == pytest.approx(32.91456, abs=1e-5)
    assert np.isnan(out[4])


def test_calibration_knots_piecewise_linear_with_extrapolation(
    public_settings: InferenceSettings,
) -> None:
    knotted = _knotted(public_settings)
    raw = [-4.0, -3.0, -1.5, 0.0, 2.5, 5.0, 6.0]
    # segments: slope 50/3 below 0, 12 above 0; extrapolated with the end slopes
    expected = [-10.0 - 50.0 / 3.0, -10.0, 15.0, 40.0, 70.0, 100.0, 112.0]
    np.testing.assert_allclose(transform_scores(raw, settings=knotted), expected)
    np.testing.assert_allclose(inverse_transform_scores(expected, settings=knotted), raw)


def test_calibration_with_one_knot_is_a_model_error(public_settings: InferenceSettings) -> None:
    bad = dataclasses.replace(public_settings, calibration=((0.0, 1.0),))
    with pytest.raises(ModelError, match="at least 2"):
        transform_scores([0.0], settings=bad)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=30), knots=st.booleans())
def test_transform_monotone_and_invertible(
    public_settings: InferenceSettings, values: list[float], knots: bool
) -> None:
    used = _knotted(public_settings) if knots else public_settings
    raw = np.sort(np.asarray(values))
    out = transform_scores(raw, settings=used)
    assert np.all(np.diff(out) >= 0)
    np.testing.assert_allclose(inverse_transform_scores(out, settings=used), raw, atol=1e-9)


# -- smoothing ----------------------------------------------------------------------------------
def test_uniform_smoothing_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=50).cumsum()
    z = np.arange(50) * 2.5
    expected = gaussian_filter1d(values, sigma=4.0, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(smooth_scores(values, z_mm=z, sigma_mm=10.0), expected)


def test_uniform_smoothing_compresses_nan_gaps_like_bpreg() -> None:
    values = np.array([0.0, 1.0, np.nan, np.nan, 5.0, 2.0, 7.0])
    z = np.arange(7) * 5.0
    out = smooth_scores(values, z_mm=z, sigma_mm=10.0)
    expected = gaussian_filter1d(values[[0, 1, 4, 5, 6]], sigma=2.0, truncate=4.0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(values))
    np.testing.assert_allclose(out[[0, 1, 4, 5, 6]], expected)


def test_non_uniform_smoothing_by_physical_distance() -> None:
    z = np.array([0.0, 10.0, 30.0])
    values = np.array([0.0, 10.0, 20.0])
    out = smooth_scores(values, z_mm=z, sigma_mm=10.0)
    g = [math.exp(-0.5 * d**2) for d in (0, 1, 2, 3)]  # distances in units of σ
    first = (g[0] * 0 + g[1] * 10 + g[3] * 20) / (g[0] + g[1] + g[3])
    middle = (g[1] * 0 + g[0] * 10 + g[2] * 20) / (g[1] + g[0] + g[2])
    last = (g[3] * 0 + g[2] * 10 + g[0] * 20) / (g[3] + g[2] + g[0])
    np.testing.assert_allclose(out, [first, middle, last])
    # a constant curve stays constant
    np.testing.assert_allclose(smooth_scores([3.0, 3.0, 3.0], z_mm=z), 3.0)


def test_smoothing_edge_cases() -> None:
    np.testing.assert_array_equal(smooth_scores([4.0], z_mm=[0.0]), [4.0])
    out = smooth_scores([np.nan, 2.0, np.nan], z_mm=[0.0, 1.0, 2.0])
    np.testing.assert_array_equal(out[1], 2.0)
    np.testing.assert_array_equal(smooth_scores([1.0, 5.0], z_mm=[0, 1], sigma_mm=0), [1.0, 5.0])
    with pytest.raises(InputError, match="monotone"):
        smooth_scores([1.0, 2.0, 3.0], z_mm=[0.0, 2.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(values=st.lists(finite, min_size=2, max_size=40))
def test_uniform_smoothing_commutes_with_reversal(values: list[float]) -> None:
    arr = np.asarray(values)
    z = np.arange(arr.size) * 3.0
    forward = smooth_scores(arr, z_mm=z)
    backward = smooth_scores(arr[::-1], z_mm=z)
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-9)


# -- slope fit ----------------------------------------------------------------------------------
def test_fit_slope_hand_worked() -> None:
    assert fit_slope([1.0, 3.0, np.nan, 7.0], z_mm=[0.0, 1.0, 2.0, 3.0]) == pytest.approx((2, 1))
    slope, intercept = fit_slope([1.0, np.nan], z_mm=[0.0, 1.0])
    assert math.isnan(slope)
    assert math.isnan(intercept)


# -- tail removal (eq. 4.17) --------------------------------------------------------------------
SLOPE_MIN, SLOPE_MAX = 0.010051471015287916, 0.20596208291836363


def _legs_body_head_curve() -> tuple[np.ndarray, np.ndarray]:
    """Flat legs tail at -20 up to z = 100 mm, slope 0.12/mm to 100 at 1100 mm, then 0.5/mm."""
    z = np.arange(241) * 5.0
    s = np.where(z <= 100, -20.0, -20.0 + 0.12 * (z - 100))
    s = np.where(z > 1100, 100.0 + 0.5 * (z - 1100), s)
    return s, z


def test_remove_tails_flat_legs_and_steep_head() -> None:
    s, z = _legs_body_head_curve()
    out = remove_tails(s, z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    # slopes: 0 for i < 20 (outliers), 0.12 for 20..219, 0.5 from 220 (outliers).
    # 0-boundary: index 53 (score -0.2); 100-boundary: index 220 (score 100).
    # left: outliers < 53 → max 19 → [:19] removed; right: outliers > 220 → [221:] removed.
    kept = np.flatnonzero(~np.isnan(out))
    assert (kept[0], kept[-1]) == (19, 220)
    np.testing.assert_array_equal(out[19:221], s[19:221])


def test_remove_tails_symmetric_under_reversal() -> None:
    s, z = _legs_body_head_curve()
    forward = remove_tails(s, z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    backward = remove_tails(s[::-1], z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    # bpreg would keep the legs tail and cut the whole head tail here (its bug 6)
    np.testing.assert_array_equal(backward, forward[::-1])
    kept = np.flatnonzero(~np.isnan(backward))
    assert (kept[0], kept[-1]) == (20, 221)
    # positions given head to feet: same slices removed
    decreasing = remove_tails(s[::-1], z_mm=z[::-1], slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    np.testing.assert_array_equal(decreasing, forward[::-1])


def test_remove_tails_uses_real_positions() -> None:
    # legs from -30: a 100 mm gap between slices 10 and 11; 0.12/mm everywhere physically
    z = np.concatenate([np.arange(11) * 5.0, 150.0 + np.arange(150) * 5.0])
    s = -30.0 + 0.12 * z
    out = remove_tails(s, z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    assert not np.any(np.isnan(out))  # per index the gap would be 12/5 = 2.4 > slope_max


def test_remove_tails_flat_curve_and_short_inputs() -> None:
    flat = np.zeros(10)
    np.testing.assert_array_equal(
        remove_tails(flat, z_mm=np.arange(10.0), slope_min=SLOPE_MIN, slope_max=SLOPE_MAX), flat
    )
    one = remove_tails([5.0], z_mm=[0.0], slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    np.testing.assert_array_equal(one, [5.0])
    nan = remove_tails([np.nan] * 3, z_mm=[0, 1, 2], slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    assert np.all(np.isnan(nan))


@settings(max_examples=80, deadline=None)
@given(values=arrays(np.float64, st.integers(2, 60), elements=st.floats(-60, 160)))
def test_remove_tails_reversal_property(values: np.ndarray) -> None:
    z = np.arange(values.size) * 2.0
    forward = remove_tails(values, z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    backward = remove_tails(values[::-1], z_mm=z, slope_min=SLOPE_MIN, slope_max=SLOPE_MAX)
    np.testing.assert_array_equal(backward[::-1], forward)
    kept = ~np.isnan(forward)
    np.testing.assert_array_equal(forward[kept], values[kept])


# -- fig. 4.8 as a whole ------------------------------------------------------------------------
def test_clean_scores_pipeline(public_settings: InferenceSettings) -> None:
    z = np.arange(200) * 2.5
    target = np.linspace(-10.0, 80.0, 200)
    raw = inverse_transform_scores(target, settings=public_settings)
    raw[[0, 1]] = 6.22  # bpreg background score: filtered
    empty = np.zeros(200, dtype=bool)
    empty[100] = True
    result = clean_scores(raw, z_mm=z, settings=public_settings, empty_mask=empty)
    np.testing.assert_allclose(result.unprocessed[2:], target[2:], atol=1e-9)
    assert result.unprocessed[0] == pytest.approx(108.94, abs=0.01)  # unfiltered
    assert np.isnan(result.cleaned[[0, 1, 100]]).all()
    # slope 90 / 497.5 = 0.1809/mm, inside the tangential range: nothing else removed
    assert np.count_nonzero(np.isnan(result.cleaned)) == 3
    assert result.slope == pytest.approx(90 / 497.5, rel=0.02)
    with pytest.raises(ValueError, match="read-only"):
        result.cleaned[5] = 0.0


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float64, st.integers(1, 50), elements=st.floats(-8, 10)))
def test_clean_scores_any_curve(public_settings: InferenceSettings, values: np.ndarray) -> None:
    z = np.arange(values.size) * 3.0
    result = clean_scores(values, z_mm=z, settings=public_settings)
    valid = ~np.isnan(result.cleaned)
    assert np.all(np.isfinite(result.cleaned[valid]))
    assert np.all(np.isfinite(result.unprocessed))
    assert math.isnan(result.slope) == (np.count_nonzero(valid) < 2)
    mirrored = clean_scores(values[::-1], z_mm=z, settings=public_settings)
    np.testing.assert_array_equal(np.isnan(mirrored.cleaned[::-1]), ~valid)


def _bpreg_cleaned(raw: np.ndarray, dz: float, s: InferenceSettings) -> np.ndarray:
    """bpreg 1.1.0 ``Scores`` (notes §3.6) for a curve rising with the slice index."""
    x = raw.astype(float).copy()
    for target in s.background_scores:
        x[np.round(x, 2) == target] = np.nan
    x = (x - s.transform_min) * 100 / (s.transform_max - s.transform_min)
    ok = ~np.isnan(x)
    x[ok] = gaussian_filter1d(x[ok], sigma=10 / dz)
    d0, d100 = np.abs(x), np.abs(x - 100)
    lo = np.nanargmin(d0) if np.nanmin(d0) < 10 else np.nan
    hi = np.nanargmin(d100) if np.nanmin(d100) < 10 else np.nan
    if lo > hi:
        lo = np.nan
    slopes = np.append(np.diff(x), np.diff(x)[-1]) / dz
    out = np.flatnonzero((slopes < s.tangential_slope_min) | (slopes > s.tangential_slope_max))
    left, right = out[out < lo], out[out > hi]
    if left.size:
        x[: left.max()] = np.nan
    if right.size:
        x[right.min() :] = np.nan
    return x


def test_clean_scores_matches_bpreg_on_increasing_curves(
    public_settings: InferenceSettings,
) -> None:
    rng = np.random.default_rng(3)
    dz = 2.0
    z = np.arange(600) * dz
    target = np.interp(z, [0, 150, 1050, 1200], [-25, -24, 102, 130])
    raw = inverse_transform_scores(target + rng.normal(0, 1.5, z.size), settings=public_settings)
    raw[[0, 1, 598, 599]] = 6.22  # empty slices as the public model scores them
    ours = clean_scores(raw, z_mm=z, settings=public_settings).cleaned
    reference = _bpreg_cleaned(raw, dz, public_settings)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-9)
    assert np.isnan(ours[:50]).all()
    assert np.isnan(ours[-50:]).all()
