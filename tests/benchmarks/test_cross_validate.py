"""Tests of benchmarks/accuracy/cross_validate.py: folds, variant configs, aggregation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.evaluate.landmarks import RegionLabel, VolumeAnnotation, read_landmarks
from bodyscore.train.config import TrainConfig, load_train_config
from helpers.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
cv = load_script("benchmarks/accuracy/cross_validate.py", module_name="cross_validate_under_test")


@pytest.fixture(scope="module")
def shared() -> Path:
    path = REPO.parent / "shared"  # tests/benchmarks/ → repo root → its sibling shared/
    if not (path / "data" / "ct" / "landmarks.json").is_file():
        pytest.skip("../shared/data/ct is not available")
    return path


@pytest.fixture(scope="module")
def default_config(shared: Path) -> TrainConfig:
    """The annotated recipe's sources and groups (``real-only.yaml``, the base of the default
    recipe), with synthetic volumes and a step schedule pinned so that the tests do not follow
    changes of the recipe itself."""
    return load_train_config(REPO / "configs" / "real-only.yaml").replace(
        synthetic_volumes=40, max_steps=3500, lr_milestones=((2000, 3e-4), (3000, 1e-4)))


# -- folds ---------------------------------------------------------------------------------------
def test_volume_region_is_the_region_with_most_slices_ties_caudal() -> None:
    ann = VolumeAnnotation("v", None, {}, (RegionLabel(0, 9, "head"), RegionLabel(10, 19, "chest"),
                                         RegionLabel(20, 22, "shoulder-neck")))
    assert cv.volume_region(ann) == "chest"  # 10 chest = 10 head: the caudal one wins
    assert cv.volume_region(None) == "unknown"


def test_assign_folds_hand_case_spreads_regions() -> None:
    names = ["p1", "p2", "c1", "c2", "h1", "h2"]
    groups = {n: [n] for n in names}
    regions = {n: {"p": "pelvis", "c": "chest", "h": "head"}[n[0]] for n in names}
    folds = cv.assign_folds(groups, regions, n_folds=2, seed=0)
    # regions dealt in anatomical order, each group to the emptiest fold: one of each per fold
    for prefix in "pch":
        assert {folds[f"{prefix}1"], folds[f"{prefix}2"]} == {0, 1}


def test_assign_folds_balances_volumes_before_regions() -> None:
    groups = {"body": ["b1", "b2"], "c1": ["c1"], "c2": ["c2"]}
    regions = {"body": "legs", "c1": "chest", "c2": "chest"}
    folds = cv.assign_folds(groups, regions, n_folds=2, seed=0)
    assert folds == {"body": 0, "c1": 1, "c2": 1}  # 2 + 2 volumes beats spreading the chests


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 3), min_size=2, max_size=15),
       region_ids=st.lists(st.integers(0, 6), min_size=15, max_size=15),
       k=st.integers(2, 6), seed=st.integers(0, 1000))
def test_assign_folds_properties(sizes: list[int], region_ids: list[int], k: int,
                                 seed: int) -> None:
    k = min(k, len(sizes))
    groups = {f"g{i}": [f"g{i}_v{j}" for j in range(n)] for i, n in enumerate(sizes)}
    names = [*cv.REGION_ORDER, "unknown"]
    regions = {f"g{i}": names[region_ids[i]] for i in range(len(sizes))}
    folds = cv.assign_folds(groups, regions, n_folds=k, seed=seed)
    assert set(folds) == set(groups)  # every group (hence every volume) exactly once
    assert set(folds.values()) == set(range(k))  # no empty fold
    load = [sum(len(groups[g]) for g, f in folds.items() if f == i) for i in range(k)]
    assert max(load) - min(load) <= max(sizes)  # balanced up to one group
    assert folds == cv.assign_folds(groups, regions, n_folds=k, seed=seed)  # deterministic


def test_assign_folds_rejects_more_folds_than_groups() -> None:
    with pytest.raises(InputError, match="folds"):
        cv.assign_folds({"a": ["a"], "b": ["b"]}, {}, n_folds=3, seed=0)


def test_fold_table_of_the_default_recipe(default_config: TrainConfig, shared: Path) -> None:
    annotations = read_landmarks(shared / "data" / "ct" / "landmarks.json")
    folds = cv.fold_table(default_config, annotations, n_folds=5)
    volumes = [v for f in folds for v in f["volumes"]]
    assert sorted(volumes) == sorted(Path(s).name.removesuffix(".nii.gz")
                                     for s in default_config.sources)
    assert len(volumes) == len(set(volumes)) == 20
    assert [len(f["volumes"]) for f in folds] == [4, 4, 4, 4, 4]
    (vhf,) = [f for f in folds if "vhf_head" in f["volumes"]]
    assert "vhf_knee_leg" in vhf["volumes"]  # one body, one fold
    crops = {f["fold"] for f in folds for v in f["volumes"] if v.startswith("sts")}
    assert len(crops) == 3  # the three pelvis/thigh crops in three different folds
    assert folds == cv.fold_table(default_config, annotations, n_folds=5)


# -- configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "field", "expected"), [
    ("baseline", "synthetic_volumes", 40),
    ("no-synthetic", "synthetic_volumes", 0),
    ("with-synthetic", "synthetic_volumes", 40),
    ("no-anchors", "anchor_weight", 0.0),
    ("no-regions", "region_weight", 0.0),
    ("no-augment", "transform_params", {}),
    ("vgg", "model", {"base_model": "vgg"}),
    ("res64", "preprocessing", {"size": 64, "target_spacing_mm": 7.0}),
])
def test_variant_presets(default_config: TrainConfig, variant: str, field: str,
                         expected: Any) -> None:
    config = cv.variant_config(default_config, variant)
    assert getattr(config, field) == expected
    if variant == "no-anchors":
        assert config.region_weight == 0.0
    if variant == "no-regions":
        assert config.anchor_weight == 1.0
    assert config.sources == default_config.sources


def test_no_augment_builds_no_augmentation(default_config: TrainConfig) -> None:
    config = cv.variant_config(default_config, "no-augment")
    assert dict(config.transform_params) == {}  # not replaced by bpreg's defaults
    assert not config.transform_params  # the trainer then passes augment=None


def test_set_overrides_after_the_preset(default_config: TrainConfig) -> None:
    overrides = cv.parse_overrides(["synthetic_volumes=2", "lr_milestones=[[10, 0.1]]"])
    config = cv.variant_config(default_config, "no-synthetic", overrides)
    assert config.synthetic_volumes == 2
    assert config.lr_milestones == ((10, 0.1),)


@pytest.mark.parametrize("item", ["lr", "=3", "device=cpu"])
def test_bad_set_overrides(item: str) -> None:
    with pytest.raises(InputError, match="--set"):
        cv.parse_overrides([item])


def test_unknown_override_key_and_variant(default_config: TrainConfig) -> None:
    with pytest.raises(InputError, match="unknown keys"):
        cv.variant_config(default_config, "baseline", {"learning_rate": 1})
    with pytest.raises(InputError, match="unknown"):
        cv.variant_config(default_config, "bigger")


def test_scale_milestones_hand_case() -> None:
    # 2000 * 1500 / 3500 = 857.14 → 857; 3000 * 1500 / 3500 = 1285.7 → 1286
    assert cv.scale_milestones(((2000, 3e-4), (3000, 1e-4)), steps=1500, base_steps=3500) == (
        (857, 3e-4), (1286, 1e-4))
    assert cv.scale_milestones((), steps=10, base_steps=100) == ()


def test_fold_config(default_config: TrainConfig, tmp_path: Path) -> None:
    fold = {"fold": 1, "volumes": ["vhf_head", "vhf_knee_leg"], "groups": ["x"]}
    config = cv.fold_config(default_config, fold, steps=700, out=tmp_path / "cv" / "base",
                            variant="base", threads=1)
    assert config.holdout == ("vhf_head", "vhf_knee_leg")
    assert len(config.train_only) == 18
    assert "vhf_head" not in config.train_only
    assert config.max_steps == 700
    assert config.lr_milestones == ((400, 3e-4), (600, 1e-4))
    assert config.validate_every is not None
    assert config.validate_every > 700
    assert config.num_threads == 1
    assert config.cache_dir == str(tmp_path / "cv" / f"cache-{cv.cache_key(default_config)}")
    assert config.name.endswith("-cv-base-fold1")


def test_cache_key_shared_only_for_same_volumes_preprocessing_and_synthetic(
        default_config: TrainConfig) -> None:
    key = cv.cache_key(default_config)
    assert cv.cache_key(cv.variant_config(default_config, "no-regions")) == key
    assert cv.cache_key(cv.variant_config(default_config, "vgg")) == key
    assert cv.cache_key(cv.variant_config(default_config, "res64")) != key
    assert cv.cache_key(cv.variant_config(default_config, "no-synthetic")) != key
    assert cv.cache_key(default_config.replace(sources=default_config.sources[1:])) != key
    assert cv.cache_key(default_config.replace(unlabelled_sources=("more.nii.gz",))) != key


def test_leaked_holdout_is_detected(tmp_path: Path) -> None:
    (tmp_path / "model-card.md").write_text(
        "| volume | split | group |\n|---|---|---|\n| a | test | a |\n| b | train | b |\n")
    cv._check_no_leak(tmp_path, ["a"])
    with pytest.raises(InputError, match="leaked"):
        cv._check_no_leak(tmp_path, ["a", "b"])


# -- aggregation ---------------------------------------------------------------------------------
def _volume_checks(**extra: Any) -> dict[str, Any]:
    return {"tag": "CHEST", "tag_ok": True, "increasing": True, "z_extent_mm": 200.0,
            "reversed_copy_flagged": True, "consistent_flip_flagged": False,
            "consistent_flip_same_scores": True, **extra}


def _fold(index: int, volumes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A hand-made result.json: volumes = {vid: {"errors", "low", "lmse", "acc", ...}}."""
    def per_volume(key: str) -> dict[str, Any]:
        return {v: {"mae": (sum(map(abs, d[key].values())) / len(d[key])) if d[key] else None,
                    "n_landmarks": len(d[key]), "errors": d[key], "accuracy": d["acc"],
                    "region_accuracy": d["region"], "lmse": None}
                for v, d in volumes.items()}
    own = {v: {"lmse": d["lmse"]} for v, d in volumes.items()}
    return {
        "fold": index, "train": {"seconds": 100.0 + index},
        "evaluation": {
            "volumes": {v: _volume_checks(**d.get("checks", {})) for v, d in volumes.items()},
            "landmarks": {
                "medium_high": {"vs_published": {"per_volume": per_volume("errors")},
                                "vs_own_table": {"per_volume": own}},
                "low": {"vs_published": {"per_volume": per_volume("low")}},
            },
        },
    }


