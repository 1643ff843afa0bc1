"""Hand-worked tests of the losses (thesis eq. 3.5, 3.6, 4.5, 4.7, 5.1, 5.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.train.losses import (
    classification_order_loss,
    distance_loss,
    heuristic_order_loss,
    landmark_anchor_loss,
    region_interval_loss,
    slope_band_loss,
    total_loss,
)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_heuristic_order_loss_hand_worked():
    # B = 2, m = 3; Δs = (1, 1) and (-1, 0); Δh = 100 mm and 0 mm; β = 0.01/mm
    scores = torch.tensor([[0.0, 1.0, 2.0], [0.0, -1.0, -1.0]], dtype=torch.float64)
    delta_h = torch.tensor([100.0, 0.0], dtype=torch.float64)
    expected = ((sig(1) - sig(1)) ** 2 * 2 + (0.5 - sig(-1)) ** 2 + (0.5 - 0.5) ** 2) / 4
    got = heuristic_order_loss(scores, delta_h, beta_per_mm=0.01)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # minimum at Δs = βΔh (eq. 4.8): 0.5 at Δh = 50 mm
    at_min = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    assert float(heuristic_order_loss(at_min, torch.tensor([50.0], dtype=torch.float64))) == 0


def test_heuristic_order_loss_curvature_eq_4_9():
    # second derivative at the minimum Δs = βΔh equals 2e^{-2βΔh}/(1+e^{-βΔh})^4 (B = 1, m = 2)
    bh = 0.7
    ds = torch.tensor(bh, dtype=torch.float64, requires_grad=True)

    def loss(d):
        scores = torch.stack([torch.zeros((), dtype=torch.float64), d]).reshape(1, 2)
        return heuristic_order_loss(scores, torch.tensor([bh / 0.01], dtype=torch.float64))

    hess = torch.autograd.functional.hessian(loss, ds)
    assert float(hess) == pytest.approx(2 * math.exp(-2 * bh) / (1 + math.exp(-bh)) ** 4)


def test_classification_order_loss_hand_worked():
    scores = torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64)  # Δs = 2, -1
    expected = -(math.log(sig(2)) + math.log(sig(-1))) / 2
    assert float(classification_order_loss(scores)) == pytest.approx(expected, rel=1e-12)


def test_classification_order_loss_nan_safe():
    # Δs = -200 in float32: the naive -log(sigmoid) is inf (σ rounds to 0), eq. 5.1's case
    scores = torch.tensor([[0.0, -200.0], [0.0, 300.0]], dtype=torch.float32, requires_grad=True)
    naive = -torch.log(torch.sigmoid(scores[:, 1] - scores[:, 0])).mean()
    assert not torch.isfinite(naive)
    loss = classification_order_loss(scores)
    assert float(loss.detach()) == pytest.approx((200.0 + 0.0) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert float(scores.grad[0, 1]) == pytest.approx(-0.5)  # d/dΔs of -logσ = -1, /2 pairs


def test_distance_loss_hand_worked():
    # Δs = (1, 3, 3.5): second differences 2 and 0.5 -> smooth L1: 2-0.5 = 1.5, 0.5*0.25
    scores = torch.tensor([[0.0, 1.0, 4.0, 7.5]], dtype=torch.float64)
    assert float(distance_loss(scores)) == pytest.approx((1.5 + 0.125) / 2)
    assert float(distance_loss(torch.tensor([[0.0, 5.0]]))) == 0.0  # m = 2: no term


@given(st.lists(st.floats(-50, 50), min_size=2, max_size=8), st.floats(0, 200))
@settings(max_examples=100, deadline=None)
def test_losses_finite_nonnegative_and_bounded(values, dh):
    scores = torch.tensor([values], dtype=torch.float64)
    h = heuristic_order_loss(scores, torch.tensor([dh], dtype=torch.float64))
    assert 0 <= float(h) <= 1
    assert float(classification_order_loss(scores)) >= 0
    assert float(distance_loss(scores)) >= 0


def test_equidistant_increasing_scores_have_zero_distance_loss():
    scores = torch.tensor(np.arange(6, dtype=float)[None] * 0.3)
    assert float(distance_loss(scores)) == pytest.approx(0, abs=1e-20)


def test_anchor_loss_and_total():
    scores = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True]])
    assert float(landmark_anchor_loss(scores, targets, mask)) == pytest.approx((1 + 4) / 2)
    assert float(landmark_anchor_loss(scores, targets, mask & False)) == 0
    dh = torch.tensor([100.0], dtype=torch.float64)
    terms = total_loss(scores, dh, alpha_h=2.0, beta_h=0.01, alpha=0.5, anchor_weight=0.1,
                       anchor_targets=targets, anchor_mask=mask)
    expected = (2 * float(heuristic_order_loss(scores, dh)) + 0.5 * float(distance_loss(scores))
                + 0.1 * 2.5)
    assert float(terms.total) == pytest.approx(expected)
    assert terms.anchor == pytest.approx(2.5)
    c = total_loss(scores, dh, loss_order="c")
    assert float(c.total) == pytest.approx(float(classification_order_loss(scores)))
    with pytest.raises(ValueError, match="loss_order"):
        total_loss(scores, dh, loss_order="x")


def test_region_interval_loss_hand_worked():
    inf = math.inf
    scores = torch.tensor([[0.0, 1.0, 5.0, -2.0]], requires_grad=True)
    low = torch.tensor([[-inf, 0.5, -inf, 0.0]])   # slice 0 unlabelled
    high = torch.tensor([[inf, inf, 4.0, 1.0]])
    # labelled: slice 1 inside (0), slice 2 above by 1 (1²), slice 3 below by 2 (2²) → 5/3
    loss = region_interval_loss(scores, low, high)
    assert loss.item() == pytest.approx(5.0 / 3.0)
    loss.backward()
    # d/ds: above → +2·1/3, below → −2·2/3; inside and unlabelled slices get no gradient
    np.testing.assert_allclose(scores.grad.numpy(), [[0.0, 0.0, 2 / 3, -4 / 3]], rtol=1e-6)


def test_region_interval_loss_weights_slices_by_region():
    inf = math.inf
    scores = torch.tensor([[0.0, 1.0, 5.0, -2.0]], requires_grad=True)
    low = torch.tensor([[-inf, 0.5, -inf, 0.0]])
    high = torch.tensor([[inf, inf, 4.0, 1.0]])
    # slice 2 (above by 1) weighs 4, slice 3 (below by 2) weighs 1: (4·1 + 1·4) / 3 labelled
    weight = torch.tensor([[9.0, 1.0, 4.0, 1.0]])   # the unlabelled slice's weight is unused
    loss = region_interval_loss(scores, low, high, weight)
    assert loss.item() == pytest.approx(8.0 / 3.0)
    loss.backward()
    np.testing.assert_allclose(scores.grad.numpy(), [[0.0, 0.0, 8 / 3, -4 / 3]], rtol=1e-6)
    ones = torch.ones_like(weight)
    assert float(region_interval_loss(scores, low, high, ones)) == pytest.approx(5.0 / 3.0)
    terms = total_loss(scores.detach(), torch.tensor([10.0]), region_weight=1.0, region_low=low,
                       region_high=high, region_slice_weight=weight)
    assert terms.region == pytest.approx(8.0 / 3.0)


def test_region_interval_loss_without_labels_is_zero_and_total_adds_it():
    inf = math.inf
    scores = torch.tensor([[0.0, 1.0]])
    open_low, open_high = torch.full((1, 2), -inf), torch.full((1, 2), inf)
    assert float(region_interval_loss(scores, open_low, open_high)) == 0.0
    delta_h = torch.tensor([10.0])
    high = torch.tensor([[inf, 0.0]])   # second slice must stay below 0: 1² = 1
    plain = total_loss(scores, delta_h)
    with_region = total_loss(scores, delta_h, region_weight=0.5, region_low=open_low,
                             region_high=high)
    assert with_region.region == pytest.approx(1.0)
    assert float(with_region.total) == pytest.approx(float(plain.total) + 0.5)


def test_slope_band_loss_hand_worked():
    # B = 3, m = 4, Δh = 50 mm → span 150 mm; band 0.0075–0.015/mm → rise in [1.125, 2.25]
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0],      # flat: 1.125 short → 1.265625
                           [0.0, 0.5, 1.0, 1.5],      # inside: 0
                           [0.0, 1.0, 2.0, 3.0]],     # 0.75 too steep → 0.5625
                          requires_grad=True)
    delta_h = torch.tensor([50.0, 50.0, 50.0])
    loss = slope_band_loss(scores, delta_h, band_per_mm=(0.0075, 0.015))
    assert loss.item() == pytest.approx((1.125**2 + 0.75**2) / 3)
    loss.backward()
    # only the end slices of the out-of-band samples get a gradient: ±2·excess/B
    expected = np.zeros((3, 4))
    expected[0, [0, -1]] = [2 * 1.125 / 3, -2 * 1.125 / 3]
    expected[2, [0, -1]] = [-2 * 0.75 / 3, 2 * 0.75 / 3]
    np.testing.assert_allclose(scores.grad.numpy(), expected, rtol=1e-6)


def test_slope_band_loss_falling_curve_costs_more_than_flat_and_total_adds_it():
    delta_h = torch.tensor([20.0])
    flat = torch.zeros((1, 3))
    falling = torch.tensor([[0.0, -0.1, -0.2]])
    band = (0.01, 0.02)
    assert float(slope_band_loss(falling, delta_h, band_per_mm=band)) > float(
        slope_band_loss(flat, delta_h, band_per_mm=band))
    plain = total_loss(falling, delta_h)
    with_slope = total_loss(falling, delta_h, slope_weight=2.0, slope_band_per_mm=band)
    # span 40 mm → rise must be ≥ 0.4; it is −0.2 → 0.6² = 0.36
    assert with_slope.slope == pytest.approx(0.36)
    assert float(with_slope.total) == pytest.approx(float(plain.total) + 0.72)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.001, 0.02), st.floats(1.0, 3.0), st.floats(5.0, 100.0),
       st.integers(2, 6))
def test_slope_band_loss_is_zero_on_any_curve_inside_the_band(low, ratio, dh, m):
    slope = low * (1 + ratio) / 2   # strictly inside [low, low·ratio]
    scores = torch.arange(m, dtype=torch.float64).reshape(1, m) * slope * dh
    got = slope_band_loss(scores, torch.tensor([dh], dtype=torch.float64),
                          band_per_mm=(low, low * ratio))
    assert float(got) == pytest.approx(0.0, abs=1e-12)
