"""Tests of bodyscore.usecases.sanity (thesis sec. 4.3.3, eq. 4.19-4.21)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.usecases.sanity import check_sanity, scored_extent_mm

M_S = 0.11943406374035223  # public model's expected slope m̄s, score units per mm


def _check(scores: np.ndarray, dz: float):  # type: ignore[no-untyped-def]
    z = np.arange(len(scores)) * dz
    return check_sanity(scores, z_mm=z, z_spacing_mm=dz, slope_mean=M_S)


def test_expected_slope_is_valid() -> None:
    dz = 2.5
    checks = _check(M_S * np.arange(100) * dz, dz)
    assert not checks.reverse_z_ordering
    assert checks.observed_slope == pytest.approx(M_S)
    assert checks.slope_ratio == pytest.approx(1.0)
    assert checks.relative_error == pytest.approx(0.0, abs=1e-12)
    assert checks.valid_z_spacing is True
    assert checks.expected_z_spacing == pytest.approx(dz)


def test_reversed_curve() -> None:
    dz = 5.0
    checks = _check(100.0 - M_S * np.arange(40) * dz, dz)
    assert checks.reverse_z_ordering
    assert checks.observed_slope == pytest.approx(-M_S)
    assert checks.slope_ratio == pytest.approx(1.0)  # |m| / m̄s: still a valid spacing
    assert checks.valid_z_spacing is True
    assert checks.expected_z_spacing == pytest.approx(-dz)  # bpreg's sign convention


def test_header_spacing_double_the_true_one() -> None:
    # true spacing 2.5 mm, header says 5 mm: per mm the scores rise half as fast
    true_dz, header_dz = 2.5, 5.0
    checks = _check(M_S * np.arange(80) * true_dz, header_dz)
    assert checks.slope_ratio == pytest.approx(0.5)
    assert checks.relative_error == pytest.approx(0.5)  # |1 - 0.5| > 0.28
    assert checks.valid_z_spacing is False
    assert checks.expected_z_spacing == pytest.approx(true_dz)


def test_header_spacing_half_the_true_one() -> None:
    true_dz, header_dz = 2.5, 1.25
    checks = _check(M_S * np.arange(80) * true_dz, header_dz)
    assert checks.slope_ratio == pytest.approx(2.0)
    assert checks.relative_error == pytest.approx(1.0)
    assert checks.valid_z_spacing is False
    assert checks.expected_z_spacing == pytest.approx(true_dz)


@pytest.mark.parametrize(
    ("ratio", "valid"), [(1.2, True), (0.75, True), (1.3, False), (0.7, False)]
)
def test_threshold(ratio: float, valid: bool) -> None:
    checks = _check(ratio * M_S * np.arange(30) * 3.0, 3.0)
    assert checks.valid_z_spacing is valid
    assert checks.threshold == 0.28


@pytest.mark.parametrize("scores", [[50.0], [np.nan, np.nan, 3.0], []])
def test_undefined_with_fewer_than_two_scores(scores: list[float]) -> None:
    checks = _check(np.asarray(scores), 2.0)
    assert checks.reverse_z_ordering is False
    assert checks.observed_slope is None
    assert checks.slope_ratio is None
    assert checks.valid_z_spacing is None
    assert checks.expected_z_spacing is None


def test_two_slices() -> None:
    checks = _check(np.array([10.0, 10.0 + 3 * M_S]), 3.0)
    assert checks.observed_slope == pytest.approx(M_S)
    assert checks.valid_z_spacing is True


def test_bad_parameters() -> None:
    with pytest.raises(InputError, match="slope_mean"):
        check_sanity([1.0, 2.0], z_mm=[0.0, 1.0], z_spacing_mm=1.0, slope_mean=0.0)
    with pytest.raises(InputError, match="z_spacing_mm"):
        check_sanity([1.0, 2.0], z_mm=[0.0, 1.0], z_spacing_mm=float("nan"), slope_mean=M_S)


@settings(max_examples=60, deadline=None)
@given(
    # scores 0.1 apart at least: a pair like (0, 5e-324) has a slope that underflows to 0
    values=st.lists(st.integers(-1000, 2000), min_size=2, max_size=50, unique=True),
    dz=st.floats(0.3, 10.0),
)
def test_monotone_curves_and_reversal(values: list[int], dz: float) -> None:
    rising = np.sort(np.asarray(values, dtype=np.float64)) / 10.0
    forward, backward = _check(rising, dz), _check(rising[::-1], dz)
    assert forward.reverse_z_ordering is False
    assert backward.reverse_z_ordering is True
    assert backward.slope_ratio == pytest.approx(forward.slope_ratio)
    assert backward.expected_z_spacing == pytest.approx(-forward.expected_z_spacing)


def test_short_volumes_leave_the_spacing_check_undefined_when_asked() -> None:
    # 20 slices at 2 mm: the scores span 38 mm; γ̂ = 0.5 would fail the check
    z = np.arange(20) * 2.0
    scores = 0.5 * M_S * z
    bpreg_like = check_sanity(scores, z_mm=z, z_spacing_mm=2.0, slope_mean=M_S)
    assert bpreg_like.valid_z_spacing is False
    ours = check_sanity(scores, z_mm=z, z_spacing_mm=2.0, slope_mean=M_S, min_extent_mm=100.0)
    assert ours.valid_z_spacing is None
    assert ours.reverse_z_ordering is False   # the order check still runs
    assert ours.relative_error == pytest.approx(0.5)
    # the extent counts valid scores only: 60 slices at 2 mm with NaN beyond the first 20
    long_z = np.arange(60) * 2.0
    padded = np.concatenate([scores, np.full(40, np.nan)])
    assert scored_extent_mm(padded, long_z) == pytest.approx(38.0)
    assert check_sanity(0.5 * M_S * long_z, z_mm=long_z, z_spacing_mm=2.0, slope_mean=M_S,
                        min_extent_mm=100.0).valid_z_spacing is False
    assert scored_extent_mm([1.0, np.nan], [0.0, 5.0]) == 0.0
