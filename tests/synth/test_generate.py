"""Tests of bodyscore.synth: determinism, landmark order, geometry, HU sanity, dataset writer."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.synth import LANDMARK_NAMES, PUBLISHED_SCORES, SynthConfig, generate_volume
from bodyscore.synth.anatomy import VERTEBRAE, sample_body_plan
from bodyscore.synth.generate import generate_dataset, regions_for

SMALL = (48, 48)
FAST = SynthConfig(slice_spacing_mm=(3.0, 5.0), fov_cut_probability=0.0, table_probability=0.5)


@pytest.fixture(scope="module")
def full_body():
    return generate_volume(
        7,
        SynthConfig(partial_probability=0.0, slice_spacing_mm=(4.0, 5.0), fov_cut_probability=0.0),
        shape_xy=(64, 64),
    )


@pytest.fixture(scope="module")
def shared_landmarks() -> dict:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct" / "landmarks.json"
    if not path.exists():
        pytest.skip("shared data not available")
    return json.loads(path.read_text())


def test_same_seed_same_volume_and_different_seed_differs():
    a = generate_volume(3, FAST, shape_xy=SMALL)
    b = generate_volume(3, FAST, shape_xy=SMALL)
    c = generate_volume(4, FAST, shape_xy=SMALL)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.volume.affine, b.volume.affine)
    assert dict(a.landmarks_mm) == dict(b.landmarks_mm)
    assert dict(a.landmarks_mm) != dict(c.landmarks_mm)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_landmarks_follow_the_published_order(seed):
    plan = sample_body_plan(np.random.default_rng(seed))
    names = sorted(PUBLISHED_SCORES, key=lambda n: PUBLISHED_SCORES[n])
    z = [plan.landmarks_mm[n] for n in names]
    assert set(plan.landmarks_mm) == set(LANDMARK_NAMES)
    assert len(LANDMARK_NAMES) == 35
    assert all(b - a >= 2.0 - 1e-9 for a, b in itertools.pairwise(z))
    assert plan.landmarks_mm["pelvis_start"] == 0.0
    # pelvis_start -> eyes_end is about 840 mm for a 172 cm body, scaled with height
    expected = 100.0 * 8.4 * plan.scale
    assert abs(plan.landmarks_mm["eyes_end"] - expected) < 0.06 * expected


def test_vertebrae_listed_caudal_to_cranial_and_extents_tile():
    assert VERTEBRAE[0] == "L5"
    assert VERTEBRAE[5] == "Th12"
    assert VERTEBRAE[-1] == "C1"
    assert len(VERTEBRAE) == 24
    plan = sample_body_plan(np.random.default_rng(1))
    for lower, upper in itertools.pairwise(VERTEBRAE):
        assert plan.vertebra_extent_mm(lower)[1] == pytest.approx(plan.vertebra_extent_mm(upper)[0])


def test_geometry_is_within_config_ranges_and_canonical():
    cfg = SynthConfig()
    for seed in range(4):
        ct = generate_volume(seed, FAST, shape_xy=SMALL)
        v = ct.volume
        assert v.array.dtype == np.int16
        assert v.shape[1:] == SMALL
        dz, dy, dx = v.spacing_mm
        scale = cfg.in_plane_size / SMALL[0]
        assert 0.5 * scale - 1e-9 <= dx == dy <= 1.0 * scale + 1e-9
        assert 3.0 - 1e-9 <= dz <= 5.0 + 1e-9 or v.n_slices == FAST.max_slices
        assert v.is_superior_up()
        assert v.has_uniform_spacing
        # affine and z positions agree
        assert np.allclose(v.affine[2, 3] + v.affine[2, 2] * np.arange(v.n_slices), v.z_mm)


def test_landmarks_k_consistent_with_mm_and_affine(full_body):
    v = full_body.volume
    inside = 0
    for name, z in full_body.landmarks_mm.items():
        k = (z - v.affine[2, 3]) / v.affine[2, 2]
        got = full_body.landmarks_k[name]
        if 0 <= k <= v.n_slices - 1:
            inside += 1
            assert got == pytest.approx(k)
        else:
            assert got is None
    assert inside == 35  # full coverage thighs -> vertex


def test_full_body_regions_in_order(full_body):
    labels = [r[2] for r in full_body.regions]
    assert labels == ["legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head"]
    assert full_body.regions[0][0] == 0
    assert full_body.regions[-1][1] == full_body.volume.n_slices
    for (_, stop, _), (start, _, _) in zip(
        full_body.regions[:-1], full_body.regions[1:], strict=True
    ):
        assert stop == start


def test_regions_rules_hand_worked():
    lm = {"pelvis_start": 0.0, "pelvis_end": 20.0, "lung_start": 40.0, "lung_end": 60.0, "C1": 80.0}
    z = np.array([-10.0, 0.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0])
    assert regions_for(z, lm) == (
        (0, 1, "legs"),
        (1, 3, "pelvis"),
        (3, 4, "abdomen"),
        (4, 6, "chest"),
        (6, 7, "shoulder-neck"),
        (7, 8, "head"),
    )


def _slice_at(ct, name):
    k = ct.landmarks_k[name]
    assert k is not None
    return np.asarray(ct.volume.array[round(k)], dtype=np.float64)


def test_hu_sanity(full_body):
    ct, v = full_body, full_body.volume
    x = v.affine[0, 3] + v.affine[0, 0] * np.arange(v.shape[2])
    centre = np.abs(x) < 20.0
    for name in ("L3", "L1", "Th8", "Th4", "C5"):
        img = _slice_at(ct, name)
        assert img[:, centre].max() > 300, name
    chest = _slice_at(ct, "Th6")
    assert (chest < -600).sum() > 0.05 * chest.size  # aerated lungs
    legs = np.asarray(v.array[0], dtype=np.float64)
    assert legs[-1, :].mean() < -850  # most anterior row: air outside the body
    head = _slice_at(ct, "Th2")
    assert head.max() > 300


def test_partial_coverage_and_explicit_range():
    ct = generate_volume(11, FAST, shape_xy=SMALL, z_range_mm=(100.0, 160.0))
    z = ct.volume.z_mm
    assert z[0] == pytest.approx(100.0)
    assert z[-1] <= 160.0 + 1e-6
    outside = [n for n, k in ct.landmarks_k.items() if k is None]
    assert "head_end" in outside
    assert "pelvis_start" in outside
    cfg = SynthConfig(partial_probability=1.0, slice_spacing_mm=(3.0, 5.0))
    for seed in range(3):
        v = generate_volume(seed, cfg, shape_xy=SMALL).volume
        assert v.z_mm[-1] - v.z_mm[0] >= 50.0 - 5.0  # >= 5 cm minus one slice step


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError):
        generate_volume(1, FAST, shape_xy=SMALL, z_range_mm=(10.0, 5.0))
    with pytest.raises(InputError):
        SynthConfig(slice_spacing_mm=(5.0, 1.0))
    with pytest.raises(InputError):
        SynthConfig(partial_length_mm=(10.0, 100.0))


def test_dataset_round_trip(tmp_path, shared_landmarks):
    cfg = SynthConfig(
        in_plane_size=32,
        slice_spacing_mm=(4.0, 5.0),
        partial_probability=1.0,
        partial_length_mm=(50.0, 150.0),
    )
    path = generate_dataset(tmp_path / "ds", 2, seed=5, config=cfg)
    doc = json.loads(path.read_text())
    assert set(doc) == {"_conventions", "synth_00005", "synth_00006"}
    real = next(v for k, v in shared_landmarks.items() if not k.startswith("_"))
    for key in ("synth_00005", "synth_00006"):
        entry = doc[key]
        assert {"file", "shape", "spacing_mm", "z_first_slice_mm", "regions", "landmarks"} <= set(
            entry
        )
        assert set(entry) <= set(real) | {"z_last_slice_mm", "body_regions"}
        img = nib.load(tmp_path / "ds" / entry["file"])
        data = np.asarray(img.dataobj)
        ct = generate_volume(int(key[-5:]), cfg)
        assert list(data.shape) == entry["shape"]
        assert np.array_equal(data.T, ct.volume.array)
        assert np.allclose(img.affine, ct.volume.affine)
        assert np.allclose(img.header.get_zooms(), entry["spacing_mm"])
        assert entry["z_first_slice_mm"] == pytest.approx(img.affine[2, 3], abs=1e-3)
        for region in entry["regions"]:
            a, b = region["k"]
            assert 0 <= a <= b < data.shape[2]
            assert region["label"] in {
                "legs",
                "pelvis",
                "abdomen",
                "chest",
                "shoulder-neck",
                "head",
            }
        for name, lm in entry["landmarks"].items():
            assert name in LANDMARK_NAMES
            if lm is not None:
                assert lm["confidence"] == "exact"
                assert lm["z_mm"] == pytest.approx(
                    img.affine[2, 3] + img.affine[2, 2] * lm["k"], abs=1e-2
                )
    assert not list((tmp_path / "ds").glob("*.part"))


@pytest.mark.parametrize("seed", [1, 2])
def test_landmark_definitions_hold_in_a_noise_free_volume(seed):
    cfg = SynthConfig(
        partial_probability=0.0,
        slice_spacing_mm=(2.0, 2.0),
        noise_sd_hu=(0.0, 0.0),
        table_probability=0.0,
        max_slices=2000,
    )
    ct = generate_volume(seed, cfg, shape_xy=(96, 96))
    v, lm = ct.volume, ct.landmarks_mm
    a, z = v.array, v.z_mm
    x = v.affine[0, 3] + v.affine[0, 0] * np.arange(v.shape[2])
    tol = 2.0 + 1.0  # one slice step + 1 mm
    lungish = ((a > -940) & (a < -700))[:, :, np.abs(x) > 25].reshape(len(z), -1).sum(1) > 2
    chest = (z > lm["L2"]) & (z < lm["C3"])
    assert z[chest & lungish].min() == pytest.approx(lm["lung_start"], abs=tol)
    assert z[chest & lungish].max() == pytest.approx(lm["lung_end"], abs=tol)
    body = (a > -500)[:, :, np.abs(x) < 30].reshape(len(z), -1).any(1)
    assert z[body & (z > lm["C1"])].max() == pytest.approx(lm["head_end"], abs=tol)


def test_bilinear_upsampling_hand_worked():
    from bodyscore.synth.phantom import _linear_weights, _upsample

    coarse_axis = np.array([0.0, 10.0])
    fine_axis = np.array([0.0, 2.5, 5.0, 10.0])
    block = np.array([[[0.0, 100.0], [20.0, 120.0]]], dtype=np.float32)  # (k, y, x)
    w = _linear_weights(coarse_axis, fine_axis)
    assert np.allclose(w[2], [0.0, 0.25, 0.5, 1.0])
    fine = _upsample(block.copy(), w, w)
    assert fine.shape == (1, 4, 4)
    assert np.allclose(fine[0, 0], [0.0, 25.0, 50.0, 100.0])  # along x at y = 0
    assert np.allclose(fine[0, :, 0], [0.0, 5.0, 10.0, 20.0])  # along y at x = 0
    assert fine[0, 2, 2] == pytest.approx(60.0)  # centre: mean of the four corners
