"""Tests of benchmarks/accuracy/ablation_table.py: one table from several cv.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.scripts import load_script

ablation = load_script("benchmarks/accuracy/ablation_table.py",
                       module_name="ablation_table_under_test")


def _cv(variant: str, *, steps: int = 500, mae: float = 5.0, folds: tuple[int, ...] = (0,)
        ) -> dict[str, Any]:
    return {
        "variant": variant, "steps": steps, "git_commit": "abc", "incomplete": True,
        "folds_present": list(folds),
        "fold_table": [{"fold": 0, "volumes": ["a", "b"]}, {"fold": 1, "volumes": ["c"]}],
        "overall": {
            "mae": {"mean": mae, "se": 0.5, "n": 10},
            "mae_low_confidence": {"mean": None, "se": None, "n": 0},
            "accuracy_5class": {"mean": 0.75, "se": 0.25, "n": 2},
            "region_accuracy": {"mean": 0.5, "se": None, "n": 1},
            "checks": {"increasing": "2/2"},
        },
    }


def _write(tmp_path: Path, cv: dict[str, Any]) -> Path:
    path = tmp_path / f"{cv['variant']}.json"
    path.write_text(json.dumps(cv), encoding="utf-8")
    return path


def test_rows_follow_the_cv_files(tmp_path: Path) -> None:
    paths = [_write(tmp_path, _cv("baseline", mae=5.0)), _write(tmp_path, _cv("no-x", mae=7.25))]
    rows, meta = ablation.build(paths)
    assert [r["variant"] for r in rows] == ["baseline", "no-x"]
    assert rows[1]["mae"] == "7.25 ± 0.50 (n=10)"
    assert rows[0]["acc5"] == "75.0 ± 25.0 (n=2)"
    assert rows[0]["mae_low"] == "–"
    assert meta["folds"] == [["a", "b"]]
    assert meta["incomplete"] == ["baseline", "no-x"]
    text = ablation.markdown(rows, meta, None)
    assert "| no-x | 7.25 ± 0.50 (n=10) |" in text


@pytest.mark.parametrize("other", [{"steps": 1000}, {"folds": (0, 1)}])
def test_runs_with_another_protocol_are_refused(tmp_path: Path, other: dict[str, Any]) -> None:
    paths = [_write(tmp_path, _cv("baseline")), _write(tmp_path, _cv("no-x", **other))]
    with pytest.raises(ValueError, match="compare like with like"):
        ablation.build(paths)
    assert ablation.main([str(p) for p in paths] + ["-o", str(tmp_path / "out")]) == 2


def test_training_length_may_differ_when_asked_and_becomes_a_column(tmp_path: Path) -> None:
    paths = [_write(tmp_path, _cv("baseline")), _write(tmp_path, _cv("long", steps=1000))]
    rows, meta = ablation.build(paths, steps_may_differ=True)
    assert [r["steps"] for r in rows] == ["500", "1000"]
    assert meta["steps"] == [500, 1000]
    text = ablation.markdown(rows, meta, None)
    assert "trained the steps of its `steps` column per fold" in text
    assert "| long | 5.00 ± 0.50 (n=10) |" in text
    assert "| 1000 | 2/2 |" in text   # the steps column comes first among the checks
    assert ablation.main([str(p) for p in paths] + ["--steps-may-differ", "-o",
                                                     str(tmp_path / "out")]) == 0
