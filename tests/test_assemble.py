"""Tests of bodyscore.assemble (thesis table 4.7; input slice order)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bodyscore.assemble import assemble_result
from bodyscore.errors import InputError
from bodyscore.inference import RawScores
from bodyscore.postprocess import clean_scores, inverse_transform_scores
from bodyscore.result import BPREG_KEYS, ScoreResult
from bodyscore.settings import InferenceSettings
from bodyscore.volume import Volume

MODEL = {"name": "public-model", "version": "1.1.0", "sha256": None}


def _volume(n: int, dz: float = 2.5, order: np.ndarray | None = None, **meta: object) -> Volume:
    affine = np.diag([1.0, 1.0, dz, 1.0])
    return Volume(
        array=np.full((n, 2, 2), -1000, dtype=np.int16),
        spacing_mm=(dz, 1.0, 1.0),
        affine=affine,
        source="test.nii.gz",
        source_slice_index=order,
        meta={"format": "nifti", **meta},
        warnings=("reader warning",),
    )


def _raw(
    scores: np.ndarray, settings_: InferenceSettings, empty: np.ndarray | None = None
) -> RawScores:
    raw = inverse_transform_scores(scores, settings=settings_)
    return RawScores(raw, np.zeros(raw.size, bool) if empty is None else empty)


def test_whole_body_result(public_settings: InferenceSettings) -> None:
    n, dz = 400, 3.0
    target = -20 + public_settings.slope_mean * np.arange(n) * dz  # -20 … 123
    vol = _volume(n, dz, body_part_examined="CHEST", series_instance_uid="1.2.3")
    r = assemble_result(
        raw_scores=_raw(target, public_settings),
        volume=vol,
        settings=public_settings,
        model_info=MODEL,
    )
    assert r.n_slices == n
    assert r.body_part_examined_tag == "HEAD-NECK-CHEST-ABDOMEN-PELVIS"
    assert r.reverse_z_ordering is False
    assert r.valid_z_spacing is True
    assert r.expected_z_spacing == pytest.approx(dz, rel=0.02)
    assert r.z_spacing == dz
    assert r.expected_slope == public_settings.slope_mean
    assert r.input["body_part_examined"] == "CHEST"
    assert r.input["series_instance_uid"] == "1.2.3"
    assert list(r.input["shape_zyx"]) == [n, 2, 2]
    assert r.warnings == ("reader warning",)
    assert len(r.lookup_table) == 35
    assert r.lookup_table["Th1"]["mean"] == pytest.approx(75.794)
    processing = r.settings["slice score processing"]
    assert processing["transform_min"] == public_settings.transform_min
    assert processing["smoothing_sigma"] == 10.0
    assert list(r.settings["body part examined dict"]["legs"]) == [None, "pelvis_start"]
    text = r.to_json()
    assert "NaN" not in text
    assert "Infinity" not in text
    data = json.loads(text)
    assert list(data)[: len(BPREG_KEYS)] == list(BPREG_KEYS)
    assert ScoreResult.from_json(text) == r


def test_reverse_z_ordering_means_content_against_geometry(
    public_settings: InferenceSettings,
) -> None:
    # the geometry says feet → head, but the content runs head → feet
    n, dz = 200, 2.5
    target = 80 - public_settings.slope_mean * np.arange(n) * dz
    r = assemble_result(
        raw_scores=_raw(target, public_settings),
        volume=_volume(n, dz),
        settings=public_settings,
        model_info=MODEL,
    )
    assert r.reverse_z_ordering is True
    assert r.expected_z_spacing is not None
    assert r.expected_z_spacing < 0
    assert any("reversed" in w for w in r.warnings)


def test_head_first_file_reports_input_order(public_settings: InferenceSettings) -> None:
    # a file stored head first: canonical() flips it, per-slice lists come back in file order
    n, dz = 60, 2.5
    stored = Volume(
        array=np.zeros((n, 2, 2), np.int16),
        spacing_mm=(dz, 1, 1),
        affine=np.diag([1.0, 1.0, -dz, 1.0]),
        source="headfirst.nii",
    )
    vol = stored.canonical()
    np.testing.assert_array_equal(vol.slice_order, np.arange(n)[::-1])
    target = 30 + public_settings.slope_mean * np.arange(n) * dz  # canonical: rising
    r = assemble_result(
        raw_scores=_raw(target, public_settings),
        volume=vol,
        settings=public_settings,
        model_info=MODEL,
    )
    assert r.reverse_z_ordering is False
    assert np.all(np.diff(r.unprocessed) < 0)  # file order: head first
    np.testing.assert_allclose(r.z, vol.z_mm[::-1])
    abdomen = list(r.body_part_examined["abdomen"])
    assert abdomen
    assert abdomen == sorted(abdomen)
    assert all(25.532 <= r.cleaned[i] < 56.856 for i in abdomen)


def test_edge_cases(public_settings: InferenceSettings) -> None:
    one = assemble_result(
        raw_scores=_raw(np.array([50.0]), public_settings),
        volume=_volume(1),
        settings=public_settings,
        model_info=MODEL,
    )
    assert "only 1 slice: slope and z-spacing checks undefined" in one.warnings
    assert one.valid_z_spacing is None
    assert one.observed_slope is None
    assert one.body_part_examined_tag == "ABDOMEN"
    assert ScoreResult.from_json(one.to_json()) == one

    two = assemble_result(
        raw_scores=_raw(np.array([50.0, 50.3]), public_settings),
        volume=_volume(2),
        settings=public_settings,
        model_info=MODEL,
    )
    # σ = 10 mm = 4 slices smooths two slices almost to their mean (as bpreg does)
    assert two.observed_slope is not None
    # smoothing a 2.5 mm stack with σ = 10 mm (edge replication) flattens but keeps the rise
    assert 0 < two.observed_slope < 0.3 / 2.5

    empty = np.ones(5, bool)
    none = assemble_result(
        raw_scores=_raw(np.full(5, 50.0), public_settings, empty),
        volume=_volume(5),
        settings=public_settings,
        model_info=MODEL,
    )
    assert "all slices empty: no slice scores" in none.warnings
    assert all(v is None for v in none.cleaned_scores)
    assert none.unprocessed_scores[0] == pytest.approx(50.0)
    assert none.body_part_examined_tag == "NONE"
    assert all(not v for v in none.body_part_examined.values())
    json.loads(none.to_json())

    with pytest.raises(InputError, match="score every slice"):
        assemble_result(
            raw_scores=_raw(np.zeros(3), public_settings),
            volume=_volume(4),
            settings=public_settings,
            model_info=MODEL,
        )


def test_lacking_lookup_table_is_a_warning(public_settings: InferenceSettings) -> None:
    import dataclasses
    from types import MappingProxyType

    table = {k: v for k, v in public_settings.lookup_table.items() if k != "Th9"}
    partial = dataclasses.replace(public_settings, lookup_table=MappingProxyType(table))
    r = assemble_result(
        raw_scores=_raw(np.linspace(40, 70, 50), partial),
        volume=_volume(50),
        settings=partial,
        model_info=MODEL,
    )
    assert any("Th9" in w for w in r.warnings)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_permuted_slice_order_permutes_lists(
    public_settings: InferenceSettings, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, 40))
    raw = data.draw(arrays(np.float64, n, elements=st.floats(-6, 8)))
    empty = data.draw(arrays(np.bool_, n))
    order = np.asarray(data.draw(st.permutations(range(n))), dtype=np.int64)
    scores = RawScores(raw, empty)
    base = assemble_result(
        raw_scores=scores, volume=_volume(n), settings=public_settings, model_info=MODEL
    )
    perm = assemble_result(
        raw_scores=scores,
        volume=_volume(n, order=order),
        settings=public_settings,
        model_info=MODEL,
    )
    for field in ("cleaned", "unprocessed", "z"):
        a, b = getattr(base, field), getattr(perm, field)
        np.testing.assert_array_equal(b[order], a)
    for region, indices in base.body_part_examined.items():
        assert list(perm.body_part_examined[region]) == sorted(int(order[i]) for i in indices)
    assert perm.body_part_examined_tag == base.body_part_examined_tag
    # any finite curve: valid, finite where defined, strict JSON round trip
    for value in (
        *base.cleaned_scores,
        base.observed_slope,
        base.slope_ratio,
        base.expected_z_spacing,
    ):
        assert value is None or math.isfinite(value)
    assert ScoreResult.from_json(base.to_json()) == base
    # the cleaned scores are those of clean_scores on the canonical curve
    direct = clean_scores(raw, z_mm=np.arange(n) * 2.5, settings=public_settings, empty_mask=empty)
    np.testing.assert_array_equal(base.cleaned, direct.cleaned)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-5, 7), min_size=2, max_size=40, unique=True))
def test_monotone_curves_flag_and_reversal(
    public_settings: InferenceSettings, values: list[float]
) -> None:
    rising = np.sort(np.asarray(values))
    n = rising.size
    no_empty = np.zeros(n, bool)
    forward = assemble_result(
        raw_scores=RawScores(rising, no_empty),
        volume=_volume(n),
        settings=public_settings,
        model_info=MODEL,
    )
    backward = assemble_result(
        raw_scores=RawScores(rising[::-1].copy(), no_empty),
        volume=_volume(n),
        settings=public_settings,
        model_info=MODEL,
    )
    assert forward.reverse_z_ordering is False
    slope = forward.observed_slope
    assert backward.reverse_z_ordering is (slope is not None and slope > 0)
