"""Tests of bodyscore.usecases.crop (thesis sec. 4.3.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.result import ScoreResult
from bodyscore.settings import InferenceSettings
from bodyscore.usecases.crop import (
    CropBounds,
    SliceRange,
    bounds_from_landmarks,
    bounds_from_results,
    bounds_from_scores,
    slices_in_bounds,
)


def _result(cleaned: list[float]) -> ScoreResult:
    n = len(cleaned)
    return ScoreResult(
        cleaned_scores=tuple(cleaned),
        z_mm=tuple(float(i) for i in range(n)),
        unprocessed_scores=tuple(cleaned),
        body_part_examined={},
        body_part_examined_tag="NONE",
        lookup_table={},
        reverse_z_ordering=False,
        valid_z_spacing=None,
        expected_slope=0.12,
        observed_slope=None,
        slope_ratio=None,
        expected_z_spacing=None,
        z_spacing=1.0,
    )


def test_bounds_from_scores_and_validation() -> None:
    assert bounds_from_scores(10, 20) == CropBounds(10.0, 20.0)
    with pytest.raises(InputError, match="score_min <= score_max"):
        bounds_from_scores(20, 10)
    with pytest.raises(InputError):
        CropBounds(math.nan, 1.0)


def test_bounds_from_landmarks(public_settings: InferenceSettings) -> None:
    lut = public_settings.lookup_table
    b = bounds_from_landmarks(["L5", "Th8"], lookup_table=lut)
    assert (b.score_min, b.score_max) == pytest.approx((25.532, 56.856))
    # thesis example for a kidney model; case and '-'/'_' insensitive, order irrelevant
    b = bounds_from_landmarks(["TH12", "femur-end"], lookup_table=lut)
    assert (b.score_min, b.score_max) == pytest.approx((13.616, 44.952))
    b = bounds_from_landmarks(["chest"], lookup_table=lut)  # table 4.6: Th12 … Th1
    assert (b.score_min, b.score_max) == pytest.approx((44.952, 75.794))
    b = bounds_from_landmarks(["pelvis", "abdomen"], lookup_table=lut)
    assert (b.score_min, b.score_max) == pytest.approx((0.0, 56.856))
    assert bounds_from_landmarks(["legs"], lookup_table=lut) == CropBounds(-math.inf, 0.0)
    b = bounds_from_landmarks(["neck", "head"], lookup_table=lut)
    assert (b.score_min, b.score_max) == (pytest.approx(70.973), math.inf)


def test_bounds_from_landmarks_errors(public_settings: InferenceSettings) -> None:
    lut = public_settings.lookup_table
    with pytest.raises(InputError, match="unknown landmark or region 'spleen'"):
        bounds_from_landmarks(["spleen"], lookup_table=lut)
    with pytest.raises(InputError, match="no landmark"):
        bounds_from_landmarks([], lookup_table=lut)
    partial = {k: v for k, v in lut.items() if k != "Th1"}
    with pytest.raises(InputError, match="needs landmark 'Th1'"):
        bounds_from_landmarks(["chest"], lookup_table=partial)


def test_bounds_from_results_quantiles() -> None:
    # minima 0, 10, 20, 30, 40 and maxima 50, 60, 70, 80, 90; an all-NaN volume is skipped
    results = [_result([10.0 * k, np.nan, 50.0 + 10.0 * k]) for k in range(5)]
    results.append(_result([np.nan, np.nan]))
    b = bounds_from_results(results, q_min=0.25, q_max=0.5)
    assert (b.score_min, b.score_max) == pytest.approx((10.0, 70.0))
    b = bounds_from_results(results)  # 5 % of minima: 0 + 0.2·10 = 2; 95 %: 80 + 0.8·10 = 88
    assert (b.score_min, b.score_max) == pytest.approx((2.0, 88.0))
    with pytest.raises(InputError, match="no result"):
        bounds_from_results([_result([np.nan])])
    with pytest.raises(InputError, match="quantile"):
        bounds_from_results(results, q_min=-0.1)


def test_slices_in_bounds_longest_run_bridging_gaps() -> None:
    scores = [np.nan, -5.0, 10.0, 20.0, np.nan, 30.0, 50.0, 20.0, 80.0, 10.0]
    found = slices_in_bounds(_result(scores), CropBounds(5.0, 40.0))
    # in bounds: 2, 3, (4 missing, bridged), 5 | 7 | 9 → longest [2, 6)
    assert found == SliceRange(2, 6)
    assert len(found) == 4
    assert found.as_slice() == slice(2, 6)
    assert slices_in_bounds(_result(scores), CropBounds(100.0, 110.0)) is None
    # a missing score at the edge is not bridged; ties → the first run
    assert slices_in_bounds(_result([np.nan, 7.0, 1.0, 7.0]), CropBounds(5, 8)) == SliceRange(1, 2)
    # inclusive bounds
    assert slices_in_bounds(_result([5.0, 8.0]), CropBounds(5, 8)) == SliceRange(0, 2)


def test_slices_in_bounds_input_order() -> None:
    # a volume stored head first: input order has decreasing scores
    scores = list(np.linspace(100.0, -10.0, 12))
    found = slices_in_bounds(_result(scores), CropBounds(0.0, 50.0))
    assert found is not None
    kept = np.asarray(scores)[found.as_slice()]
    assert np.all((kept >= 0) & (kept <= 50))
    assert found.start > 0
    assert found.stop < 12


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.just(math.nan), st.floats(-20, 120)), min_size=1, max_size=40),
    lo=st.floats(-20, 120),
    width=st.floats(0, 60),
)
def test_slices_in_bounds_property(values: list[float], lo: float, width: float) -> None:
    bounds = CropBounds(lo, lo + width)
    found = slices_in_bounds(_result(values), bounds)
    arr = np.asarray(values)
    inside = (arr >= bounds.score_min) & (arr <= bounds.score_max)
    if found is None:
        assert not inside.any()
        return
    kept = arr[found.as_slice()]
    assert np.all(np.isnan(kept) | ((kept >= bounds.score_min) & (kept <= bounds.score_max)))
    assert inside[found.start]
    assert inside[found.stop - 1]
