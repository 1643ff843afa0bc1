"""seed_ensemble.py: the ensemble curve is the members' mean, slice by slice."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from helpers.scripts import load_script

ensemble = load_script("benchmarks/accuracy/seed_ensemble.py", module_name="seed_ensemble_test")


@dataclass(frozen=True)
class _Result:
    unprocessed_scores: tuple[float | None, ...]
    tag: str


def test_mean_result_averages_slices_and_keeps_the_first_result_otherwise():
    a = _Result((10.0, 20.0, None, 40.0), tag="first")
    b = _Result((14.0, 30.0, 5.0, 44.0), tag="second")
    mean = ensemble._mean_result([a, b])
    assert mean.unprocessed_scores[:2] == pytest.approx((12.0, 25.0))
    assert mean.unprocessed_scores[2] is None  # a slice one member did not score
    assert mean.unprocessed_scores[3] == pytest.approx(42.0)
    assert mean.tag == "first"
