"""Tests of benchmarks/accuracy/synthetic_gap.py (synthetic-to-published score bias)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import bodyscore
from bodyscore.errors import ModelError
from helpers.scripts import load_script

gap = load_script("benchmarks/accuracy/synthetic_gap.py", module_name="synthetic_gap_under_test")


def test_one_seed_gives_a_finite_row_and_a_table(tmp_path: Path) -> None:
    try:
        model = bodyscore.load_model("default")
    except ModelError:
        pytest.skip("the default model package is not installed")
    row = gap.crop_bias(700_000, model)
    assert row["seed"] == 700_000
    assert all(math.isfinite(row[k]) for k in ("slope", "pelvis", "abdomen"))
    out = tmp_path / "gap.md"
    assert gap.main(["--seeds", "1", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# Synthetic-to-published score bias")
    assert lines[-2].startswith("| 700000 |")
    assert lines[-1].startswith("| mean |")
