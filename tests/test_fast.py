"""Tests of the fast path: slice thinning along z + interpolation (bodyscore.fast)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.fast import air_only_slices, predict_raw_scores_fast, select_slices
from bodyscore.inference import predict_raw_scores
from bodyscore.io import volume_from_array
from bodyscore.volume import Volume

pytestmark = pytest.mark.timeout(120)


# -- select_slices --------------------------------------------------------------------------------
def test_select_slices_hand_worked() -> None:
    """z = 0, 0.8, ..., 4.0 mm with 2.5 mm steps: 0 → 2.4 (idx 3) → 4.0 (idx 5)."""
    z = np.arange(6) * 0.8
    assert select_slices(z, np.arange(6), max_step_mm=2.5).tolist() == [0, 3, 5]


def test_select_slices_keeps_everything_when_spacing_is_coarse() -> None:
    z = np.arange(5) * 3.0
    assert select_slices(z, np.arange(5), max_step_mm=2.5).tolist() == [0, 1, 2, 3, 4]


def test_select_slices_exact_multiple_is_reached() -> None:
    """0.5 mm × 5 = 2.5 mm exactly (float) still counts as within reach."""
    z = np.arange(11) * 0.5
    assert select_slices(z, np.arange(11), max_step_mm=2.5).tolist() == [0, 5, 10]


def test_select_slices_respects_candidates() -> None:
    z = np.arange(10) * 1.0
    candidates = np.array([0, 1, 2, 7, 8, 9])
    assert select_slices(z, candidates, max_step_mm=2.0).tolist() == [0, 2, 7, 9]


def test_select_slices_rejects_bad_step() -> None:
    with pytest.raises(ValueError, match="max_step_mm"):
        select_slices(np.arange(3.0), np.arange(3), max_step_mm=0.0)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0.1, 6.0), min_size=1, max_size=80),
    max_step=st.floats(0.5, 8.0),
)
def test_select_slices_properties(steps: list[float], max_step: float) -> None:
    """Ends kept, increasing, and each gap ≤ max_step unless the slices themselves are farther."""
    z = np.concatenate([[0.0], np.cumsum(steps)])
    chosen = select_slices(z, np.arange(z.size), max_step_mm=max_step)
    assert chosen[0] == 0
    assert chosen[-1] == z.size - 1
    assert np.all(np.diff(chosen) > 0)
    for a, b in itertools.pairwise(chosen):
        assert z[b] - z[a] <= max_step * (1 + 1e-9) or b == a + 1


# -- air_only_slices ------------------------------------------------------------------------------
def test_air_only_slices() -> None:
    array = np.full((3, 4, 4), -1024, dtype=np.int16)
    array[1, 2, 2] = -999  # 1 HU above the floor: not air only
    array[2] = -1000
    assert air_only_slices(array, min_hu=-1000, max_hu=1500).tolist() == [True, False, True]


# -- predict_raw_scores_fast ----------------------------------------------------------------------
class _LinearModel:
    """Stand-in ScoreModel: raw score = mean of the preprocessed slice (counts calls)."""

    def __init__(self, package: object) -> None:
        self.package = package
        self.scored = 0

    def predict_raw(self, batch: np.ndarray) -> np.ndarray:
        self.scored += batch.shape[0]
        return batch.reshape(batch.shape[0], -1).mean(axis=1).astype(np.float64)

    def empty_slice_score(self) -> float:
        return -1.0


def _ramp_volume(n: int, dz: float, *, air: tuple[int, ...] = ()) -> Volume:
    """Slices whose HU level grows linearly with z; ``air`` slices are all -1024."""
    array = np.empty((n, 32, 32), dtype=np.int16)
    for k in range(n):
        array[k] = -1024 if k in air else int(-500 + 10 * k)
    return volume_from_array(array, spacing_mm=(dz, 1.0, 1.0))


@pytest.fixture
def linear_model(tiny_model_dir: Path) -> _LinearModel:
    from bodyscore.model import load_package

    return _LinearModel(load_package(tiny_model_dir))


def test_fast_interpolates_linear_curve_exactly(linear_model: _LinearModel) -> None:
    """A raw score linear in z is reproduced exactly while scoring a third of the slices."""
    volume = _ramp_volume(31, 0.8)
    full = predict_raw_scores(volume, linear_model)  # type: ignore[arg-type]
    scored_full = linear_model.scored
    fast = predict_raw_scores_fast(volume, linear_model, max_step_mm=2.5)  # type: ignore[arg-type]
    assert linear_model.scored - scored_full == 11  # 0, 3, ..., 30
    np.testing.assert_allclose(fast.raw, full.raw, atol=1e-6)
    assert not fast.empty.any()


def test_fast_handles_air_slices(linear_model: _LinearModel) -> None:
    """Air slices get s0 and empty=True without being scored; no interpolation through them."""
    volume = _ramp_volume(20, 1.0, air=(0, 1, 10, 19))
    full = predict_raw_scores(volume, linear_model)  # type: ignore[arg-type]
    fast = predict_raw_scores_fast(volume, linear_model, max_step_mm=2.0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fast.empty, full.empty)
    assert fast.empty[[0, 1, 10, 19]].all()
    np.testing.assert_allclose(fast.raw[~fast.empty], full.raw[~full.empty], atol=1e-6)
    assert np.all(fast.raw[fast.empty] == -1.0)


def test_fast_equals_full_when_spacing_is_coarse(tiny_model_dir: Path) -> None:
    """5 mm slices are all scored: identical to the full path (real tiny model)."""
    from bodyscore.model import load_model

    model = load_model(tiny_model_dir)
    volume = _ramp_volume(12, 5.0, air=(11,))
    full = predict_raw_scores(volume, model)
    fast = predict_raw_scores_fast(volume, model)
    np.testing.assert_array_equal(fast.empty, full.empty)
    np.testing.assert_allclose(fast.raw, full.raw, rtol=0, atol=1e-6)


def test_fast_all_air_volume(linear_model: _LinearModel) -> None:
    volume = _ramp_volume(5, 1.0, air=(0, 1, 2, 3, 4))
    fast = predict_raw_scores_fast(volume, linear_model)  # type: ignore[arg-type]
    assert fast.empty.all()
    assert np.all(fast.raw == -1.0)
    assert linear_model.scored == 0


def test_fast_accuracy_on_real_ct(ct_dir: Path) -> None:
    """Default model: cleaned scores of the fast path within 0.5 of every-slice scoring.

    Runs on every CT of ``../shared/data/ct`` (issue 8 acceptance); skips until the default
    model package exists.
    """
    from bodyscore.assemble import assemble_result
    from bodyscore.errors import ModelError
    from bodyscore.io import read_volume
    from bodyscore.model import load_model

    try:
        model = load_model("default")
    except ModelError:
        pytest.skip("the default model package is not available")
    for path in sorted(ct_dir.glob("*.nii.gz")):
        if "_seg" in path.name:
            continue
        volume = read_volume(path)
        results = [
            assemble_result(raw_scores=scores, volume=volume, settings=model.settings,
                            model_info={})
            for scores in (predict_raw_scores(volume, model),
                           predict_raw_scores_fast(volume, model))
        ]
        a, b = results[0].cleaned, results[1].cleaned
        both = np.isfinite(a) & np.isfinite(b)
        assert np.max(np.abs(a[both] - b[both]), initial=0.0) <= 0.5, path.name