HEADER = {"date": "2026-01-01", "git_commit": "abc", "command": "cv.py", "variant": "baseline",
          "folds": 3, "steps": 10,
          "data_version": {"landmarks_sha256": "0" * 64, "sources_sha256": "1" * 64}}


def test_aggregate_hand_worked(shared: Path) -> None:
    published = cv.em.published_table()
    folds = {
        0: _fold(0, {"a": {"errors": {"pelvis_start": 1.0, "L5": -3.0}, "low": {"Th5": 4.0},
                           "lmse": 0.1, "acc": 0.5, "region": 1.0}}),
        1: _fold(1, {"b": {"errors": {"C1": 2.0, "eyes_end": -2.0}, "low": {}, "lmse": 0.3,
                           "acc": 1.0, "region": 0.5,
                           "checks": {"z_extent_mm": 50.0, "reversed_copy_flagged": False,
                                      "tag_ok": False}}}),
    }
    out = cv.aggregate(folds, n_folds=3, published=published, header=HEADER)
    # |errors| pooled over landmarks: 1, 3, 2, 2 → mean 2, sd sqrt(2/3), SE sqrt(2/3)/2
    assert out["overall"]["mae"]["mean"] == pytest.approx(2.0)
    assert out["overall"]["mae"]["se"] == pytest.approx(math.sqrt(2 / 3) / 2)
    assert out["overall"]["mae"]["n"] == 4
    assert out["overall"]["mae_low_confidence"] == {"mean": 4.0, "se": None, "n": 1}
    # LMSE over volumes: 0.1, 0.3 → 0.2 ± 0.1; accuracy 0.5, 1.0 → 0.75 ± 0.25
    assert out["overall"]["lmse"]["mean"] == pytest.approx(0.2)
    assert out["overall"]["lmse"]["se"] == pytest.approx(0.1)
    assert out["overall"]["accuracy_5class"]["mean"] == pytest.approx(0.75)
    assert out["overall"]["accuracy_5class"]["se"] == pytest.approx(0.25)
    # pelvis_start, L5 → pelvis (1, 3: 2 ± 1); C1 → neck; eyes_end → head
    assert out["per_region_mae"]["pelvis"] == {"mean": 2.0, "se": pytest.approx(1.0), "n": 2}
    assert out["per_region_mae"]["neck"]["mean"] == 2.0
    assert out["per_region_mae"]["head"]["n"] == 1
    checks = out["overall"]["checks"]
    assert checks["reversed copies flagged (>= 10 cm)"] == "1/1"  # b is 5 cm: not counted
    assert checks["tag matches README"] == "1/2"
    assert checks["increasing"] == "2/2"
    assert out["incomplete"]
    assert out["missing_folds"] == [2]
    assert out["volumes"]["b"]["fold"] == 1
    assert out["volumes"]["a"]["mae"] == 2.0
    assert out["train_seconds"] == {"0": 100.0, "1": 101.0}
    text = cv.render_markdown(out)
    assert "incomplete: folds 2 missing" in text
    assert "2.00 ± 0.41 (n=4)" in text
    json.dumps(out, allow_nan=False)


