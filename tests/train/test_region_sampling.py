"""Tests of the region-balanced epoch order (issue 17: every body region weighs in each epoch)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.train.sampling import region_epoch_order

_LABELS = ["head-neck", "legs", "pelvis", "chest"]


def expected_draws(regions: list[str], shares: dict[str, float], size: int) -> dict[str, int]:
    names = sorted(set(regions))
    weights = {n: shares.get(n, 1.0) for n in names}
    total = sum(weights.values())
    return {n: round(size * weights[n] / total) for n in names}


@st.composite
def balanced_cases(draw: st.DrawFn) -> tuple[list[str], dict[str, float], int | None]:
    regions = draw(st.lists(st.sampled_from(_LABELS), min_size=1, max_size=40))
    present = sorted(set(regions))
    # integer-valued shares keep Σw exact, so round(size·w/Σw) is computed as the code does
    shares = {name: float(draw(st.integers(0, 4))) for name in present
              if draw(st.booleans())}
    if not any(shares.get(n, 1.0) > 0 for n in present):
        shares[present[0]] = 1.0
    size = draw(st.none() | st.integers(len(present), 120))
    return regions, shares, size


@settings(max_examples=200, deadline=None)
@given(case=balanced_cases(), seed=st.integers(0, 2**31 - 1), epoch=st.integers(0, 50))
def test_each_region_gets_its_share_drawn_evenly(
        case: tuple[list[str], dict[str, float], int | None], seed: int, epoch: int) -> None:
    regions, shares, size = case
    order = region_epoch_order(regions, shares=shares, epoch_size=size, seed=seed, epoch=epoch)
    assert order.dtype == np.int64
    assert order.ndim == 1
    assert ((order >= 0) & (order < len(regions))).all()
    draws = expected_draws(regions, shares, len(regions) if size is None else size)
    assert len(order) == sum(draws.values())
    per_volume = Counter(order.tolist())
    for name, count in draws.items():
        members = [i for i, r in enumerate(regions) if r == name]
        drawn = [per_volume.get(i, 0) for i in members]
        assert sum(drawn) == count, name
        assert max(drawn) - min(drawn) <= 1, name  # a region's volumes are seen evenly
        if count >= len(members):
            assert min(drawn) >= 1, name  # ... every one of them
        if shares.get(name, 1.0) == 0:
            assert count == 0
            assert not set(members) & set(per_volume)
    # reproducible from (seed, epoch)
    again = region_epoch_order(regions, shares=shares, epoch_size=size, seed=seed, epoch=epoch)
    np.testing.assert_array_equal(order, again)


def test_hand_worked_epoch_of_a_head_heavy_set() -> None:
    # 8 head-neck volumes, 1 legs, 1 pelvis: by volume count the legs would be 1/10 of an
    # epoch; by region, each region gets round(10 · 1/3) = 3 draws
    regions = ["head-neck"] * 8 + ["legs", "pelvis"]
    order = region_epoch_order(regions, seed=0, epoch=0)
    counts = Counter(regions[i] for i in order)
    assert counts == {"head-neck": 3, "legs": 3, "pelvis": 3}
    assert Counter(order.tolist())[8] == 3  # the one legs volume, three times
    # shares 2:1:1 over 12 draws: 6, 3, 3
    weighted = region_epoch_order(regions, shares={"head-neck": 2}, epoch_size=12, seed=1,
                                  epoch=0)
    assert Counter(regions[i] for i in weighted) == {"head-neck": 6, "legs": 3, "pelvis": 3}
    # shares not listed weigh 1; share 0 leaves the region out
    no_pelvis = region_epoch_order(regions, shares={"pelvis": 0.0}, seed=0, epoch=0)
    assert Counter(regions[i] for i in no_pelvis) == {"head-neck": 5, "legs": 5}


def test_head_neck_volumes_take_turns_over_the_epochs() -> None:
    regions = ["head-neck"] * 20 + ["legs"] * 2
    seen: Counter[int] = Counter()
    for epoch in range(30):
        order = region_epoch_order(regions, seed=5, epoch=epoch)
        seen.update(i for i in order.tolist() if i < 20)
    assert set(seen) == set(range(20))  # over the epochs every head-neck volume is drawn


def test_all_zero_shares_are_an_input_error() -> None:
    with pytest.raises(InputError, match="every region share is 0"):
        region_epoch_order(["a", "b"], shares={"a": 0.0, "b": 0.0}, seed=0, epoch=0)
    with pytest.raises(InputError, match="every region share is 0"):
        region_epoch_order(["a"], shares={"a": 0}, seed=0, epoch=0)


def test_shares_of_absent_regions_do_not_count() -> None:
    regions = ["a", "a", "b", "b"]
    with_absent = region_epoch_order(regions, shares={"zzz": 100.0}, seed=2, epoch=3)
    plain = region_epoch_order(regions, seed=2, epoch=3)
    np.testing.assert_array_equal(with_absent, plain)


def test_different_epochs_and_seeds_differ() -> None:
    regions = [_LABELS[i % 4] for i in range(40)]
    orders = [region_epoch_order(regions, seed=0, epoch=e) for e in range(4)]
    assert all(not np.array_equal(orders[0], o) for o in orders[1:])
    other_seed = region_epoch_order(regions, seed=1, epoch=0)
    assert not np.array_equal(orders[0], other_seed)
    # an epoch's order is a shuffle: the same multiset of volumes each epoch here
    assert all(sorted(o.tolist()) == sorted(orders[0].tolist()) for o in orders)


def test_tiny_epoch_size_is_not_a_bare_numpy_error() -> None:
    try:
        order = region_epoch_order(["a", "b", "c"], epoch_size=1, seed=0, epoch=0)
    except InputError:
        return
    assert len(order) <= 1


def test_labelled_epoch_order_keeps_every_annotated_volume_once() -> None:
    from bodyscore.train.sampling import labelled_epoch_order

    annotated = [True] * 4 + [False] * 12
    regions = ["head"] * 4 + ["legs"] * 2 + ["neck"] * 10
    order = labelled_epoch_order(annotated, share=0.5, regions=regions, seed=1, epoch=0)
    counts = np.bincount(order, minlength=16)
    assert counts[:4].tolist() == [1, 1, 1, 1]
    assert counts[4:].sum() == 4  # round(4 * 0.5 / 0.5) unlabelled draws
    # balanced by region among the unlabelled volumes: 2 legs draws, 2 neck draws
    assert counts[4:6].sum() == 2
    assert counts[6:].sum() == 2
    again = labelled_epoch_order(annotated, share=0.5, regions=regions, seed=1, epoch=0)
    assert np.array_equal(order, again)


def test_labelled_epoch_order_weighs_regions_by_their_shares() -> None:
    from bodyscore.train.sampling import labelled_epoch_order

    annotated = [True] * 6 + [False] * 12
    regions = ["head"] * 6 + ["legs"] * 2 + ["neck"] * 10
    # 6 unlabelled draws; legs weigh 2, neck 1 → 4 legs draws, 2 neck draws
    order = labelled_epoch_order(annotated, share=0.5, regions=regions,
                                 region_shares={"legs": 2.0}, seed=3, epoch=0)
    counts = np.bincount(order, minlength=18)
    assert counts[:6].tolist() == [1] * 6
    assert (counts[6:8].sum(), counts[8:].sum()) == (4, 2)


def test_labelled_epoch_order_cycles_unlabelled_volumes_without_regions() -> None:
    from bodyscore.train.sampling import labelled_epoch_order

    annotated = [True] * 3 + [False] * 9
    seen = np.concatenate([
        labelled_epoch_order(annotated, share=0.5, seed=0, epoch=e) for e in range(3)])
    counts = np.bincount(seen, minlength=12)
    assert counts[:3].tolist() == [3, 3, 3]
    assert counts[3:].tolist() == [1] * 9  # in turn: 3 epochs x 3 draws cover all 9 once
    assert sorted(labelled_epoch_order(annotated, share=0.0, seed=0, epoch=0)) == [0, 1, 2]
