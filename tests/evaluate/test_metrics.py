"""Evaluation metrics (thesis sec. 4.2, eq. 4.11–4.16, table 4.5, eq. 3.7, 3.8), hand-worked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.evaluate import metrics as m

# Raw-scale reference table: d = (8 - (-2)) / 100 = 0.1.
REFERENCE = {"pelvis_start": -2.0, "L5": 0.0, "eyes_end": 8.0}
VOLUME_A = {"pelvis_start": -1.8, "L5": 0.1}  # errors 2, 1 (in d units) → φ = 2.5, |e| = 1.5
VOLUME_B = {"L5": -0.3, "eyes_end": 8.0}  # errors -3, 0 → φ = 4.5, |e| = 1.5


def test_normalization_constant_eq_4_12() -> None:
    assert m.normalization_constant(REFERENCE) == pytest.approx(0.1)
    assert m.normalization_constant({"pelvis-start": 10.0, "Th11": 60.0},
                                    end="Th11") == pytest.approx(0.5)
    with pytest.raises(InputError, match="eyes_end"):
        m.normalization_constant({"pelvis_start": 0.0})


def test_lmse_per_volume_eq_4_13() -> None:
    assert m.lmse_per_volume(VOLUME_A, REFERENCE, d=0.1) == pytest.approx(2.5)
    assert m.lmse_per_volume(VOLUME_B, REFERENCE, d=0.1) == pytest.approx(4.5)
    assert math.isnan(m.lmse_per_volume({"C1": 3.0}, REFERENCE, d=0.1))
    # the landmark filter
    assert m.lmse_per_volume(VOLUME_A, REFERENCE, d=0.1, landmarks=["L5"]) == pytest.approx(1.0)


def test_dataset_lmse_and_standard_error_eq_4_14_4_15() -> None:
    result = m.landmark_mean_squared_error([VOLUME_A, VOLUME_B], REFERENCE)
    # mean(2.5, 4.5) = 3.5; sd = sqrt(2) → SE = sqrt(2)/sqrt(2) = 1
    assert result.mean == pytest.approx(3.5)
    assert result.se == pytest.approx(1.0)
    assert result.n == 2


def test_landmark_mean_absolute_error_in_score_units() -> None:
    result = m.landmark_mean_absolute_error([VOLUME_A, VOLUME_B], REFERENCE)
    assert result.mean == pytest.approx(1.5)
    assert result.se == pytest.approx(0.0)


def test_mean_with_se_edge_cases() -> None:
    assert m.mean_with_se([]).n == 0
    assert math.isnan(m.mean_with_se([]).mean)
    single = m.mean_with_se([4.0, math.nan])
    assert (single.mean, single.n) == (4.0, 1)
    assert math.isnan(single.se)
    assert m.mean_with_se([1.0, math.nan]).to_dict() == {"mean": 1.0, "se": None, "n": 1}


def test_landmark_scores_interpolate_and_canonicalise() -> None:
    scores = [0.0, 10.0, 20.0, None]
    positions = {"a": 0.5, "b": 2.5, "c": 1.0, "d": -1.0, "kidneys": 1.25, "pelvis-start": 2.0}
    got = m.landmark_scores(scores, positions)
    assert got == {"a": 5.0, "c": 10.0, "kidney": 12.5, "pelvis_start": 20.0}


def test_reference_table_eq_4_11() -> None:
    table = m.reference_table([{"L5": 1.0, "C1": 4.0}, {"L5": 3.0}, {"kidneys": 2.0}])
    assert table == {"L5": 2.0, "C1": 4.0, "kidney": 2.0}


def test_per_landmark_errors_table_5_5() -> None:
    errors = {e.name: e for e in m.per_landmark_errors([VOLUME_A, VOLUME_B], REFERENCE)}
    assert set(errors) == {"pelvis_start", "L5", "eyes_end"}
    l5 = errors["L5"]  # signed errors +1, -3
    assert l5.n == 2
    assert l5.lmse.mean == pytest.approx(5.0)  # (1 + 9) / 2
    assert l5.lmse.se == pytest.approx(4.0)  # sd(1, 9) = 5.657; / sqrt 2
    assert l5.mae.mean == pytest.approx(2.0)
    assert l5.bias == pytest.approx(-1.0)
    assert l5.score_std == pytest.approx(np.std([1.0, -3.0], ddof=1))
    assert errors["pelvis_start"].lmse.mean == pytest.approx(4.0)
    assert errors["pelvis_start"].n == 1
    assert math.isnan(errors["pelvis_start"].lmse.se)


# -- z-test ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "y", "expected_t"),
    [
        ((3.3, 0.4), (2.65, 0.28), 1.3),  # sec. 5.1.1: model 6 vs model 13
        ((3.803, 0.402), (2.653, 0.279), 2.4),  # table 5.9 model 2 vs model 1
        ((6.496, 1.066), (2.653, 0.279), 3.5),  # table 5.9 model 6 vs model 1
    ],
)
def test_z_test_reproduces_thesis_statistics(x: tuple[float, float], y: tuple[float, float],
                                             expected_t: float) -> None:
    test = m.z_test(m.MeanSE(x[0], x[1], 100), m.MeanSE(y[0], y[1], 100))
    assert round(test.statistic, 1) == expected_t
    assert test.significant == (abs(test.statistic) > 1.96)


def test_z_test_hand_worked_p_values() -> None:
    test = m.z_test(m.MeanSE(1.0, 0.3, 10), m.MeanSE(0.0, 0.4, 10))  # t = 1 / 0.5 = 2
    assert test.statistic == pytest.approx(2.0)
    assert test.p_two_sided == pytest.approx(0.0455003, abs=1e-6)
    assert test.p_x_better == pytest.approx(0.9772499, abs=1e-6)
    assert test.significant
    assert "model y has a significantly lower LMSE" in test.verdict()


def test_z_test_identical_models() -> None:
    """Same LMSE and SE for x and y: t = 0, two-sided p = 1, one-sided p = 0.5, no rejection."""
    a = m.MeanSE(2.5, 0.3, 40)
    test = m.z_test(a, a)
    assert (test.statistic, test.p_two_sided, test.p_x_better, test.significant) == (
        0.0, 1.0, 0.5, False)
    assert "do not differ significantly" in test.verdict()


@given(
    st.floats(0.0, 100.0), st.floats(0.01, 10.0), st.floats(0.0, 100.0), st.floats(0.01, 10.0)
)
def test_z_test_is_antisymmetric(mx: float, sx: float, my: float, sy: float) -> None:
    """Swapping x and y negates t, keeps the two-sided p and mirrors the one-sided p."""
    xy = m.z_test(m.MeanSE(mx, sx, 30), m.MeanSE(my, sy, 30))
    yx = m.z_test(m.MeanSE(my, sy, 30), m.MeanSE(mx, sx, 30))
    assert xy.statistic == pytest.approx(-yx.statistic)
    assert xy.p_two_sided == pytest.approx(yx.p_two_sided)
    assert xy.p_x_better + yx.p_x_better == pytest.approx(1.0)
    assert 0.0 <= xy.p_two_sided <= 1.0


def test_z_test_p_values_uniform_for_identically_distributed_models() -> None:
    """Under H0 (two models whose per-volume LMSEs come from the same distribution, evaluated on
    independent sets of N = 60 volumes), the two-sided p-value is ~ Uniform(0, 1): its mean is
    ≈ 0.5, the 5 % test rejects ≈ 5 % of the time, and the one-sided p has mean ≈ 0.5."""
    rng = np.random.default_rng(1234)
    p_two, p_one = [], []
    for _ in range(2000):
        phi_x = rng.chisquare(12, size=60) / 12 * 3.0  # LMSE-like: mean of 12 squared errors
        phi_y = rng.chisquare(12, size=60) / 12 * 3.0
        test = m.z_test(m.mean_with_se(phi_x), m.mean_with_se(phi_y))
        p_two.append(test.p_two_sided)
        p_one.append(test.p_x_better)
    assert np.mean(p_two) == pytest.approx(0.5, abs=0.03)
    assert np.mean(p_one) == pytest.approx(0.5, abs=0.03)
    assert np.mean(np.asarray(p_two) < 0.05) == pytest.approx(0.05, abs=0.02)


def test_z_test_undefined_standard_error() -> None:
    test = m.z_test(m.MeanSE(1.0, math.nan, 1), m.MeanSE(2.0, 0.1, 9))
    assert math.isnan(test.statistic)
    assert not test.significant
    assert test.to_dict()["statistic"] is None


# -- LMSE properties ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.5, 50.0),
       offset=st.floats(-20.0, 20.0), sigma=st.floats(0.0, 3.0))
def test_lmse_zero_when_calibrated_and_sigma2_over_d2_with_noise(
    seed: int, scale: float, offset: float, sigma: float
) -> None:
    """Scores = pseudo-labels + N(0, σ²) noise: E[φ_i] = σ²/d² (eq. 4.13); 0 without noise."""
    rng = np.random.default_rng(seed)
    reference = {name: offset + scale * t for name, t in
                 zip(m.EVALUATION_LANDMARKS, np.linspace(0.0, 1.0, 12), strict=True)}
    d = m.normalization_constant(reference)
    assert d == pytest.approx(scale / 100)
    n_volumes = 300
    volumes = [{k: v + sigma * rng.standard_normal() for k, v in reference.items()}
               for _ in range(n_volumes)]
    result = m.landmark_mean_squared_error(volumes, reference)
    expected = sigma**2 / d**2
    if sigma == 0.0:
        assert result.mean == 0.0
        return
    # φ_i ~ expected · χ²₁₂ / 12: relative SD of φ̄ = sqrt(2/12/300) ≈ 0.024 → 5 SD tolerance
    assert result.mean == pytest.approx(expected, rel=0.12)
    expected_se = expected * math.sqrt(2 / 12) / math.sqrt(n_volumes)
    assert result.se == pytest.approx(expected_se, rel=0.3)


def test_lmse_is_invariant_to_linear_rescaling_of_scores() -> None:
    """Eq. 4.12: the normalisation makes models with different score scales comparable."""
    rescale = {k: 7.0 * v + 3.0 for k, v in REFERENCE.items()}
    a = {k: 7.0 * v + 3.0 for k, v in VOLUME_A.items()}
    b = {k: 7.0 * v + 3.0 for k, v in VOLUME_B.items()}
    assert m.landmark_mean_squared_error([a, b], rescale).mean == pytest.approx(3.5)


# -- 5-class accuracy (table 4.5, eq. 3.7) --------------------------------------------------------
def test_ground_truth_classes_from_landmarks() -> None:
    truth = m.ground_truth_classes(10, {"pelvis_start": 1, "L5": 3, "Th11": 6.0})
    # pelvis: 1 <= j < 3; abdomen: 3 <= j < 6; chest needs Th2 → unlabelled
    assert truth.tolist() == [-1, 0, 0, 1, 1, 1, -1, -1, -1, -1]
    head = m.ground_truth_classes(6, {"C1": 1.5, "eyes-end": 4})
    assert head.tolist() == [-1, -1, 4, 4, 4, -1]  # head includes the eyes_end slice


def test_predicted_classes_from_reference_scores() -> None:
    reference = {"pelvis_start": 0, "L5": 25, "Th11": 47, "Th2": 73, "C1": 89, "eyes_end": 100}
    scores = [-5.0, 0.0, 24.9, 25.0, 50.0, 80.0, 100.0, 100.1, None]
    assert m.predicted_classes(scores, reference).tolist() == [-1, 0, 0, 1, 2, 3, 4, -1, -1]
    # classes whose boundaries are missing from the reference are never predicted
    partial = m.predicted_classes([10.0, 50.0], {"pelvis_start": 0, "L5": 25})
    assert partial.tolist() == [0, -1]


def test_class_accuracy_eq_3_7() -> None:
    truth = np.array([-1, 0, 0, 1, 1, 1])
    predicted = np.array([2, 0, 1, 1, 1, -1])
    assert m.class_accuracy(truth, predicted) == pytest.approx(3 / 5)
    assert math.isnan(m.class_accuracy(np.array([-1]), np.array([0])))
    # ψ is the mean of per-volume accuracies, not a pooled slice count
    assert m.dataset_accuracy([0.6, 1.0, math.nan]).mean == pytest.approx(0.8)
    with pytest.raises(InputError):
        m.class_accuracy(np.zeros(2), np.zeros(3))


# -- R² (eq. 3.8) ---------------------------------------------------------------------------------
def test_r_squared_hand_worked() -> None:
    z = [0.0, 1.0, 2.0, 3.0]
    # fit: slope 0.2, SSreg = 0.04 * 5 = 0.2, SStot = 1 → R² = 0.2
    assert m.r_squared([0.0, 1.0, 0.0, 1.0], z) == pytest.approx(0.2)
    assert m.r_squared([2.0, 4.0, 6.0, 8.0], z) == pytest.approx(1.0)
    assert m.r_squared([2.0, None, 6.0, 8.0], z) == pytest.approx(1.0)
    assert math.isnan(m.r_squared([1.0, 1.0, 1.0, 1.0], z))
    assert math.isnan(m.r_squared([1.0, 2.0], [0.0, 1.0]))
    with pytest.raises(InputError):
        m.r_squared([1.0, 2.0, 3.0], z)


# -- coarse regions -------------------------------------------------------------------------------
def test_region_truth_and_accuracy() -> None:
    truth = m.region_truth_per_slice(6, [(0, 1, "pelvis"), (2, 3, "abdomen"), (5, 9, "chest")])
    assert truth == ["pelvis", "pelvis", "abdomen", "abdomen", None, "chest"]
    predicted = {"pelvis": [0, 1, 2], "abdomen": [2], "chest": [3, 4]}
    # slice 0 ok, 1 ok, 2 ok (abdomen among {pelvis, abdomen}), 3 wrong, 5 in no region: wrong
    assert m.region_accuracy(truth, predicted) == pytest.approx(3 / 5)
    assert math.isnan(m.region_accuracy([None, None], predicted))
