"""Region-balanced training (issue 17): the sampling region of a volume and a tiny run."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bodyscore.synth.generate import SYNTHETIC_PREFIX
from bodyscore.train import trainer
from bodyscore.train.config import TrainConfig
from bodyscore.train.data import (
    Manifest,
    VolumeEntry,
    VolumeSampleDataset,
    cache_volume,
    write_manifest,
)
from bodyscore.train.signals import sampling_region
from bodyscore.train.trainer import train

TINY_MODEL = {"base_model": "light", "backbone": {"widths": [4, 8, 8, 8, 8],
                                                  "convs_per_stage": 1}}


def entry(volume_id: str, regions: tuple[tuple[int, int, str], ...] = ()) -> VolumeEntry:
    return VolumeEntry(volume_id=volume_id, file=f"{volume_id}.npy", source="<array>",
                       shape=(10, 8, 8), spacing_mm=(2.0, 1.0, 1.0),
                       z_positions_mm=tuple(2.0 * np.arange(10)), regions=regions)


# -- sampling_region -----------------------------------------------------------------------------
def test_sampling_region_rule_then_dominant_region_then_unlabelled() -> None:
    rules = {"kbp_*": "head-neck", "pelvis_07": "legs"}
    labelled = ((0, 2, "pelvis"), (3, 9, "legs"))
    assert sampling_region(entry("kbp_001"), rules) == "head-neck"
    assert sampling_region(entry("kbp_002", labelled), rules) == "head-neck"  # rule first
    assert sampling_region(entry("pelvis_07", ((0, 9, "pelvis"),)), rules) == "legs"
    assert sampling_region(entry("other", labelled), rules) == "legs"  # 7 legs > 3 pelvis
    assert sampling_region(entry("other", ((0, 5, "chest"), (6, 9, "abdomen"))), {}) == "chest"
    assert sampling_region(entry("bare"), rules) == "unlabelled"
    assert sampling_region(entry("bare"), {}) == "unlabelled"


def test_sampling_region_of_synthetic_volumes() -> None:
    synthetic = entry(f"{SYNTHETIC_PREFIX}00003", ((0, 9, "pelvis"),))
    assert sampling_region(synthetic, {}) == "synthetic"
    assert sampling_region(synthetic, {"*": "head-neck"}) == "synthetic"
    assert sampling_region(entry("real_0", ((0, 9, "pelvis"),)), {"*": "chest"}) == "chest"


# -- a tiny region-balanced run ------------------------------------------------------------------
def disc_volume(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2)[None]
    radius = np.linspace(0.08, 0.45, n)[:, None, None] * size
    noise = 0.05 * rng.standard_normal((n, size, size))
    return np.where(r2 < radius**2, 0.3 + noise, -1.0).astype(np.float32)


@pytest.fixture(scope="module")
def region_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 legs, 1 pelvis, 5 unlabelled head-neck, 1 volume without regions; 1 val volume."""
    folder = tmp_path_factory.mktemp("region_cache")
    rng = np.random.default_rng(0)
    entries = []

    def add(volume_id: str, n: int, *, regions=(), annotated=True, split="train",
            landmarks=None) -> None:
        made = cache_volume(folder, volume_id, disc_volume(n, 32, rng),
                            spacing_mm=(3.0, 1.0, 1.0), landmarks=landmarks)
        entries.append(replace(made, regions=tuple(regions), annotated=annotated, split=split))

    marks = {"pelvis_start": 2.0, "eyes_end": 20.0}
    add("legs_a", 24, regions=[(0, 23, "legs")], landmarks=marks)
    add("legs_b", 20, regions=[(0, 15, "legs"), (16, 19, "pelvis")], landmarks=marks)
    add("pelvis_a", 22, regions=[(0, 21, "pelvis")], landmarks=marks)
    for i in range(5):
        add(f"kbp_{i}", 18 + i, annotated=False)
    add("bare", 20, annotated=False)
    add("val_chest", 24, regions=[(0, 23, "chest")], split="val", landmarks=marks)
    write_manifest(Manifest(tuple(entries)), folder)
    return folder


def tiny_config(cache: Path, **changes) -> TrainConfig:
    base = TrainConfig(cache_dir=str(cache), model=TINY_MODEL, batch_size=3, max_steps=6,
                       checkpoint_every=3, log_every=3, lr=3e-3, num_threads=1,
                       calibrate=False, export_onnx=False, val_max_slices=8,
                       transform_params={}, region_balanced=True,
                       volume_regions={"kbp_*": "head-neck"})
    return base.replace(**changes)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Record the volumes the training set serves and the region-order calls."""
    record: dict[str, list] = {"volumes": [], "orders": []}
    real_getitem = VolumeSampleDataset.__getitem__
    real_order = trainer.region_epoch_order

    def getitem(self, item):
        record["volumes"].append(self.entries[item[0]].volume_id)
        return real_getitem(self, item)

    def order(regions, **kwargs):
        record["orders"].append((tuple(regions), kwargs))
        return real_order(regions, **kwargs)

    monkeypatch.setattr(VolumeSampleDataset, "__getitem__", getitem)
    monkeypatch.setattr(trainer, "region_epoch_order", order)
    return record


def test_region_balanced_run_samples_by_region(region_cache: Path, tmp_path: Path,
                                               spies: dict[str, list],
                                               caplog: pytest.LogCaptureFixture) -> None:
    config = tiny_config(region_cache, region_shares={"head-neck": 0.0})
    with caplog.at_level(logging.INFO, logger="bodyscore.train.trainer"):
        result = train(config, out_dir=tmp_path)
    assert result.step == 6
    assert np.isfinite(result.last_loss)
    regions, kwargs = spies["orders"][0]
    assert sorted(regions) == sorted(["legs", "legs", "pelvis", *["head-neck"] * 5,
                                      "unlabelled"])
    assert dict(kwargs["shares"]) == {"head-neck": 0.0}
    assert "region-balanced sampling" in caplog.text
    served = spies["volumes"]
    assert len(served) >= 6 * 3
    assert not any(v.startswith("kbp_") for v in served)  # share 0: never drawn
    assert "val_chest" not in served
    assert {"legs_a", "legs_b", "pelvis_a", "bare"} <= set(served)


def test_region_shares_steer_the_draws(region_cache: Path, tmp_path: Path,
                                       spies: dict[str, list]) -> None:
    config = tiny_config(region_cache, max_steps=3,
                         region_shares={"legs": 0, "pelvis": 0, "unlabelled": 0})
    train(config, out_dir=tmp_path)
    served = set(spies["volumes"])
    assert served
    assert all(v.startswith("kbp_") for v in served)


def test_unbalanced_run_does_not_use_the_region_order(region_cache: Path, tmp_path: Path,
                                                      spies: dict[str, list]) -> None:
    config = tiny_config(region_cache, max_steps=3, region_balanced=False,
                         region_shares={"head-neck": 0.0})
    train(config, out_dir=tmp_path)
    assert spies["orders"] == []
    # every training volume once per epoch: 9 volumes, 3 steps of 3
    assert sorted(spies["volumes"]) == sorted(
        ["legs_a", "legs_b", "pelvis_a", "bare", *[f"kbp_{i}" for i in range(5)]])