def test_landmark_regions_by_published_score(shared: Path) -> None:
    published = cv.em.published_table()
    expected = {"pelvis_start": "pelvis", "pelvis_end": "pelvis", "L4": "abdomen",
                "kidneys": "abdomen", "lung_start": "chest", "Th2": "chest",
                "lung_end": "chest", "Th1": "neck", "C1": "neck", "nose": "head",
                "eyes_end": "head"}
    assert {n: cv.landmark_region(n, published) for n in expected} == expected


# -- resume --------------------------------------------------------------------------------------
def test_fold_with_result_is_not_retrained(shared: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ct = shared / "data" / "ct"
    names = ["ts_petct_slab", "crlm1004_abdomen", "ge_tilt_head", "unc_cthead_cadaver_head"]
    config = tmp_path / "cv.json"
    config.write_text(json.dumps({
        "name": "t", "sources": [str(ct / f"{n}.nii.gz") for n in names],
        "landmark_files": [str(ct / "landmarks.json")], "max_steps": 100}))
    out = tmp_path / "cv" / "baseline"
    calls: list[int] = []

    def fake_run_fold(cfg: TrainConfig, fold: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        calls.append(fold["fold"])
        assert set(cfg.holdout) == set(fold["volumes"])
        assert not set(cfg.train_only) & set(fold["volumes"])
        vid = fold["volumes"][0]
        data = _fold(fold["fold"], {vid: {"errors": {"C1": 1.0}, "low": {}, "lmse": 0.1,
                                          "acc": 1.0, "region": 1.0}})
        (kwargs["out"] / f"fold-{fold['fold']}").mkdir(parents=True)
        (kwargs["out"] / f"fold-{fold['fold']}" / "result.json").write_text(json.dumps(data))
        return data

    monkeypatch.setattr(cv, "run_fold", fake_run_fold)
    args = ["--config", str(config), "--folds", "2", "--steps", "3", "-o", str(out)]
    assert cv.main([*args, "--only-folds", "0"]) == 0
    assert calls == [0]
    summary = json.loads((out / "cv.json").read_text())
    assert summary["missing_folds"] == [1]
    assert cv.main(args) == 0  # fold 0 has result.json: only fold 1 runs
    assert calls == [0, 1]
    assert cv.main(args) == 0  # both present: nothing trains
    assert calls == [0, 1]
    summary = json.loads((out / "cv.json").read_text())
    assert not summary["incomplete"]
    assert summary["overall"]["mae"]["n"] == 2
    assert (out / "folds.json").is_file()
    assert "cv.md" in {p.name for p in out.iterdir()}
    assert cv.main([*args[:3], "3", *args[4:]]) == 2  # another fold table: refused, no traceback


def test_cache_preparation_is_locked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bodyscore.train import trainer

    seen: list[Path] = []

    def fake_prepare(config: Any, cache_dir: Path, dist_info: Any) -> str:
        seen.append(cache_dir)
        return "manifest"

    monkeypatch.setattr(trainer, "_prepare", fake_prepare)
    cv._lock_cache_preparation()
    cv._lock_cache_preparation()  # idempotent: no lock inside the lock (would deadlock)
    assert trainer._prepare is not fake_prepare
    assert trainer._prepare(None, tmp_path / "cache-x", None) == "manifest"
    assert seen == [tmp_path / "cache-x"]
    assert (tmp_path / "cache-x.lock").is_file()


def test_fold_without_package_fails_cleanly(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPackage:
        package_dir = None

    monkeypatch.setattr(cv, "run_training", lambda config, out_dir: NoPackage())
    fold = {"fold": 0, "volumes": ["a"], "groups": ["a"]}
    with pytest.raises(InputError, match="no model package"):
        cv.run_fold(TrainConfig(), fold, annotations={}, files={}, out=tmp_path, steps=1,
                    variant="baseline")
    assert not (tmp_path / "fold-0" / "result.json").exists()


def test_training_seconds_come_from_the_log_and_survive_repackaging(tmp_path: Path) -> None:
    log = tmp_path / "train_log.csv"
    log.write_text("step,loss,seconds\n20,1.0,12.5\n40,0.5,30.25\n")
    assert cv._logged_seconds(log) == 30.25
    assert cv._logged_seconds(tmp_path / "missing.csv") is None
    # a finished fold re-packaged takes seconds; its table keeps the logged training time
    assert cv._training_seconds({"seconds": 28.4, "logged_seconds": 373.9}) == 373.9
    assert cv._training_seconds({"seconds": 28.4}) == 28.4
