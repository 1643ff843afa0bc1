"""Tests of benchmarks/accuracy/write_model_card.py: the cross-validation comparison of recipes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from helpers.scripts import load_script

card = load_script("benchmarks/accuracy/write_model_card.py",
                   module_name="write_model_card_under_test")

FOLDS = [{"fold": 0, "volumes": ["a", "b"]}, {"fold": 1, "volumes": ["c"]}]


def _cv(maes: dict[str, float | None], *, steps: int = 500,
        folds: list[dict[str, Any]] = FOLDS) -> dict[str, Any]:
    return {
        "steps": steps, "fold_table": folds,
        "volumes": {vid: {"mae": mae} for vid, mae in maes.items()},
        "overall": {
            "mae": {"mean": 5.0, "se": 0.5, "n": 10},
            "accuracy_5class": {"mean": 0.75, "se": 0.25, "n": 2},
            "checks": {"increasing": "2/3", "reversed copies flagged (>= 10 cm)": "1/2",
                       "tag matches README": "3/3"},
        },
    }


def test_paired_difference_hand_worked() -> None:
    # differences a: +1, b: +3 (c has no MAE in the other run: left out) -> mean 2,
    # sd sqrt(2), SE 1
    current = _cv({"a": 5.0, "b": 7.0, "c": 1.0})
    other = _cv({"a": 4.0, "b": 4.0, "c": None})
    mean, se, n = card.paired_mae_difference(current, other)
    assert (mean, n) == (2.0, 2)
    assert math.isclose(se, 1.0)


@pytest.mark.parametrize("other", [
    _cv({"a": 4.0, "b": 4.0}, steps=1000),
    _cv({"a": 4.0, "b": 4.0}, folds=FOLDS[:1]),
    _cv({"a": 4.0, "b": None}),
])
def test_paired_difference_needs_the_same_protocol_and_two_volumes(
        other: dict[str, Any]) -> None:
    assert card.paired_mae_difference(_cv({"a": 5.0, "b": 7.0}), other) is None


def test_comparison_table_rows() -> None:
    rows = card.cv_comparison(_cv({"a": 5.0, "b": 7.0}), {
        "old": _cv({"a": 4.0, "b": 4.0}), "other": _cv({"a": 4.0, "b": 4.0}, steps=9)})
    assert rows[2] == "| this model's recipe | 5.00 ± 0.50 | 75 % | 2/3 | 1/2 | 3/3 | – |"
    assert rows[3].endswith("| +2.00 ± 1.00 (n=2) |")
    assert rows[4].endswith("| other folds or steps |")


def test_cv_steps_text_says_whether_the_folds_train_as_long_as_the_shipped_model() -> None:
    assert "as many as the shipped model" in card.cv_steps_text(2000, 2000)
    assert "fewer than the shipped model's 2000" in card.cv_steps_text(500, 2000)
    assert "more than the shipped model's 1000" in card.cv_steps_text(2000, 1000)
