"""Tests of the training loop: loss falls, checkpoint/resume is exact, torchrun DDP, config."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bodyscore.errors import InputError
from bodyscore.train.config import TrainConfig, load_train_config
from bodyscore.train.data import Manifest, assign_splits, cache_volume, write_manifest
from bodyscore.train.trainer import train, validation_metrics

SRC = Path(__file__).resolve().parents[2] / "src"
TINY_MODEL = {"base_model": "light", "backbone": {"widths": [4, 8, 8, 8, 8],
                                                  "convs_per_stage": 1}}


def make_cache(folder: Path, *, n_volumes: int = 8, size: int = 32, seed: int = 0) -> Path:
    """Random volumes: a disc whose radius grows with z (learnable), with landmarks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2)[None]
    entries = []
    for i in range(n_volumes):
        n = int(rng.integers(30, 60))
        dz = float(rng.choice([2.0, 3.0, 5.0]))
        radius = np.linspace(0.08, 0.45, n)[:, None, None] * size
        noise = 0.05 * rng.standard_normal((n, size, size))
        slices = np.where(r2 < radius**2, 0.3 + noise, -1.0).astype(np.float32)
        landmarks = {"pelvis_start": 2.0, "eyes_end": n - 3.0, "L1": n / 2 + rng.normal()}
        entries.append(cache_volume(folder, f"vol{i}", slices, spacing_mm=(dz, 1.0, 1.0),
                                    landmarks=landmarks))
    splits = assign_splits([e.group for e in entries], seed=0, val_fraction=0.25)
    write_manifest(Manifest(tuple(replace(e, split=splits[e.group]) for e in entries)), folder)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"))


def tiny_config(cache: Path, **changes) -> TrainConfig:
    base = TrainConfig(cache_dir=str(cache), model=TINY_MODEL, batch_size=3, max_steps=12,
                       checkpoint_every=3, log_every=2, lr=3e-3, num_threads=1,
                       calibrate=False, export_onnx=False, val_max_slices=16)
    return base.replace(**changes)


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_loss_falls_and_package_written(cache: Path, tmp_path: Path):
    # β = 0.1/mm makes the targets σ(βΔh) far from 0.5, so the loss starts high; no
    # augmentation keeps the 30-step curve smooth enough to compare its ends
    config = tiny_config(cache, max_steps=30, log_every=5, calibrate=True, beta_h=0.1,
                         transform_params={}, version="2099.1.1")
    result = train(config, out_dir=tmp_path)
    rows = read_log(result.log_path)
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-2:]) < 0.3 * np.mean(losses[:2])
    assert result.step == 30
    assert result.resumed_from == 0
    assert result.val_metrics["val_order_accuracy"] > 0.9
    assert 0 < result.val_metrics["val_landmark_spread"] < 0.2
    assert (tmp_path / "checkpoint.pt").is_file()
    assert result.package_dir is not None
    assert (result.package_dir / "model.pt").is_file()
    assert result.settings is not None
    assert result.settings.slope_mean > 0
    saved = json.loads((result.package_dir / "config.json").read_text())
    assert saved["base_model"] == "light"
    assert saved["loss_order"] == "h"
    assert saved["model_version"] == "2099.1.1"


def test_resume_is_identical_to_uninterrupted(cache: Path, tmp_path: Path):
    config = tiny_config(cache)
    full = train(config, out_dir=tmp_path / "full")
    first = train(config.replace(max_steps=6), out_dir=tmp_path / "split")
    assert first.step == 6
    resumed = train(config, out_dir=tmp_path / "split")
    assert resumed.resumed_from == 6
    assert resumed.step == 12
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    log_a, log_b = read_log(full.log_path), read_log(resumed.log_path)
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    # resume=False starts over
    again = train(config.replace(max_steps=2), out_dir=tmp_path / "split", resume=False)
    assert again.resumed_from == 0
    assert again.step == 2


