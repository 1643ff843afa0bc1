"""Tests of bodyscore.settings: bodyscore's own keys of ``inference-settings.json``."""

from __future__ import annotations

import dataclasses

import pytest

from bodyscore.assemble import settings_description
from bodyscore.errors import ModelError
from bodyscore.settings import InferenceSettings
from bodyscore.usecases.bodypart import TAG_MIN_PRESENT_LANDMARKS
from helpers.tiny_model import tiny_settings_dict


def test_tag_minimum_overrides_round_trip_and_reach_the_result_settings() -> None:
    plain = InferenceSettings.from_bpreg_dict(tiny_settings_dict())
    assert dict(plain.tag_min_present_landmarks) == {}
    assert "tag_min_present_landmarks" not in plain.to_bpreg_dict()["bodyscore"]
    described = settings_description(plain)["body part examined tag"]["min present landmarks"]
    assert described == dict(TAG_MIN_PRESENT_LANDMARKS)

    lowered = dataclasses.replace(plain, tag_min_present_landmarks={"ABDOMEN": 5})
    data = lowered.to_bpreg_dict()
    assert data["bodyscore"]["tag_min_present_landmarks"] == {"ABDOMEN": 5}
    again = InferenceSettings.from_bpreg_dict(data)
    assert dict(again.tag_min_present_landmarks) == {"ABDOMEN": 5}
    described = settings_description(again)["body part examined tag"]["min present landmarks"]
    assert described == {**TAG_MIN_PRESENT_LANDMARKS, "ABDOMEN": 5}


@pytest.mark.parametrize("overrides", [{"ABDOMEN": 0}, {"ABDOMEN": 10}, {"LEGS": 1}])
def test_bad_tag_minimum_in_a_settings_file_is_a_model_error(overrides: dict[str, int]) -> None:
    data = tiny_settings_dict()
    data["bodyscore"] = {"tag_min_present_landmarks": overrides}
    with pytest.raises(ModelError, match="tag_min_present_landmarks"):
        InferenceSettings.from_bpreg_dict(data)


def test_spacing_check_extent_round_trips_and_is_checked() -> None:
    plain = InferenceSettings.from_bpreg_dict(tiny_settings_dict())
    assert plain.spacing_check_min_extent_mm == 0.0   # bpreg folders: decide on any length
    ours = dataclasses.replace(plain, spacing_check_min_extent_mm=100.0)
    again = InferenceSettings.from_bpreg_dict(ours.to_bpreg_dict())
    assert again.spacing_check_min_extent_mm == 100.0
    processing = settings_description(again)["slice score processing"]
    assert processing["spacing_check_min_extent_mm"] == 100.0
    data = tiny_settings_dict()
    data["bodyscore"] = {"spacing_check_min_extent_mm": -1}
    with pytest.raises(ModelError, match="spacing_check_min_extent_mm"):
        InferenceSettings.from_bpreg_dict(data)
