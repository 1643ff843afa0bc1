"""Tests of prepare_data with unlabelled volumes and weak labels (issue 17), and of the
manifest entries' new fields."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.errors import InputError
from bodyscore.train.data import VolumeEntry, cache_volume, load_manifest, prepare_data


def write_nifti(path: Path, n_slices: int, *, dz: float = 4.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + n_slices)
    data = rng.integers(-1000, 1000, size=(12, 10, n_slices)).astype(np.int16)  # (x, y, z)
    nib.save(nib.Nifti1Image(data, np.diag([8.0, 8.0, dz, 1.0])), path)
    return path


def write_json(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "ct"
    more = tmp_path / "unlabelled"
    paths = {
        "a": write_nifti(src / "a.nii.gz", 10),
        "b": write_nifti(src / "b.nii.gz", 8),
        "u1": write_nifti(more / "u1.nii.gz", 12),
        "u2": write_nifti(more / "u2.nii.gz", 9),
    }
    paths["landmarks"] = write_json(src / "landmarks.json", {
        "_conventions": {},
        "a": {"file": "a.nii.gz", "landmarks": {"lung_start": {"k": 2.5}},
              "regions": [{"k": [0, 3], "label": "chest"}]},
        # an annotation of an unlabelled volume in the annotated set's file is not used
        "u2": {"file": "u2.nii.gz", "landmarks": {"L1": {"k": 4}},
               "regions": [{"k": [0, 8], "label": "head"}]},
    })
    paths["weak"] = write_json(more / "regions.json", {
        "u1": {"file": "u1.nii.gz", "landmarks": {"L1": {"k": 3.0}, "L5": {"k": 1.0}},
               "regions": [{"k": [0, 4], "label": "pelvis"}, {"k": [5, 11], "label": "legs"}]},
        # weak labels of an annotated volume are not used either
        "a": {"file": "a.nii.gz", "landmarks": {"L3": {"k": 7}},
              "regions": [{"k": [0, 9], "label": "legs"}]},
    })
    return paths


def prepare(data: dict[str, Path], out: Path, **changes) -> object:
    kwargs = {
        "val_fraction": 0.0,
        "landmark_files": [data["landmarks"]],
        "unlabelled_sources": [data["u1"], data["u2"]],
        "weak_label_files": [data["weak"]],
        "licence_lookup": lambda vid: f"licence-of-{vid}",
        "attribution_lookup": lambda vid: f"credit-{vid}",
        "groups": {"u1": "body7", "a": "body7"},
    }
    kwargs.update(changes)
    return prepare_data([data["a"], data["b"]], out, **kwargs)


def test_unlabelled_entries_keep_regions_not_weak_landmarks(data: dict[str, Path],
                                                           tmp_path: Path) -> None:
    out = tmp_path / "cache"
    manifest = prepare(data, out)
    assert [v.volume_id for v in manifest.volumes] == ["a", "b", "u1", "u2"]
    by_id = {v.volume_id: v for v in manifest.volumes}
    assert {k: v.annotated for k, v in by_id.items()} == {"a": True, "b": True, "u1": False,
                                                          "u2": False}
    # the weak file's landmarks (read once by eye) are not used; its regions are
    assert dict(by_id["u1"].landmarks) == {}
    assert by_id["u1"].regions == ((0, 4, "pelvis"), (5, 11, "legs"))
    # the annotated set's file does not annotate an unlabelled volume ...
    assert dict(by_id["u2"].landmarks) == {}
    assert by_id["u2"].regions == ()
    # ... nor does the weak file relabel an annotated one
    assert dict(by_id["a"].landmarks) == {"lung_start": 2.5}
    assert by_id["a"].regions == ((0, 3, "chest"),)
    assert by_id["b"].regions == ()
    # credits from the callables, groups as given
    assert {k: v.licence for k, v in by_id.items()} == {k: f"licence-of-{k}" for k in by_id}
    assert {k: v.attribution for k, v in by_id.items()} == {k: f"credit-{k}" for k in by_id}
    assert by_id["u1"].group == by_id["a"].group == "body7"
    assert by_id["u2"].group == "u2"
    assert by_id["u1"].shape == (12, 128, 128)
    assert (out / by_id["u1"].file).is_file()
    # the manifest on disk keeps the new fields
    assert load_manifest(out) == manifest


def test_mapping_lookups_and_defaults(data: dict[str, Path], tmp_path: Path) -> None:
    manifest = prepare(data, tmp_path / "cache", licence_lookup={"u1": "CC0"},
                       attribution_lookup={"a": "Doe"})
    by_id = {v.volume_id: v for v in manifest.volumes}
    assert by_id["u1"].licence == "CC0"
    assert by_id["b"].licence == "unknown"
    assert by_id["a"].attribution == "Doe"
    assert by_id["u1"].attribution == ""
    bare = prepare(data, tmp_path / "bare", licence_lookup=None, attribution_lookup=None)
    assert {(v.licence, v.attribution) for v in bare.volumes} == {("unknown", "")}


def test_cached_entry_reused_with_new_credits_and_annotated_flag(data: dict[str, Path],
                                                                tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare(data, out)
    stamps = {v.volume_id: (out / v.file).stat().st_mtime_ns for v in first.volumes}
    again = prepare(data, out, licence_lookup=lambda vid: "NEW LICENCE",
                    attribution_lookup=lambda vid: "new credit")
    assert {v.volume_id: (out / v.file).stat().st_mtime_ns for v in again.volumes} == stamps
    assert {v.licence for v in again.volumes} == {"NEW LICENCE"}
    assert {v.attribution for v in again.volumes} == {"new credit"}
    by_id = {v.volume_id: v for v in again.volumes}
    assert by_id["u1"].annotated is False
    assert by_id["u1"].regions == ((0, 4, "pelvis"), (5, 11, "legs"))
    assert load_manifest(out).volumes == again.volumes
    # b moved to the unlabelled list (no annotation either way): same file, flag follows
    moved = prepare_data([data["a"]], out, val_fraction=0.0, landmark_files=[data["landmarks"]],
                         unlabelled_sources=[data["b"], data["u1"], data["u2"]],
                         weak_label_files=[data["weak"]])
    b = {v.volume_id: v for v in moved.volumes}["b"]
    assert b.annotated is False
    assert (out / b.file).stat().st_mtime_ns == stamps["b"]


def test_unlabelled_only_data(data: dict[str, Path], tmp_path: Path) -> None:
    manifest = prepare_data([], tmp_path / "cache", val_fraction=0.0,
                            unlabelled_sources=[data["u1"]], weak_label_files=[data["weak"]])
    (entry,) = manifest.volumes
    assert (entry.volume_id, entry.annotated, entry.split) == ("u1", False, "train")


def test_progress_wraps_every_source(data: dict[str, Path], tmp_path: Path) -> None:
    seen: list[object] = []

    def progress(items):
        for item in items:
            seen.append(item)
            yield item

    prepare(data, tmp_path / "cache", progress=progress)
    assert len(seen) == 4


def test_duplicate_ids_across_lists_are_an_error_naming_them(data: dict[str, Path],
                                                            tmp_path: Path) -> None:
    other = tmp_path / "other"
    dup_a = write_nifti(other / "a.nii.gz", 7)
    dup_u1 = write_nifti(other / "u1.nii", 7)
    with pytest.raises(InputError, match=r"duplicate volume ids in the sources \(a, u1\)"):
        prepare_data([data["a"], data["b"]], tmp_path / "cache", val_fraction=0.0,
                     unlabelled_sources=[data["u1"], dup_u1, dup_a])
    with pytest.raises(InputError, match=r"\(b\)"):
        prepare_data([data["b"], data["b"]], tmp_path / "cache2", val_fraction=0.0)


def test_rejected_duplicate_does_not_corrupt_the_cache(data: dict[str, Path],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_data([data["a"]], out, val_fraction=0.0)
    duplicate = write_nifti(tmp_path / "elsewhere" / "a.nii.gz", 17, seed=9)
    with pytest.raises(InputError, match="duplicate"):
        prepare_data([data["a"]], out, val_fraction=0.0, unlabelled_sources=[duplicate])
    again = prepare_data([data["a"]], out, val_fraction=0.0)
    (entry,) = again.volumes
    assert entry == first.volumes[0]
    assert np.load(out / entry.file).shape[0] == entry.n_slices == 10


# -- VolumeEntry JSON ----------------------------------------------------------------------------
def test_volume_entry_round_trips_annotated_and_attribution(tmp_path: Path) -> None:
    from dataclasses import replace

    base = cache_volume(tmp_path, "v", np.zeros((5, 8, 8), np.float32),
                        spacing_mm=(2.0, 1.0, 1.0))
    assert (base.annotated, base.attribution) == (True, "")
    entry = replace(base, annotated=False, attribution="Doe et al., CC BY 4.0",
                    regions=((0, 2, "legs"),))
    data = entry.to_json()
    assert data["annotated"] is False
    assert data["attribution"] == "Doe et al., CC BY 4.0"
    assert VolumeEntry.from_json(json.loads(json.dumps(data))) == entry


def test_old_manifest_entries_default_to_annotated(tmp_path: Path) -> None:
    entry = cache_volume(tmp_path, "v", np.zeros((5, 8, 8), np.float32),
                         spacing_mm=(2.0, 1.0, 1.0), landmarks={"L1": 2.0})
    old = {k: v for k, v in entry.to_json().items() if k not in ("annotated", "attribution")}
    loaded = VolumeEntry.from_json(old)
    assert loaded.annotated is True
    assert loaded.attribution == ""
    assert loaded == entry
    # and a whole old manifest.json loads
    (tmp_path / "manifest.json").write_text(json.dumps({"volumes": [old]}), encoding="utf-8")
    assert load_manifest(tmp_path).volumes[0].annotated is True
