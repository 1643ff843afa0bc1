"""Correspondence term: boundaries from structures.json, sampler, loss, independence figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bodyscore.errors import InputError
from bodyscore.evaluate.independence import (
    boundary_score_spread,
    mean_boundary_spread,
    score_at,
)
from bodyscore.train.correspondence import (
    ALL_BOUNDARIES,
    CORRESPONDENCE_BOUNDARIES,
    boundary_distance_spread,
    correspondence_loss,
    read_slice_geometry,
    read_structure_boundaries,
    sample_correspondence_batch,
)


def _extent(k_min: int, k_max: int) -> dict[str, int]:
    return {"k_min": k_min, "k_max": k_max, "voxels": 100}


def _write(tmp_path: Path, entries: dict[str, dict]) -> Path:
    data = {"_conventions": "test"} | {
        vid: {"file": f"{vid}.nii.gz", "k_offset_from_source": 0, "structures": s}
        for vid, s in entries.items()}
    path = tmp_path / "structures.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def structures(tmp_path: Path) -> Path:
    return _write(tmp_path, {
        "a": {"Brainstem": _extent(10, 40), "Mandible": _extent(0, 20),
              "LeftParotid": _extent(12, 30), "RightParotid": _extent(14, 33),
              "SpinalCord": _extent(-5, 9)},
        "b": {"Brainstem": _extent(5, 49), "LeftParotid": _extent(3, 20),
              "RightParotid": _extent(4, 49), "Larynx": _extent(1, 8)},
        "c": {"Mandible": _extent(2, 30)},
    })


def test_boundaries_drop_cut_ends_and_combine_parotids(structures: Path) -> None:
    found = read_structure_boundaries(structures, n_slices={"a": 50, "b": 50, "c": 50})
    # a: brainstem caudal 10 (cranial not in the default set), mandible caudal cut at k=0,
    # parotids the mean of both sides
    assert found["a"] == {"Brainstem_caudal": 10.0, "Mandible_cranial": 20.0,
                          "Parotids_caudal": 13.0, "Parotids_cranial": 31.5}
    # b: the right parotid reaches the last slice, so the combined cranial end is cut
    assert found["b"] == {"Brainstem_caudal": 5.0, "Parotids_caudal": 3.5}
    assert found["c"] == {"Mandible_caudal": 2.0, "Mandible_cranial": 30.0}


def test_boundaries_all_names_and_missing_volumes(structures: Path) -> None:
    found = read_structure_boundaries(structures, n_slices={"a": 50, "b": 50},
                                      names=ALL_BOUNDARIES)
    assert set(found) == {"a", "b"}  # c has no slice count: skipped
    assert found["a"]["Brainstem_cranial"] == 40.0
    assert found["a"]["SpinalCord_cranial"] == 9.0
    assert "SpinalCord_caudal" not in found["a"]  # negative k: below the stored volume
    assert "Brainstem_cranial" not in found["b"]  # k_max = n - 1: cut by the volume
    assert found["b"]["Larynx_caudal"] == 1.0
    assert set(CORRESPONDENCE_BOUNDARIES) <= set(ALL_BOUNDARIES)


def test_boundaries_errors(tmp_path: Path, structures: Path) -> None:
    with pytest.raises(InputError, match="unknown boundary"):
        read_structure_boundaries(structures, n_slices={"a": 50}, names=["Heart_caudal"])
    bad = _write(tmp_path, {"a": {"Brainstem": {"k_min": 9, "k_max": 3}}})
    with pytest.raises(InputError, match="k_max 3 < k_min 9"):
        read_structure_boundaries(bad, n_slices={"a": 50})
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.json"):
        read_structure_boundaries(broken, n_slices={})


def test_slice_geometry_from_headers(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    path = _write(tmp_path, {"v": {"Brainstem": _extent(3, 6)}})
    image = nib.Nifti1Image(np.zeros((4, 4, 8), dtype=np.int16), np.diag([1.0, 1.0, 2.5, 1.0]))
    nib.save(image, str(tmp_path / "v.nii.gz"))
    assert read_slice_geometry(path) == {"v": (8, 2.5)}
    assert read_structure_boundaries(path) == {"v": {"Brainstem_caudal": 3.0}}
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 8), dtype=np.int16),
                             np.diag([-1.0, 1.0, 2.5, 1.0])), str(tmp_path / "v.nii.gz"))
    with pytest.raises(InputError, match="RAS"):
        read_slice_geometry(path)


def test_distance_spread_hand_worked() -> None:
    boundaries = {"p": {"A": 10.0, "B": 20.0}, "q": {"A": 10.0, "B": 22.0},
                  "r": {"A": 0.0, "B": 20.0}, "s": {"A": 5.0}}
    spread = boundary_distance_spread(boundaries, {"p": 2.0, "q": 2.0, "r": 2.0, "s": 2.0},
                                      min_volumes=3)
    # distances 20, 24, 40 mm: median 24, quartiles 22 and 32; 40 is 16 mm from the median
    result = spread[("A", "B")]
    assert result.n == 3
    assert result.median_mm == pytest.approx(24.0)
    assert result.robust_sd_mm == pytest.approx(10.0 / 1.349)
    assert result.far_share == 0.0
    assert boundary_distance_spread(boundaries, {"p": 2.0, "q": 2.0, "r": 2.0},
                                    min_volumes=4) == {}


def test_shared_structures_boundaries_inside_volumes(shared_dir: Path) -> None:
    path = shared_dir / "data" / "ct-unlabelled" / "openkbp" / "structures.json"
    if not path.is_file():
        pytest.skip("OpenKBP structures.json not available")
    geometry = read_slice_geometry(path)
    found = read_structure_boundaries(path, n_slices={v: n for v, (n, _) in geometry.items()})
    assert len(found) > 200
    for volume_id, marks in found.items():
        assert set(marks) <= set(CORRESPONDENCE_BOUNDARIES)
        assert all(0 < k < geometry[volume_id][0] - 1 for k in marks.values())


def test_sampler_deterministic_and_grouped() -> None:
    boundaries = {0: {"A": 10.4, "B": 3.0}, 1: {"A": 12.6}, 2: {"A": 7.0, "C": 1.0},
                  5: {"B": 4.5}}
    first = sample_correspondence_batch(boundaries, np.random.default_rng(3),
                                        n_boundaries=5, n_patients=2)
    again = sample_correspondence_batch(boundaries, np.random.default_rng(3),
                                        n_boundaries=5, n_patients=2)
    assert first.boundary_names == ("A", "B")  # C is in one volume only
    for a, b in ((first.positions, again.positions), (first.slice_indices, again.slice_indices),
                 (first.boundary_ids, again.boundary_ids)):
        np.testing.assert_array_equal(a, b)
    assert len(first) == 4
    for boundary_id in (0, 1):
        group = first.boundary_ids == boundary_id
        positions = first.positions[group]
        assert len(set(positions.tolist())) == 2
        name = first.boundary_names[boundary_id]
        expected = [round(boundaries[int(p)][name]) for p in positions]
        np.testing.assert_array_equal(first.slice_indices[group], expected)


def test_sampler_limits_and_empty() -> None:
    boundaries = {i: {"A": float(i), "B": float(i)} for i in range(10)}
    batch = sample_correspondence_batch(boundaries, np.random.default_rng(0),
                                        n_boundaries=1, n_patients=4)
    assert len(batch) == 4
    assert len(set(batch.boundary_ids.tolist())) == 1
    empty = sample_correspondence_batch({0: {"A": 1.0}}, np.random.default_rng(0))
    assert len(empty) == 0
    assert empty.boundary_names == ()
    with pytest.raises(ValueError, match="n_patients"):
        sample_correspondence_batch(boundaries, np.random.default_rng(0), n_patients=1)


def test_correspondence_loss_hand_worked() -> None:
    torch = pytest.importorskip("torch")
    scores = torch.tensor([1.0, 3.0, 10.0, 10.0, 13.0, 100.0], requires_grad=True)
    ids = torch.tensor([0, 0, 4, 4, 4, 7])
    # group 0: mean 2, variance 1; group 4: mean 11, variance (1 + 1 + 4) / 3 = 2; group 7 has
    # one member and does not count: (1 + 2) / 2
    loss = correspondence_loss(scores, ids)
    assert float(loss.detach()) == pytest.approx(1.5)
    loss.backward()
    # d/ds_i = 2 (s_i - mean_g) / n_g / |G|
    expected = [-0.5, 0.5, -1 / 3, -1 / 3, 2 / 3, 0.0]
    np.testing.assert_allclose(scores.grad.numpy(), expected, atol=1e-6)


def test_correspondence_loss_no_group_is_differentiable_zero() -> None:
    torch = pytest.importorskip("torch")
    scores = torch.tensor([1.0, 5.0], requires_grad=True)
    loss = correspondence_loss(scores, torch.tensor([0, 1]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    np.testing.assert_array_equal(scores.grad.numpy(), [0.0, 0.0])
    empty = torch.zeros(0, requires_grad=True)
    assert float(correspondence_loss(empty, torch.zeros(0, dtype=torch.int64)).detach()) == 0.0
    with pytest.raises(ValueError, match="shape"):
        correspondence_loss(scores, torch.tensor([0, 0, 1]))


def test_score_at_interpolates_and_ignores_nan() -> None:
    scores = np.array([0.0, 10.0, 20.0, np.nan])
    assert score_at(scores, 1.25) == pytest.approx(12.5)
    assert score_at(scores, 2.0) == pytest.approx(20.0)
    assert math.isnan(score_at(scores, 2.5))  # needs the NaN slice
    assert math.isnan(score_at(scores, -0.1))
    assert math.isnan(score_at(scores, 3.5))


def test_boundary_score_spread_hand_worked() -> None:
    scores = {"a": np.arange(10.0), "b": np.arange(10.0) * 2, "c": np.full(10, np.nan)}
    boundaries = {"a": {"X": 4.5, "Y": 2.0}, "b": {"X": 3.0}, "c": {"X": 1.0},
                  "missing": {"X": 1.0}}
    spread = boundary_score_spread(scores, boundaries)
    # X: scores 4.5 (a) and 6.0 (b); c is NaN, "missing" has no scores
    assert spread["X"] == (pytest.approx(0.75), 2)
    std_y, n_y = spread["Y"]
    assert n_y == 1
    assert math.isnan(std_y)
    assert mean_boundary_spread(spread) == pytest.approx(0.75)
    assert math.isnan(mean_boundary_spread({}))
