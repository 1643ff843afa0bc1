"""Tests of equidistant Δh slice sampling (thesis sec. 4.1.3, eq. 4.1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.train.sampling import (
    epoch_volume_order,
    mixed_epoch_order,
    rank_batch,
    sample_equidistant_slices,
    steps_per_epoch,
    synthetic_draw_count,
)


@given(n=st.integers(4, 600), dz=st.floats(0.5, 8.0), m=st.integers(2, 8),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_indices_equidistant_inside_and_step_formula(n, dz, m, seed):
    if n < m:
        return
    rng = np.random.default_rng(seed)
    sample = sample_equidistant_slices(n, z_spacing_mm=dz, rng=rng, num_slices=m)
    assert sample.indices.shape == (m,)
    assert sample.indices[0] >= 0
    assert sample.indices[-1] <= n - 1
    assert np.all(np.diff(sample.indices) == sample.step)
    assert sample.step >= 1
    assert sample.delta_h_mm == pytest.approx(sample.step * dz)
    # redraw Δh with the same generator state: k = max(1, round(Δh/dz)) unless shrunk
    delta_h = np.random.default_rng(seed).uniform(5.0, 100.0)
    k = max(1, round(delta_h / dz))
    k_max = (n - 1) // (m - 1)
    assert sample.step == min(k, k_max)


def test_hand_worked_k():
    # Δh drawn from the degenerate range [30, 30] mm at dz = 2.5 mm -> k = 12, Δh = 30 mm
    sample = sample_equidistant_slices(100, z_spacing_mm=2.5, rng=np.random.default_rng(0),
                                       num_slices=4, delta_h_range_mm=(30.0, 30.0))
    assert sample.step == 12
    assert sample.delta_h_mm == 30.0
    # 5 mm at dz = 4 mm -> round(1.25) = 1; physical distance actually used 4 mm
    sample = sample_equidistant_slices(100, z_spacing_mm=4.0, rng=np.random.default_rng(0),
                                       delta_h_range_mm=(5.0, 5.0))
    assert (sample.step, sample.delta_h_mm) == (1, 4.0)
    # 1 mm at dz = 5 mm -> round(0.2) = 0 -> at least 1
    sample = sample_equidistant_slices(100, z_spacing_mm=5.0, rng=np.random.default_rng(0),
                                       delta_h_range_mm=(1.0, 1.0))
    assert sample.step == 1


def test_delta_h_within_range_for_long_volumes():
    rng = np.random.default_rng(1)
    values = [sample_equidistant_slices(2000, z_spacing_mm=1.0, rng=rng).delta_h_mm
              for _ in range(300)]
    assert min(values) >= 5
    assert max(values) <= 100
    assert max(values) - min(values) > 80  # really spread over the range


def test_short_volume_shrinks_step():
    # 10 slices, m = 4: the largest step that fits is (10-1)//3 = 3
    sample = sample_equidistant_slices(10, z_spacing_mm=1.0, rng=np.random.default_rng(0),
                                       delta_h_range_mm=(90.0, 90.0))
    assert sample.step == 3
    assert sample.delta_h_mm == 3.0
    assert list(sample.indices) == [0, 3, 6, 9]


def test_too_few_slices_raises():
    with pytest.raises(InputError, match="cannot give 4 slices"):
        sample_equidistant_slices(3, z_spacing_mm=1.0, rng=np.random.default_rng(0))


def test_epoch_order_and_rank_batches():
    order = epoch_volume_order(10, seed=3, epoch=2)
    assert sorted(order) == list(range(10))
    np.testing.assert_array_equal(order, epoch_volume_order(10, seed=3, epoch=2))
    assert not np.array_equal(order, epoch_volume_order(10, seed=3, epoch=3))
    a = rank_batch(order, step_in_epoch=0, batch_size=3, rank=0, world_size=2)
    b = rank_batch(order, step_in_epoch=0, batch_size=3, rank=1, world_size=2)
    assert set(a).isdisjoint(b)
    np.testing.assert_array_equal(np.concatenate([a, b]), order[:6])
    wrapped = rank_batch(order, step_in_epoch=1, batch_size=3, rank=1, world_size=2)
    np.testing.assert_array_equal(wrapped, order[[9, 0, 1]])
    assert steps_per_epoch(10, batch_size=3, world_size=2) == 2


def test_mixed_epoch_order_draws_the_synthetic_share_and_sees_them_all():
    flags = np.array([False] * 17 + [True] * 40)
    # 17 real at a 15 % share: round(17 · 0.15 / 0.85) = 3 synthetic per epoch
    assert synthetic_draw_count(17, 40, 0.15) == 3
    assert synthetic_draw_count(17, 2, 0.5) == 2        # capped at what there is
    assert synthetic_draw_count(0, 5, 0.1) == 5         # no real volume: all synthetic
    assert synthetic_draw_count(17, 40, None) == 40
    seen: set[int] = set()
    for epoch in range(60):
        order = mixed_epoch_order(flags, share=0.15, seed=1, epoch=epoch)
        assert len(order) == 20
        assert len(set(order.tolist())) == 20
        assert sorted(i for i in order if not flags[i]) == list(range(17))
        seen |= {int(i) for i in order if flags[i]}
        np.testing.assert_array_equal(
            order, mixed_epoch_order(flags, share=0.15, seed=1, epoch=epoch))
    assert seen == set(range(17, 57))   # fresh subsets: every synthetic volume comes up
    assert not np.array_equal(mixed_epoch_order(flags, share=0.15, seed=1, epoch=0),
                              mixed_epoch_order(flags, share=0.15, seed=2, epoch=0))
    np.testing.assert_array_equal(mixed_epoch_order(flags, share=None, seed=3, epoch=4),
                                  epoch_volume_order(57, seed=3, epoch=4))
    assert not any(flags[mixed_epoch_order(flags, share=0.0, seed=0, epoch=0)])
