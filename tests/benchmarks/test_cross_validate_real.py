"""Tests of the cross-validation with unlabelled volumes (issue 17, item 3): folds, the figures
over every held-out real volume, and benchmarks/accuracy/real_checks.py."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.evaluate.landmarks import RegionLabel, VolumeAnnotation
from bodyscore.train.config import TrainConfig
from helpers.scripts import load_script

cv = load_script("benchmarks/accuracy/cross_validate.py", module_name="cross_validate_real_test")
rc = load_script("benchmarks/accuracy/real_checks.py", module_name="real_checks_under_test")

REGIONS = ["legs", "pelvis", "abdomen", "chest", "neck", "head"]


def annotation(vid: str, region: str, n: int = 10) -> VolumeAnnotation:
    return VolumeAnnotation(vid, None, {}, (RegionLabel(0, n - 1, region),))


def config_of(annotated: list[str], unlabelled: list[str], groups: dict[str, str],
              seed: int = 0) -> TrainConfig:
    return TrainConfig(sources=tuple(f"/data/ct/{v}.nii.gz" for v in annotated),
                       unlabelled_sources=tuple(f"/data/more/{v}.nii.gz" for v in unlabelled),
                       groups=groups, seed=seed)


# -- fold_table with unlabelled volumes ----------------------------------------------------------
def test_fold_table_hand_case_with_unlabelled_volumes() -> None:
    annotated = ["a_legs", "a_pelvis", "a_chest", "a_head"]
    annotations = {v: annotation(v, v.split("_")[1]) for v in annotated}
    # u_leg2 belongs to a_legs's body; u_kbp* are patients of their own
    unlabelled = ["u_leg2", "u_kbp1", "u_kbp2", "u_kbp3"]
    weak = {"u_leg2": annotation("u_leg2", "legs"), "u_kbp1": annotation("u_kbp1", "head")}
    groups = {"a_legs": "body1", "u_leg2": "body1"}
    plain = cv.fold_table(config_of(annotated, [], groups), annotations, n_folds=2)
    folds = cv.fold_table(config_of(annotated, unlabelled, groups), annotations, n_folds=2,
                          weak=weak)
    assert [f["fold"] for f in folds] == [0, 1]
    for with_u, without in zip(folds, plain, strict=True):
        # the annotated folds are those of the config without unlabelled volumes
        assert with_u["regions"] == without["regions"]
        assert sorted(set(with_u["volumes"]) - set(with_u["unlabelled"])) == without["volumes"]
        assert set(with_u["unlabelled"]) <= set(with_u["volumes"])
        assert set(with_u["unlabelled"]) <= set(unlabelled)
        assert with_u["volumes"] == sorted(with_u["volumes"])
        assert without["unlabelled"] == []
    fold_of = {v: f["fold"] for f in folds for v in f["volumes"]}
    assert fold_of["u_leg2"] == fold_of["a_legs"]  # one body, one fold
    held = Counter(v for f in folds for v in f["volumes"])
    assert held == Counter([*annotated, *unlabelled])  # every volume held out exactly once
    assert sorted(v for f in folds for v in f["unlabelled"]) == sorted(unlabelled)
    assert {g for f in folds for g in f["groups"]} == {"body1", "a_pelvis", "a_chest", "a_head",
                                                       "u_kbp1", "u_kbp2", "u_kbp3"}
    assert sum("body1" in f["groups"] for f in folds) == 1
    # regions list annotated volumes only
    assert {v for f in folds for v in f["regions"]} == set(annotated)
    assert folds == cv.fold_table(config_of(annotated, unlabelled, groups), annotations,
                                  n_folds=2, weak=weak)  # deterministic


@settings(max_examples=60, deadline=None)
@given(n_annotated=st.integers(2, 8), n_unlabelled=st.integers(0, 12),
       joins=st.lists(st.integers(-1, 7), min_size=12, max_size=12),
       region_ids=st.lists(st.integers(0, 5), min_size=20, max_size=20),
       k=st.integers(2, 5), seed=st.integers(0, 100))
def test_fold_table_properties(n_annotated: int, n_unlabelled: int, joins: list[int],
                               region_ids: list[int], k: int, seed: int) -> None:
    k = min(k, n_annotated)
    annotated = [f"a{i}" for i in range(n_annotated)]
    unlabelled = [f"u{i}" for i in range(n_unlabelled)]
    # an unlabelled volume joins annotated volume a<j>'s body (j >= 0 and existing) or not
    groups = {u: f"a{joins[i]}" for i, u in enumerate(unlabelled)
              if 0 <= joins[i] < n_annotated}
    free = [u for u in unlabelled if u not in groups]
    assume(len(free) != 1)  # see test_single_free_unlabelled_volume (bug)
    annotations = {v: annotation(v, REGIONS[region_ids[i]]) for i, v in enumerate(annotated)}
    weak = {u: annotation(u, REGIONS[region_ids[10 + i % 10]]) for i, u in enumerate(unlabelled)}
    folds = cv.fold_table(config_of(annotated, unlabelled, groups, seed), annotations,
                          n_folds=k, weak=weak)
    plain = cv.fold_table(config_of(annotated, [], {}, seed), annotations, n_folds=k)
    held = Counter(v for f in folds for v in f["volumes"])
    assert held == Counter([*annotated, *unlabelled])
    fold_of = {v: f["fold"] for f in folds for v in f["volumes"]}
    for u, owner in groups.items():
        assert fold_of[u] == fold_of[owner]
    for with_u, without in zip(folds, plain, strict=True):
        assert with_u["regions"] == without["regions"]
        assert sorted(set(with_u["volumes"]) - set(unlabelled)) == without["volumes"]
        assert with_u["unlabelled"] == sorted(set(with_u["volumes"]) & set(unlabelled))


def test_single_free_unlabelled_volume() -> None:
    annotated = ["a0", "a1", "a2"]
    annotations = {v: annotation(v, "chest") for v in annotated}
    folds = cv.fold_table(config_of(annotated, ["kbp_only"], {}), annotations, n_folds=2)
    assert sum(f["unlabelled"] == ["kbp_only"] for f in folds) == 1


def test_fold_table_needs_annotated_sources() -> None:
    with pytest.raises(InputError, match="no real volumes in 'sources'"):
        cv.fold_table(config_of([], ["u1", "u2"], {}), {}, n_folds=2)


def test_fold_config_holds_out_the_fold_s_unlabelled_volumes(tmp_path: Path) -> None:
    config = config_of(["a0", "a1", "a2"], ["u0", "u1"], {})
    fold = {"fold": 0, "volumes": ["a1", "u1"], "groups": ["a1", "u1"], "unlabelled": ["u1"]}
    got = cv.fold_config(config, fold, steps=10, out=tmp_path / "cv", variant="base")
    assert got.holdout == ("a1", "u1")
    assert got.train_only == ("a0", "a2", "u0")


# -- real_checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("spacing", "label"), [
    (0.5, "< 1 mm"), (0.999, "< 1 mm"), (1.0, "1-3 mm"), (2.5, "1-3 mm"), (2.999, "1-3 mm"),
    (3.0, ">= 3 mm"), (5.0, ">= 3 mm"), (12.0, ">= 3 mm")])
def test_thickness_class(spacing: float, label: str) -> None:
    assert rc.thickness_class(spacing) == label


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-3, 50.0))
def test_thickness_class_matches_its_bounds(spacing: float) -> None:
    expected = "< 1 mm" if spacing < 1 else "1-3 mm" if spacing < 3 else ">= 3 mm"
    assert rc.thickness_class(spacing) == expected


def test_independence_table_hand_worked() -> None:
    scores = {
        "pt_1": {"brainstem_caudal": 10.0, "mandible_cranial": 20.0, "larynx": None},
        "pt_2": {"brainstem_caudal": 12.0, "mandible_cranial": 26.0, "larynx": 5.0},
        "pt_3": {"brainstem_caudal": 14.0, "mandible_cranial": math.nan},
    }
    table = rc.independence_table(scores)
    assert list(table["per_boundary"]) == ["brainstem_caudal", "mandible_cranial"]  # larynx n=1
    brainstem = table["per_boundary"]["brainstem_caudal"]
    assert brainstem["std"] == pytest.approx(math.sqrt(8 / 3))  # ddof 0 of 10, 12, 14
    assert brainstem["mean"] == pytest.approx(12.0)
    assert brainstem["n"] == 3
    assert table["per_boundary"]["mandible_cranial"] == {"std": 3.0, "mean": 23.0, "n": 2}
    assert table["mean_std"] == pytest.approx((math.sqrt(8 / 3) + 3.0) / 2)
    assert rc.independence_table({}) == {"per_boundary": {}, "mean_std": None}
    assert rc.independence_table({"p": {"x": 1.0}})["mean_std"] is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-50, 150), min_size=2, max_size=10), st.floats(-20, 20))
def test_independence_std_is_shift_invariant(values: list[float], shift: float) -> None:
    scores = {f"p{i}": {"b": v} for i, v in enumerate(values)}
    shifted = {f"p{i}": {"b": v + shift} for i, v in enumerate(values)}
    a, b = rc.independence_table(scores), rc.independence_table(shifted)
    assert a["mean_std"] == pytest.approx(float(np.std(values)), abs=1e-9)
    assert b["mean_std"] == pytest.approx(a["mean_std"], abs=1e-7)


def checks(extent: float, increasing: bool, flagged: bool, **extra: Any) -> dict[str, Any]:
    return {"z_extent_mm": extent, "increasing": increasing, "reversed_copy_flagged": flagged,
            **extra}


def test_group_rates_count_only_volumes_of_at_least_10_cm() -> None:
    table = {
        "a": checks(150.0, True, True), "b": checks(99.9, False, False),
        "c": checks(100.0, False, True), "d": checks(300.0, True, False),
        "e": checks(50.0, True, True), "outside": checks(400.0, False, False),
    }
    group_of = {"a": "legs", "b": "legs", "c": "legs", "d": "head", "e": "neck"}
    rates = rc.group_rates(table, group_of)
    assert list(rates) == ["head", "legs", "neck"]
    assert rates["legs"] == {"increasing": {"passed": 1, "total": 2},
                             "reversed_copy_flagged": {"passed": 2, "total": 2},
                             "n_volumes": 3}
    assert rates["head"] == {"increasing": {"passed": 1, "total": 1},
                             "reversed_copy_flagged": {"passed": 0, "total": 1},
                             "n_volumes": 1}
    assert rates["neck"] == {"increasing": {"passed": 0, "total": 0},
                             "reversed_copy_flagged": {"passed": 0, "total": 0},
                             "n_volumes": 1}
    assert rc.group_rates({}, {}) == {}


def test_replay_rates_with_undefined_verdicts() -> None:
    replays = {
        "v1": {"+0.00": True, "+0.50": False, "-0.40": None},
        "v2": {"+0.00": False, "+0.50": False, "-0.40": False},
        "v3": {"+0.00": None, "+0.50": None, "-0.40": True},
    }
    rates = rc.replay_rates(replays)
    assert list(rates) == sorted(rates)
    assert rates == {"+0.00": {"flagged": 1, "defined": 2, "total": 3},  # v2: a false alarm
                     "+0.50": {"flagged": 2, "defined": 2, "total": 3},
                     "-0.40": {"flagged": 1, "defined": 2, "total": 3}}
    assert rc.replay_rates({}) == {}


def test_score_at_interpolates_and_is_none_outside() -> None:
    scores = np.array([0.0, 10.0, 20.0, 40.0])
    assert rc._score_at(scores, 0) == 0.0
    assert rc._score_at(scores, 1.5) == pytest.approx(15.0)
    assert rc._score_at(scores, 2.25) == pytest.approx(25.0)
    assert rc._score_at(scores, 3.0) == 40.0
    for outside in (-0.01, 3.01, 100.0, math.nan):
        assert rc._score_at(scores, outside) is None
    with_gap = np.array([0.0, math.nan, 2.0])
    assert rc._score_at(with_gap, 0.5) is None
    assert rc._score_at(with_gap, 1.0) is None
    assert rc._score_at(np.array([7.0]), 0.0) == 7.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=2, max_size=20), st.floats(0, 1))
def test_score_at_lies_between_its_neighbours(values: list[float], where: float) -> None:
    scores = np.asarray(values)
    index = where * (len(values) - 1)
    got = rc._score_at(scores, index)
    assert got is not None
    low = math.floor(index)
    high = min(low + 1, len(values) - 1)
    lo, hi = sorted((scores[low], scores[high]))
    assert lo - 1e-9 <= got <= hi + 1e-9


# -- aggregate_real ------------------------------------------------------------------------------
def real_fold(volumes: dict[str, dict[str, Any]], errors: dict[str, dict[str, float | None]],
              unlabelled: dict[str, dict[str, Any]], replay: dict[str, dict[str, bool | None]]
              ) -> dict[str, Any]:
    per_volume = {v: {"errors": e} for v, e in errors.items()}
    return {"evaluation": {
        "volumes": volumes, "unlabelled": unlabelled, "z_spacing_replay": replay,
        "landmarks": {"medium_high": {"vs_published": {"per_volume": per_volume}}}}}


def test_aggregate_real_hand_worked() -> None:
    folds = {
        0: real_fold(
            volumes={"ct_thin": checks(200.0, True, True, z_spacing_mm=0.5),
                     "ct_thick": checks(300.0, False, True, z_spacing_mm=5.0)},
            errors={"ct_thin": {"L1": 1.0, "L5": -3.0, "C1": None},
                    "ct_thick": {"L1": 2.0}},
            unlabelled={"kbp_1": checks(150.0, True, True, z_spacing_mm=2.0,
                                        position_scores={"brainstem": 60.0, "mandible": 70.0}),
                        "leg_1": checks(80.0, False, False, z_spacing_mm=2.0,
                                        position_scores={})},
            replay={"ct_thin": {"+0.00": True, "+0.50": False},
                    "ct_thick": {"+0.00": None, "+0.50": False}}),
        1: real_fold(
            volumes={"ct_mid": checks(120.0, True, False, z_spacing_mm=1.5)},
            errors={"ct_mid": {"L1": 4.0}},
            unlabelled={"kbp_2": checks(160.0, True, True, z_spacing_mm=2.0,
                                        position_scores={"brainstem": 64.0, "mandible": None})},
            replay={"ct_mid": {"+0.00": False, "+0.50": True}}),
    }
    regions = {"ct_thin": "head", "ct_thick": "pelvis", "ct_mid": "chest", "kbp_1": "head",
               "kbp_2": "head", "leg_1": "legs"}
    out = cv.aggregate_real(folds, regions)
    mono = out["monotony"]
    # volumes >= 10 cm: ct_thin, ct_thick, ct_mid, kbp_1, kbp_2 (leg_1 is 8 cm)
    assert mono["overall"] == {"increasing": {"passed": 4, "total": 5},
                               "reversed_copy_flagged": {"passed": 4, "total": 5},
                               "n_volumes": 6}
    assert mono["per_region"]["head"]["increasing"] == {"passed": 3, "total": 3}
    assert mono["per_region"]["pelvis"]["increasing"] == {"passed": 0, "total": 1}
    assert mono["per_region"]["legs"] == {"increasing": {"passed": 0, "total": 0},
                                          "reversed_copy_flagged": {"passed": 0, "total": 0},
                                          "n_volumes": 1}
    assert set(mono["per_thickness"]) == {"< 1 mm", "1-3 mm", ">= 3 mm"}
    assert mono["per_thickness"]["1-3 mm"]["n_volumes"] == 4  # ct_mid, kbp_1, kbp_2, leg_1
    assert mono["per_thickness"]["1-3 mm"]["reversed_copy_flagged"] == {"passed": 2, "total": 3}
    # independence: brainstem 60, 64 → std 2; mandible in one patient only
    assert out["independence"]["per_boundary"] == {"brainstem": {"std": 2.0, "mean": 62.0,
                                                                 "n": 2}}
    assert out["independence"]["mean_std"] == 2.0
    assert out["z_spacing_replay"] == {"+0.00": {"flagged": 1, "defined": 2, "total": 3},
                                       "+0.50": {"flagged": 2, "defined": 3, "total": 3}}
    # landmark |errors| per thickness class: < 1 mm: 1, 3; >= 3 mm: 2; 1-3 mm: 4
    mae = out["mae_per_thickness"]
    assert list(mae) == sorted(mae)
    assert mae["< 1 mm"]["mean"] == pytest.approx(2.0)
    assert mae["< 1 mm"]["n"] == 2
    assert mae[">= 3 mm"]["mean"] == pytest.approx(2.0)
    assert mae["1-3 mm"] == {"mean": 4.0, "se": None, "n": 1}
    json.dumps(out, allow_nan=False)
    text = "\n".join(cv._real_markdown(out))
    assert "| region: head | 3 | 3/3 | 3/3 |" in text
    assert "| +0.00 | 1/2 (3) |" in text
    assert "| brainstem |" in text


def test_aggregate_real_of_folds_without_the_new_blocks() -> None:
    # result.json files of older runs: annotated volumes only, no z_spacing_mm, no replay
    old = {0: {"evaluation": {"volumes": {"v": checks(200.0, True, True)},
                              "landmarks": {"medium_high": {"vs_published": {
                                  "per_volume": {"v": {"errors": {"L1": 1.0}}}}}}}}}
    out = cv.aggregate_real(old, {})
    assert out["monotony"]["overall"]["increasing"] == {"passed": 1, "total": 1}
    assert out["monotony"]["per_region"] == {"unknown": {
        "increasing": {"passed": 1, "total": 1},
        "reversed_copy_flagged": {"passed": 1, "total": 1}, "n_volumes": 1}}
    assert out["monotony"]["per_thickness"] == {}
    assert out["independence"]["mean_std"] is None
    assert out["z_spacing_replay"] == {}
    assert out["mae_per_thickness"] == {}
    assert cv._real_markdown(out)  # renders
    assert cv._real_markdown(None) == []
