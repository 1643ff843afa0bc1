"""Tests of bodyscore.usecases.bodypart (thesis sec. 4.3.1, table 4.6, eq. 4.18, fig. 4.9)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.settings import InferenceSettings
from bodyscore.usecases.bodypart import (
    BODY_REGION_BOUNDARIES,
    TAG_MIN_PRESENT_LANDMARKS,
    body_part_examined,
    body_part_examined_tag,
    landmark_means,
    missing_landmarks,
    tag_min_present,
)


@pytest.fixture(scope="module")
def lut() -> dict[str, float]:
    shared = Path(__file__).resolve().parents[2].parent / "shared"
    path = shared / "data/bpreg-public-model/inference-settings.json"
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    table = InferenceSettings.from_file(path).lookup_table
    return landmark_means(table)


def _tag(
    scores: object, lut: dict[str, float], extent: float = 500.0, valid: bool | None = True
) -> str:
    return body_part_examined_tag(
        scores,
        lookup_table=lut,
        z_extent_mm=extent,
        valid_z_spacing=valid,  # type: ignore[arg-type]
    )


# -- dictionary (eq. 4.18, bpreg bounds) --------------------------------------------------------
def test_dictionary_bounds_semantics(lut: dict[str, float]) -> None:
    scores = [-5.0, 0.0, lut["pelvis_end"], lut["L5"], 60.0, lut["C5"], 90.0, np.nan, None]
    d = body_part_examined(scores, lookup_table=lut)  # type: ignore[arg-type]
    assert list(d) == list(BODY_REGION_BOUNDARIES)
    assert d["legs"] == [0]  # s < pelvis_start (0.0): 0.0 itself is not legs
    assert d["pelvis"] == [1, 3]  # 0 <= s < 28.824: pelvis_end itself excluded, L5 25.5 in
    assert d["abdomen"] == [2, 3]  # 25.532 <= s < 56.856
    assert d["chest"] == [4]  # 44.952 <= s < 75.794
    assert d["shoulder-neck"] == [5]  # 70.973 <= s < 87.206
    assert d["head"] == [6]  # s > 81.826 strictly: C5 itself is not head


def test_dictionary_with_a_lacking_table(
    lut: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    partial = {k: v for k, v in lut.items() if k != "pelvis_start"}
    with caplog.at_level(logging.WARNING):
        d = body_part_examined([-5.0, 10.0, 30.0], lookup_table=partial)
    assert d["legs"] == []
    assert d["pelvis"] == []
    assert d["abdomen"] == [2]
    assert "pelvis_start" in caplog.text
    assert missing_landmarks(partial) == ("pelvis_start",)
    assert missing_landmarks(lut) == ()


def test_dictionary_accepts_json_tables(lut: dict[str, float]) -> None:
    json_table = {k: {"mean": v, "std": None} for k, v in lut.items()}
    assert body_part_examined([60.0], lookup_table=json_table)["chest"] == [0]


# -- tag: decision tree fig. 4.9 ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (-1, 30, "PELVIS"),
        (24, 55, "ABDOMEN"),
        (-1, 55, "ABDOMEN-PELVIS"),
        (44, 77, "CHEST"),
        (24, 77, "CHEST-ABDOMEN"),
        (-1, 77, "CHEST-ABDOMEN-PELVIS"),
        (70, 88, "NECK"),
        (44, 88, "NECK-CHEST"),
        (24, 88, "NECK-CHEST-ABDOMEN"),
        (-1, 88, "NECK-CHEST-ABDOMEN-PELVIS"),
        (84, 101, "HEAD"),
        (70, 101, "HEAD-NECK"),
        (44, 101, "HEAD-NECK-CHEST"),
        (24, 101, "HEAD-NECK-CHEST-ABDOMEN"),
        (-1, 101, "HEAD-NECK-CHEST-ABDOMEN-PELVIS"),
    ],
)
def test_tag_from_present_landmarks(
    lut: dict[str, float], lo: float, hi: float, expected: str
) -> None:
    scores = np.linspace(lo, hi, 100)
    assert _tag(scores, lut) == expected
    assert _tag(scores[::-1], lut) == expected  # order does not matter
    assert _tag(scores, lut, valid=None) == expected  # undefined check: continue (bpreg NaN)


def test_tag_needs_minimum_number_of_landmarks(lut: dict[str, float]) -> None:
    pelvis_slices = np.full(60, 20.0)  # many slices in the PELVIS vote range
    # 24 … 46: L5, L4, L3, L2, L1, Th12 present = 6 < 7 → no ABDOMEN; PELVIS has only
    # pelvis_end (1 < 2) → no part → per-slice vote → PELVIS
    six = np.concatenate([pelvis_slices, np.linspace(24, 46, 20)])
    assert _tag(six, lut) == "PELVIS"
    # 24 … 48 adds Th11: 7 landmarks → ABDOMEN from the landmark rule
    seven = np.concatenate([pelvis_slices, np.linspace(24, 48, 20)])
    assert _tag(seven, lut) == "ABDOMEN"


def test_tag_minimum_override_tags_an_abdomen_pelvis_ct_cut_at_t12(lut: dict[str, float]) -> None:
    # femoral heads (femur_end) to T12: pelvis_end, L5…L1, Th12 present = 6 ABDOMEN landmarks
    scores = np.linspace(lut["femur_end"] - 2, lut["Th12"] + 1, 100)
    assert _tag(scores, lut) == "PELVIS"  # bpreg: ABDOMEN needs 7
    lower = body_part_examined_tag(scores, lookup_table=lut, z_extent_mm=330.0,
                                   valid_z_spacing=True, min_present_landmarks={"ABDOMEN": 5})
    assert lower == "ABDOMEN-PELVIS"
    # four lumbar vertebrae are not enough even then
    four = np.linspace(lut["femur_end"] - 2, lut["L2"] + 0.5, 100)
    assert body_part_examined_tag(four, lookup_table=lut, z_extent_mm=330.0,
                                  valid_z_spacing=True,
                                  min_present_landmarks={"ABDOMEN": 5}) == "PELVIS"


@pytest.mark.parametrize("overrides", [{"BELLY": 3}, {"HEAD": 0}, {"HEAD": 5}])
def test_tag_minimum_override_is_checked(overrides: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="tag minimum"):
        tag_min_present(overrides)
    assert tag_min_present({"ABDOMEN": 5}) == {**TAG_MIN_PRESENT_LANDMARKS, "ABDOMEN": 5}


def test_tag_gap_is_filled(lut: dict[str, float]) -> None:
    # only pelvis and head scanned (two stations): landmarks in between count as present too
    scores = np.concatenate([np.linspace(-1, 30, 40), np.linspace(84, 101, 40)])
    assert _tag(scores, lut) == "HEAD-NECK-CHEST-ABDOMEN-PELVIS"


def test_tag_invalid_z_spacing_gives_none(lut: dict[str, float]) -> None:
    assert _tag(np.linspace(-1, 101, 100), lut, valid=False) == "NONE"


def test_tag_short_volume_majority_vote(lut: dict[str, float]) -> None:
    # z-range < 100 mm: vote even though landmarks are present
    scores = np.linspace(-1, 101, 100)
    # widest range covered: PELVIS 0 … 28.8 (ABDOMEN 25.2, CHEST 19.4, HEAD 15.4, NECK 12.2)
    assert _tag(scores, lut, extent=99.0) == "PELVIS"
    assert _tag([60.0, 60.0, 40.0], lut, extent=50.0) == "CHEST"
    # tie: the part met first in slice order wins
    assert _tag([40.0, 60.0], lut, extent=50.0) == "ABDOMEN"
    assert _tag([60.0, 40.0], lut, extent=50.0) == "CHEST"
    # strict bounds: Th9 (53.994) itself votes for nothing, legs vote for nothing
    assert _tag([lut["Th9"], -5.0], lut, extent=10.0) == "NONE"


def test_tag_long_volume_without_parts_votes(lut: dict[str, float]) -> None:
    # 60 … 62: no landmark between → no part → per-slice vote
    assert _tag(np.linspace(60, 62, 80), lut, extent=200.0) == "CHEST"


@pytest.mark.parametrize("scores", [[], [50.0], [np.nan, np.nan], [None], [-20.0, -10.0]])
def test_tag_degenerate_inputs(lut: dict[str, float], scores: list[float | None]) -> None:
    expected = "ABDOMEN" if scores == [50.0] else "NONE"
    assert _tag(scores, lut, extent=5.0) == expected
    assert _tag(scores, lut, extent=500.0) == expected


def test_tag_with_a_lacking_table(lut: dict[str, float]) -> None:
    partial = {k: v for k, v in lut.items() if k not in {"Th9", "eyes_end"}}
    # ABDOMEN keeps 8 landmarks (≥ 7); HEAD keeps C3, C2, C1 (= 3)
    assert _tag(np.linspace(-1, 101, 100), partial) == "HEAD-NECK-CHEST-ABDOMEN-PELVIS"
    # majority vote without Th9: ABDOMEN and CHEST cannot be voted for
    assert _tag([60.0, 60.0, 80.0], partial, extent=20.0) == "NECK"


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(-50, 150)), max_size=40),
    extent=st.floats(0, 2000),
    valid=st.sampled_from([True, False, None]),
)
def test_tag_any_curve_gives_a_known_tag(
    lut: dict[str, float], values: list[float | None], extent: float, valid: bool | None
) -> None:
    known = {
        "NONE",
        "PELVIS",
        "ABDOMEN",
        "CHEST",
        "NECK",
        "HEAD",
        "ABDOMEN-PELVIS",
        "CHEST-ABDOMEN",
        "CHEST-ABDOMEN-PELVIS",
        "NECK-CHEST",
        "NECK-CHEST-ABDOMEN",
        "NECK-CHEST-ABDOMEN-PELVIS",
        "HEAD-NECK",
        "HEAD-NECK-CHEST",
        "HEAD-NECK-CHEST-ABDOMEN",
        "HEAD-NECK-CHEST-ABDOMEN-PELVIS",
    }
    assert _tag(values, lut, extent=extent, valid=valid) in known
    d = body_part_examined(values, lookup_table=lut)  # type: ignore[arg-type]
    assert all(values[i] is not None for idx in d.values() for i in idx)


def test_tag_vote_of_a_legs_volume_is_none(lut: dict[str, float]) -> None:
    # knee to ankle: 337 slices below pelvis_start, the top 13 just inside the pelvis range
    legs = np.concatenate([np.linspace(-25, -0.5, 337), np.linspace(0.5, 3.0, 13)])
    assert _tag(legs, lut, extent=350.0) == "NONE"
    # a hip crop that is 30 % pelvis and 70 % thigh stays PELVIS (legs cannot be voted for)
    hip = np.concatenate([np.linspace(-8, -0.5, 70), np.linspace(0.5, 12.0, 30)])
    assert _tag(hip, lut, extent=190.0) == "PELVIS"
