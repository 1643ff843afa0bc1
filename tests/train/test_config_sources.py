"""Tests of the training config's data keys (issue 17): folders/globs, manifests, regions,
correspondence and automatic anchors, and ``base:`` inheritance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bodyscore.errors import InputError
from bodyscore.train.config import TrainConfig, load_train_config


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_new_keys_default_to_today_s_behaviour() -> None:
    config = TrainConfig()
    assert config.unlabelled_sources == ()
    assert config.weak_label_files == ()
    assert config.data_manifests == ()
    assert config.structure_files == ()
    assert dict(config.attributions) == {}
    assert dict(config.volume_regions) == {}
    assert dict(config.region_shares) == {}
    assert config.region_balanced is False
    assert config.correspondence_weight == 0.0
    assert config.auto_lung_anchors is False


def test_new_keys_load_and_paths_resolve_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    for name in ("a.nii.gz", "b.nii.gz"):
        touch(root / "data" / "ct" / name)
    for name in ("u2.nii.gz", "u1.nii.gz"):
        touch(root / "data" / "unlabelled" / name)
    touch(root / "data" / "unlabelled" / "kbp" / "pt_1.nii.gz")
    touch(root / "data" / "unlabelled" / "kbp" / "deeper" / "pt_2.nii.gz")
    config_path = write(root / "configs" / "real.yaml", """
sources: ["../data/ct/"]
unlabelled_sources: ["../data/unlabelled/*.nii.gz", "../data/unlabelled/kbp/**/*.nii.gz"]
landmark_files: [../data/ct/landmarks.json]
weak_label_files: [../data/unlabelled/regions.json]
data_manifests: [../data/unlabelled/manifest.tsv]
structure_files: [../data/unlabelled/kbp/structures.json]
licences: {"pt_*": "CC BY"}
attributions: {"pt_*": "OpenKBP", "u1": "Someone"}
volume_regions: {"pt_*": head-neck, u2: legs}
region_balanced: true
region_shares: {head-neck: 1, legs: 2.5, pelvis: 0}
region_weights: {legs: 4}
correspondence_weight: 0.3
correspondence_boundaries: 3
correspondence_patients: 4
auto_lung_anchors: true
""")
    monkeypatch.chdir(tmp_path)  # relative paths do not depend on the working folder
    config = load_train_config(Path("project/configs/real.yaml"))
    data = (config_path.parent / ".." / "data").resolve()

    def rel(paths: tuple[str, ...]) -> list[str]:
        return [Path(p).resolve().relative_to(data).as_posix() for p in paths]

    assert rel(config.sources) == ["ct/a.nii.gz", "ct/b.nii.gz"]
    assert rel(config.unlabelled_sources) == [
        "unlabelled/u1.nii.gz", "unlabelled/u2.nii.gz",
        "unlabelled/kbp/deeper/pt_2.nii.gz", "unlabelled/kbp/pt_1.nii.gz"]
    assert rel(config.landmark_files) == ["ct/landmarks.json"]
    assert rel(config.weak_label_files) == ["unlabelled/regions.json"]
    assert rel(config.data_manifests) == ["unlabelled/manifest.tsv"]
    assert rel(config.structure_files) == ["unlabelled/kbp/structures.json"]
    assert dict(config.attributions) == {"pt_*": "OpenKBP", "u1": "Someone"}
    assert dict(config.volume_regions) == {"pt_*": "head-neck", "u2": "legs"}
    assert dict(config.region_shares) == {"head-neck": 1.0, "legs": 2.5, "pelvis": 0.0}
    assert all(isinstance(v, float) for v in config.region_shares.values())
    assert dict(config.region_weights) == {"legs": 4.0}
    assert isinstance(config.region_weights["legs"], float)
    assert config.region_balanced is True
    assert config.correspondence_weight == 0.3
    assert (config.correspondence_boundaries, config.correspondence_patients) == (3, 4)
    assert config.auto_lung_anchors is True
    # the config survives to_dict / from_dict (what the package's config.json stores)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("key", ["sources", "unlabelled_sources"])
def test_pattern_without_match_in_a_config_names_the_key(tmp_path: Path, key: str) -> None:
    path = write(tmp_path / "c.yaml", f"{key}: [data/*.nii.gz]\n")
    with pytest.raises(InputError, match=rf"{key}: pattern .*data/\*\.nii\.gz.* matches no file"):
        load_train_config(path)
    (tmp_path / "data").mkdir()
    path.write_text(f"{key}: [data/]\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{key}: folder .*data.* holds no volume"):
        load_train_config(path)


def test_glob_is_relative_to_the_config_not_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "cfg" / "vols" / "near.nii.gz")
    touch(tmp_path / "vols" / "far.nii.gz")  # what cwd-relative expansion would find
    write(tmp_path / "cfg" / "c.yaml", "unlabelled_sources: [vols/*.nii.gz]\n")
    monkeypatch.chdir(tmp_path)
    config = load_train_config(tmp_path / "cfg" / "c.yaml")
    assert [Path(p).name for p in config.unlabelled_sources] == ["near.nii.gz"]


@pytest.mark.parametrize("text", ["region_shares: {legs: -1}\n",
                                  "region_shares: {legs: 1, head: -0.01}\n",
                                  "region_shares: {legs: .nan}\n",
                                  "region_weights: {legs: -2}\n"])
def test_negative_region_share_is_rejected(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(InputError, match=r"region_(shares|weights)\["):
        load_train_config(path)


def test_negative_region_share_rejected_when_built_directly() -> None:
    with pytest.raises(InputError, match=r"region_shares\['legs'\] must be >= 0"):
        TrainConfig(region_shares={"legs": -2.0})
    assert dict(TrainConfig(region_shares={"legs": 0.0}).region_shares) == {"legs": 0.0}


def test_non_numeric_region_share_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "region_shares: {legs: lots}\n")
    with pytest.raises(InputError, match="region_shares"):
        load_train_config(path)


# -- base: ---------------------------------------------------------------------------------------
def test_base_child_overrides_keys_and_paths_resolve_per_file(tmp_path: Path) -> None:
    touch(tmp_path / "recipes" / "ct" / "a.nii.gz")
    touch(tmp_path / "recipes" / "ct" / "b.nii.gz")
    touch(tmp_path / "runs" / "ct" / "own.nii.gz")
    touch(tmp_path / "runs" / "more" / "u.nii.gz")
    write(tmp_path / "recipes" / "base.yaml", """