def test_validation_metrics_hand_worked():
    idx = np.arange(4.0)
    curves = [(idx, np.array([0.0, 1.0, 2.0, 1.5]), {"pelvis_start": 0.0, "eyes_end": 3.0,
                                                      "L1": 1.5}),
              (idx, np.array([0.0, 1.0, 2.0, 3.0]), {"pelvis_start": 0.0, "eyes_end": 3.0,
                                                      "L1": 1.0})]
    metrics = validation_metrics(curves)
    assert metrics["val_order_accuracy"] == pytest.approx(5 / 6)
    # std per landmark: pelvis 0, eyes std(1.5, 3) = 0.75, L1 std(1.5, 1.0) = 0.25
    # range = mean eyes - mean pelvis = 2.25
    assert metrics["val_landmark_spread"] == pytest.approx(np.mean([0, 0.75, 0.25]) / 2.25)


def test_config_files_load_and_validate(tmp_path: Path):
    configs = Path(__file__).resolve().parents[2] / "configs"
    tiny = load_train_config(configs / "tiny.yaml")
    default = load_train_config(configs / "default.yaml")
    assert tiny.model["base_model"] == "light"
    assert default.loss_order == "h"
    assert default.beta_h == 0.01
    assert default.alpha == 0
    assert default.groups.get("vhf_knee_leg") == default.groups.get("vhf_head")
    assert all(Path(p).is_absolute() for p in default.sources)
    good = tmp_path / "good.yaml"
    good.write_text("slope_weight: 0.5\nslope_band_per_mm: [0.005, 0.02]\n"
                    "tag_min_present_landmarks: {ABDOMEN: 5}\nsynthetic_share: 0.15\n")
    loaded = load_train_config(good)
    assert loaded.slope_band_per_mm == (0.005, 0.02)
    assert dict(loaded.tag_min_present_landmarks) == {"ABDOMEN": 5}
    assert loaded.synthetic_share == 0.15


