"""Tests of the prepared-data cache, manifest, splits and the sampling Dataset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bodyscore.errors import InputError
from bodyscore.train.augment import build_augmentations
from bodyscore.train.config import BPREG_TRANSFORM_PARAMS
from bodyscore.train.data import (
    VolumeEntry,
    VolumeSampleDataset,
    assign_splits,
    cache_volume,
    canonical_region_ranges,
    load_manifest,
    prepare_data,
    region_bounds_of,
    region_weights_of,
)


@pytest.fixture
def ct_dir() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct"
    if not (path / "landmarks.json").is_file():
        pytest.skip("shared CT data not available")
    return path


def write_nifti(path: Path, n_slices: int, *, dz: float = 4.0) -> None:
    rng = np.random.default_rng(n_slices)
    data = rng.integers(-1000, 1000, size=(24, 20, n_slices)).astype(np.int16)  # (x, y, z)
    affine = np.diag([8.0, 8.0, dz, 1.0])
    nib.save(nib.Nifti1Image(data, affine), path)


def test_assign_splits_groups_and_seed():
    groups = ["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"]
    splits = assign_splits(groups, seed=0, val_fraction=0.2)
    assert set(splits) == set(groups)
    assert sum(v == "val" for v in splits.values()) == 2  # round(0.2 · 9 groups)
    assert splits == assign_splits(groups, seed=0, val_fraction=0.2)
    assert any(assign_splits(groups, seed=s, val_fraction=0.2) != splits for s in range(1, 6))
    assert set(assign_splits(["x", "y"], seed=0, val_fraction=0.01).values()) == {"train", "val"}
    assert set(assign_splits(["x"], seed=0, val_fraction=0.5).values()) == {"train"}


def test_prepare_data_cache_manifest_groups_landmarks(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name, n in (("head", 12), ("legs", 9), ("chest", 15), ("abd", 10)):
        write_nifti(src / f"{name}.nii.gz", n)
    (src / "landmarks.json").write_text(json.dumps({
        "_conventions": {},
        "chest": {"file": "chest.nii.gz", "landmarks": {"lung_start": {"k": 2.5},
                                                        "L1": None}},
    }))
    sources = sorted(src.glob("*.nii.gz"))
    out = tmp_path / "cache"
    manifest = prepare_data(sources, out, seed=1, val_fraction=0.4,
                            groups={"head": "body1", "legs": "body1"},
                            licence_lookup={"chest": "CC BY 3.0"},
                            landmark_files=[src / "landmarks.json"])
    assert manifest == load_manifest(out)
    by_id = {v.volume_id: v for v in manifest.volumes}
    assert by_id["head"].split == by_id["legs"].split  # one body, one split
    assert by_id["head"].group == "body1"
    assert {v.split for v in manifest.volumes} == {"train", "val"}
    chest = by_id["chest"]
    assert chest.licence == "CC BY 3.0"
    assert by_id["abd"].licence == "unknown"
    assert dict(chest.landmarks) == {"lung_start": 2.5}
    assert chest.shape == (15, 128, 128)
    assert chest.z_spacing_mm == pytest.approx(4.0)
    cached = np.load(out / chest.file)
    assert cached.dtype == np.float16
    assert cached.shape == (15, 128, 128)
    assert cached.min() >= -1
    assert cached.max() <= 1
    assert manifest.preprocessing["target_spacing_mm"] == 3.5
    # unchanged sources are not processed again
    stamp = (out / chest.file).stat().st_mtime_ns
    again = prepare_data(sources, out, seed=1, val_fraction=0.4,
                         groups={"head": "body1", "legs": "body1"},
                         licence_lookup={"chest": "CC BY 3.0"},
                         landmark_files=[src / "landmarks.json"])
    assert (out / chest.file).stat().st_mtime_ns == stamp
    assert [v.split for v in again.volumes] == [v.split for v in manifest.volumes]
    assert not list(out.glob("*.part"))
    # a changed annotation refreshes the entry instead of keeping stale landmarks
    without = prepare_data(sources, out, seed=1, val_fraction=0.4,
                           groups={"head": "body1", "legs": "body1"})
    assert dict({v.volume_id: v for v in without.volumes}["chest"].landmarks) == {}


def test_prepare_real_volume_matches_annotation(ct_dir: Path, tmp_path: Path):
    manifest = prepare_data([ct_dir / "ts_petct_slab.nii.gz"], tmp_path, val_fraction=0.0,
                            landmark_files=[ct_dir / "landmarks.json"])
    (entry,) = manifest.volumes
    assert entry.shape == (20, 128, 128)
    assert entry.z_spacing_mm == pytest.approx(2.0)
    annotated = json.loads((ct_dir / "landmarks.json").read_text())["ts_petct_slab"]
    expected = {k: v["k"] for k, v in annotated["landmarks"].items() if v is not None}
    assert dict(entry.landmarks) == pytest.approx(expected)
    # the same landmarks given by world z only (CSV form) land on the same indices
    csv_path = tmp_path / "z_only.csv"
    rows = [f"ts_petct_slab,{k},,{v['z_mm']}" for k, v in annotated["landmarks"].items()
            if v is not None]
    csv_path.write_text("volume,landmark,k,z_mm\n" + "\n".join(rows) + "\n")
    by_z = prepare_data([ct_dir / "ts_petct_slab.nii.gz"], tmp_path / "z", val_fraction=0.0,
                        landmark_files=[csv_path])
    assert dict(by_z.volumes[0].landmarks) == pytest.approx(expected, abs=1e-3)


def test_dataset_items_deterministic_with_anchor(tmp_path: Path):
    slices = np.linspace(-1, 1, 30 * 16 * 16, dtype=np.float32).reshape(30, 16, 16)
    entry = cache_volume(tmp_path, "v", slices, spacing_mm=(2.0, 1.0, 1.0),
                         landmarks={"L1": 10.0})
    short = cache_volume(tmp_path, "s", slices[:3], spacing_mm=(2.0, 1.0, 1.0))
    dataset = VolumeSampleDataset([entry, short], tmp_path, num_slices=4,
                                  augment=build_augmentations(BPREG_TRANSFORM_PARAMS),
                                  anchor_targets={"L1": 1.5})
    assert len(dataset) == 1  # 3 slices < m = 4: skipped
    a, b = dataset[(0, 7)], dataset[(0, 7)]
    assert torch.equal(a["slices"], b["slices"])
    assert a["slices"].shape == (4, 1, 16, 16)
    assert float(a["slices"].abs().max()) <= 1
    step = int(a["indices"][1] - a["indices"][0])
    assert a["delta_h_mm"] == pytest.approx(2.0 * step)
    # one landmark: dense targets 1.5 + 0.01/mm * (k - 10) * 2 mm, all within 50 mm
    assert bool(a["anchor_mask"].all())
    expected = 1.5 + 0.01 * (a["indices"].double() - 10) * 2.0
    assert torch.allclose(a["anchor_target"].double(), expected, atol=1e-6)
    batch = dataset.collate([a, b])
    assert batch["slices"].shape == (8, 1, 16, 16)
    assert batch["delta_h_mm"].shape == (2,)


def test_missing_manifest_raises(tmp_path: Path):
    with pytest.raises(InputError, match="prepare_data"):
        load_manifest(tmp_path)


def test_dense_anchor_targets_hand_worked():
    from bodyscore.train.data import dense_anchor_targets

    # Th8 (k 15, target 5) breaks the order of the other three: the longest consistent
    # chain L5 -> L1 -> Th12 is kept
    landmarks = {"L5": 10.0, "L1": 20.0, "Th8": 15.0, "Th12": 25.0}
    targets = {"L5": 2.0, "L1": 3.0, "Th8": 5.0, "Th12": 4.0}
    indices = np.array([0, 10, 15, 20, 24, 27, 60])
    target, mask = dense_anchor_targets(landmarks, targets, indices, z_spacing_mm=5.0,
                                        slope_per_mm=0.01, extrapolate_mm=50.0)
    # below L5: 2 - 0.01*10*5 = 1.5 ; between: linear ; above Th12: 4 + 0.01*2*5 = 4.1
    np.testing.assert_allclose(target[:6], [1.5, 2.0, 2.5, 3.0, 3.8, 4.1], atol=1e-6)
    assert mask.tolist() == [True] * 6 + [False]  # k=60 is 175 mm beyond Th12


def test_dense_anchor_targets_without_landmarks():
    from bodyscore.train.data import dense_anchor_targets

    target, mask = dense_anchor_targets({}, {"L1": 1.0}, np.arange(4), z_spacing_mm=1.0)
    assert not mask.any()
    assert target.shape == (4,)


def test_region_bounds_of_hand_worked():
    regions = [(0, 3, "legs"), (4, 9, "pelvis"), (8, 9, "unbounded_label")]
    bounds = {"legs": (None, 0.1), "pelvis": (-0.1, 2.5)}
    low, high = region_bounds_of(regions, bounds, np.array([0, 3, 4, 9, 12]))
    np.testing.assert_array_equal(low, np.float32([-np.inf, -np.inf, -0.1, -0.1, -np.inf]))
    np.testing.assert_array_equal(high, np.float32([0.1, 0.1, 2.5, 2.5, np.inf]))
    assert low.dtype == np.float32


def test_region_weights_of_hand_worked():
    regions = [(0, 3, "legs"), (4, 9, "pelvis"), (8, 9, "legs")]
    weight = region_weights_of(regions, {"legs": 5.0}, np.array([0, 3, 4, 8, 12]))
    # a later range wins (slice 8 is legs again); pelvis and unlabelled slices weigh 1
    np.testing.assert_array_equal(weight, np.float32([5.0, 5.0, 1.0, 5.0, 1.0]))
    assert weight.dtype == np.float32
    np.testing.assert_array_equal(region_weights_of(regions, {}, np.arange(3)), np.ones(3))


def test_canonical_region_ranges_follow_the_stored_slice_order():
    from bodyscore.evaluate.landmarks import RegionLabel, VolumeAnnotation
    from bodyscore.volume import Volume

    # stored head-first: stored k=0 is the most superior slice → canonical index 9
    volume = Volume(array=np.zeros((10, 4, 4), np.int16), spacing_mm=(2.0, 1.0, 1.0),
                    affine=np.diag([1.0, 1.0, 2.0, 1.0]), source_slice_index=np.arange(9, -1, -1))
    annotation = VolumeAnnotation("v", None, {}, regions=(
        RegionLabel(0, 2, "head"), RegionLabel(3, 12, "shoulder-neck")))
    assert canonical_region_ranges(annotation, volume) == ((7, 9, "head"),
                                                           (0, 6, "shoulder-neck"))
    assert canonical_region_ranges(None, volume) == ()


def test_holdout_goes_to_the_test_split_and_entries_round_trip(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    sources = [src / f"{name}.nii.gz" for name in ("a", "b", "c", "d")]
    for path in sources:
        write_nifti(path, 6)
    manifest = prepare_data(sources, tmp_path / "cache", val_fraction=0.5,
                            groups={"a": "g1", "b": "g1"}, holdout=["g1"], train_only=["c"])
    split = {v.volume_id: v.split for v in manifest.volumes}
    assert split["a"] == split["b"] == "test"
    assert split["c"] == "train"
    entry = manifest.volumes[0]
    regions_entry = VolumeEntry.from_json({**entry.to_json(), "regions": [[0, 2, "legs"]]})
    assert regions_entry.regions == ((0, 2, "legs"),)
    assert VolumeEntry.from_json(regions_entry.to_json()) == regions_entry


def test_synthetic_volumes_can_teach_the_order_only(tmp_path: Path):
    slices = np.linspace(-1, 1, 30 * 16 * 16, dtype=np.float32).reshape(30, 16, 16)
    entries = [replace(cache_volume(tmp_path, vid, slices, spacing_mm=(2.0, 1.0, 1.0),
                                    landmarks={"L1": 10.0}), regions=((0, 29, "abdomen"),))
               for vid in ("real", "synth_00001")]
    kwargs = {"num_slices": 4, "anchor_targets": {"L1": 1.5},
              "region_bounds": {"abdomen": (1.0, 2.0)}}
    supervised = VolumeSampleDataset(entries, tmp_path, **kwargs)
    order_only = VolumeSampleDataset(entries, tmp_path, synthetic_supervision=False, **kwargs)
    for dataset, synthetic_targets in ((supervised, True), (order_only, False)):
        real, synth = dataset[(0, 3)], dataset[(1, 3)]
        assert bool(real["anchor_mask"].all())
        assert bool(torch.isfinite(real["region_low"]).all())
        assert bool(synth["anchor_mask"].all()) is synthetic_targets
        assert bool(torch.isfinite(synth["region_low"]).any()) is synthetic_targets
    # supervision changes the targets only, never the sampled slices
    assert torch.equal(supervised[(1, 3)]["slices"], order_only[(1, 3)]["slices"])