seed: 3
batch_size: 4
sources: [ct/]
landmark_files: [ct/landmarks.json]
cache_dir: cache
groups: {a: body1, b: body1}
region_shares: {legs: 2}
""")
    child = write(tmp_path / "runs" / "child.yaml", """
base: ../recipes/base.yaml
batch_size: 2
unlabelled_sources: [more/*.nii.gz]
""")
    config = load_train_config(child)
    assert config.seed == 3  # from the base
    assert config.batch_size == 2  # the child's
    assert dict(config.groups) == {"a": "body1", "b": "body1"}
    assert dict(config.region_shares) == {"legs": 2.0}
    recipes, runs = (tmp_path / "recipes").resolve(), (tmp_path / "runs").resolve()
    assert [Path(p).resolve() for p in config.sources] == [recipes / "ct" / "a.nii.gz",
                                                          recipes / "ct" / "b.nii.gz"]
    assert [Path(p).resolve() for p in config.landmark_files] == [recipes / "ct" /
                                                                  "landmarks.json"]
    assert Path(str(config.cache_dir)).resolve() == recipes / "cache"
    assert [Path(p).resolve() for p in config.unlabelled_sources] == [runs / "more" / "u.nii.gz"]
    # overriding a path key resolves it against the child's folder
    child.write_text("base: ../recipes/base.yaml\nsources: [ct/*.nii.gz]\ncache_dir: c2\n",
                     encoding="utf-8")
    again = load_train_config(child)
    assert [Path(p).resolve() for p in again.sources] == [runs / "ct" / "own.nii.gz"]
    assert Path(str(again.cache_dir)).resolve() == runs / "c2"
    assert again.seed == 3


def test_a_child_with_only_base_equals_the_base(tmp_path: Path) -> None:
    touch(tmp_path / "base" / "v" / "x.nii.gz")
    base = write(tmp_path / "base" / "b.yaml", "sources: [v/]\nlr_milestones: [[5, 0.001]]\n"
                 "region_bounds: {legs: [null, 0.5]}\nslope_band_per_mm: [0.01, 0.02]\n"
                 "holdout: [x]\nmodel: {base_model: light}\n")
    child = write(tmp_path / "child" / "c.json", json.dumps({"base": "../base/b.yaml"}))
    assert load_train_config(child) == load_train_config(base)


def test_base_chains_over_three_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "seed: 1\nbatch_size: 5\nlr: 0.5\n")
    write(tmp_path / "sub" / "b.yaml", "base: ../a.yaml\nbatch_size: 6\n")
    c = write(tmp_path / "c.yaml", "base: sub/b.yaml\nlr: 0.25\n")
    config = load_train_config(c)
    assert (config.seed, config.batch_size, config.lr) == (1, 6, 0.25)


@pytest.mark.parametrize("layout", ["self", "pair", "triangle"])
def test_base_loop_is_an_input_error(tmp_path: Path, layout: str) -> None:
    if layout == "self":
        write(tmp_path / "a.yaml", "base: a.yaml\nseed: 1\n")
    elif layout == "pair":
        write(tmp_path / "a.yaml", "base: b.yaml\n")
        write(tmp_path / "b.yaml", "base: ./a.yaml\n")
    else:
        write(tmp_path / "a.yaml", "base: b.yaml\n")
        write(tmp_path / "b.yaml", "base: c.yaml\n")
        write(tmp_path / "c.yaml", "base: a.yaml\n")
    with pytest.raises(InputError, match="'base' chain loops back"):
        load_train_config(tmp_path / "a.yaml")


def test_missing_or_bad_base_is_an_input_error(tmp_path: Path) -> None:
    child = write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(InputError, match=r"nowhere\.yaml: cannot read the training config"):
        load_train_config(child)
    write(tmp_path / "bad.yaml", "learning_rate: 1\n")
    child.write_text("base: bad.yaml\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown keys"):
        load_train_config(child)
    child.write_text("base: ok.yaml\nnot_a_key: 1\n", encoding="utf-8")
    write(tmp_path / "ok.yaml", "seed: 2\n")
    with pytest.raises(InputError, match=r"c\.yaml: unknown keys \['not_a_key'\]"):
        load_train_config(child)