@pytest.mark.parametrize(("text", "match"), [
    ("num_slices: 1\n", "num_slices"),
    ("learning_rate: 1\n", "unknown keys"),
    ("slope_band_per_mm: [0.02, 0.01]\n", "slope_band_per_mm"),
    ("synthetic_share: 1.0\n", "synthetic_share"),
    ("tag_min_present_landmarks: {ABDOMEN: 12}\n", "tag_min_present_landmarks"),
    ("tag_min_present_landmarks: {ABDOMEN: many}\n", "tag_min_present_landmarks"),
])
def test_bad_config_files_are_rejected(tmp_path: Path, text: str, match: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(InputError, match=match):
        load_train_config(bad)


def test_slope_band_term_is_logged(cache: Path, tmp_path: Path):
    # a band of 1-2 raw score per mm is far above what a barely trained network gives, so the
    # slope term is positive in every logged window, in its own column
    config = tiny_config(cache, max_steps=4, log_every=2, slope_weight=1.0,
                         slope_band_per_mm=(1.0, 2.0), transform_params={})
    rows = read_log(train(config, out_dir=tmp_path).log_path)
    assert [float(r["loss_slope"]) > 0 for r in rows] == [True, True]
    plain = read_log(train(tiny_config(cache, max_steps=2, log_every=2), out_dir=tmp_path / "p")
                     .log_path)
    assert float(plain[0]["loss_slope"]) == 0.0


@pytest.mark.slow
def test_torchrun_two_process_gloo(cache: Path, tmp_path: Path):
    config = tiny_config(cache, max_steps=4, log_every=2, checkpoint_every=2)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        import torch.distributed as dist
        from bodyscore.train.trainer import run_training_from_file
        result = run_training_from_file({str(tmp_path / 'config.json')!r},
                                        out_dir={str(tmp_path / 'out')!r})
        rank = os.environ["RANK"]
        with open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w") as f:
            json.dump({{"step": result.step, "world": os.environ["WORLD_SIZE"]}}, f)
    """))
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script)],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        info = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert info == {"step": 4, "world": "2"}
    assert (tmp_path / "out" / "checkpoint.pt").is_file()
    assert [r["step"] for r in read_log(tmp_path / "out" / "train_log.csv")][-1] == "4"


@pytest.mark.slow
def test_tiny_config_trains_and_loss_falls(tmp_path: Path):
    from bodyscore.train.trainer import run_training_from_file

    configs = Path(__file__).resolve().parents[2] / "configs"
    result = run_training_from_file(configs / "tiny.yaml", out_dir=tmp_path)
    losses = [float(r["loss"]) for r in read_log(result.log_path)]
    quarter = len(losses) // 4
    assert np.mean(losses[-quarter:]) < 0.85 * np.mean(losses[:quarter])
    assert result.package_dir is not None
    assert (result.package_dir / "inference-settings.json").is_file()


def test_learning_rate_milestones():
    from bodyscore.train.config import TrainConfig
    from bodyscore.train.trainer import learning_rate_at

    config = TrainConfig.from_dict({"lr": 1e-3, "lr_milestones": [[2000, 3e-4], [2500, 1e-4]]})
    assert learning_rate_at(0, config) == 1e-3
    assert learning_rate_at(1999, config) == 1e-3
    assert learning_rate_at(2000, config) == 3e-4
    assert learning_rate_at(2700, config) == 1e-4


def _structures_file(folder: Path, cache: Path) -> Path:
    """A structures.json (OpenKBP layout) giving every cached volume two contour extents."""
    from bodyscore.train.data import load_manifest

    data: dict[str, object] = {"_conventions": "test"}
    for entry in load_manifest(cache).volumes:
        n = entry.n_slices
        data[entry.volume_id] = {"file": f"{entry.volume_id}.nii.gz", "structures": {
            "Brainstem": {"k_min": n // 2, "k_max": n - 2, "voxels": 100},
            "Mandible": {"k_min": n // 3, "k_max": n // 2, "voxels": 100}}}
    path = folder / "structures.json"
    path.write_text(json.dumps(data))
    return path


def test_multi_session_resume_with_regions_and_correspondence(cache: Path, tmp_path: Path):
    """A run stopped twice (three sessions) ends with the weights and log of an uninterrupted
    one, with region-balanced epochs and the correspondence batch drawn per step."""
    structures = _structures_file(tmp_path, cache)
    config = tiny_config(cache, region_balanced=True, volume_regions={"vol[0-3]": "head"},
                         correspondence_weight=1.0, structure_files=(str(structures),),
                         correspondence_patients=3)
    full = train(config, out_dir=tmp_path / "full")
    # sessions end on logged steps: a session's last step is always logged, so a stop between
    # two log rows adds one row (the weights are identical either way)
    for steps in (4, 8):
        train(config.replace(max_steps=steps), out_dir=tmp_path / "split")
    resumed = train(config, out_dir=tmp_path / "split")
    assert resumed.resumed_from == 8
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    rows = read_log(full.log_path)
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_log(resumed.log_path)]
    assert any(float(r["loss_correspondence"]) > 0 for r in rows)


def test_weight_average_is_packaged_and_resumes_exactly(cache: Path, tmp_path: Path):
    """With ``weight_average_decay`` the checkpoint holds the moving average; a resumed run
    ends with the same average as an uninterrupted one, and the package holds the average,
    not the last weights."""
    config = tiny_config(cache, weight_average_decay=0.8)
    full = train(config.replace(calibrate=True), out_dir=tmp_path / "full")
    train(config.replace(max_steps=6), out_dir=tmp_path / "split")
    train(config, out_dir=tmp_path / "split")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert int(a["weight_average"]["n_averaged"]) == 12
    for key, value in a["weight_average"].items():
        assert torch.equal(value, b["weight_average"][key]), key
    assert full.package_dir is not None
    packaged = torch.load(full.package_dir / "model.pt", weights_only=True)  # a state dict
    name = next(k for k, v in a["model"].items() if v.is_floating_point())
    assert torch.equal(packaged[name], a["weight_average"][f"module.{name}"])
    assert not torch.equal(packaged[name], a["model"][name])


def test_weight_average_by_hand():
    """Two updates of decay 0.5 from w0: copy w0, then (w0 + w1) / 2 (buffers included)."""
    from bodyscore.train.trainer import weight_average

    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    assert weight_average(net, None) is None
    average = weight_average(net, 0.5)
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[1].running_mean.fill_(4.0)
    average.update_parameters(net)
    with torch.no_grad():
        net[0].weight.fill_(6.0)
        net[1].running_mean.fill_(0.0)
    average.update_parameters(net)
    assert float(average.module[0].weight.detach()) == pytest.approx(4.0)
    assert float(average.module[1].running_mean) == pytest.approx(2.0)


def test_weight_average_decay_is_checked():
    with pytest.raises(InputError, match="weight_average_decay"):
        TrainConfig(weight_average_decay=1.0)
