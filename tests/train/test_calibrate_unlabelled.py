"""calibrate_model leaves unlabelled volumes out (issue 17: weak labels do not calibrate)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bodyscore.train import calibrate
from bodyscore.train.data import Manifest, cache_volume


class MeanNet(torch.nn.Module):
    """Raw score = 10 × mean intensity of the slice: a ramp volume scores increasing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).reshape(-1, 1) * 10.0


def ramp(n: int) -> np.ndarray:
    return (np.linspace(-0.9, 0.9, n, dtype=np.float32)[:, None, None]
            * np.ones((1, 8, 8), np.float32))


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    # distinct slice counts tell which volumes were scored
    annotated = cache_volume(tmp_path, "annotated", ramp(40), spacing_mm=(5.0, 1.0, 1.0),
                             landmarks={"pelvis_start": 5.0, "eyes_end": 35.0})
    val = replace(cache_volume(tmp_path, "val_vol", ramp(30), spacing_mm=(5.0, 1.0, 1.0),
                               landmarks={"pelvis_start": 4.0, "eyes_end": 26.0}), split="val")
    # absurd landmarks: were the unlabelled volumes used, pelvis_start's mean would move
    unlabelled = replace(cache_volume(tmp_path, "unlabelled", ramp(33),
                                      spacing_mm=(5.0, 1.0, 1.0),
                                      landmarks={"pelvis_start": 30.0, "eyes_end": 31.0}),
                         annotated=False)
    unlabelled_val = replace(cache_volume(tmp_path, "unlabelled_val", ramp(21),
                                          spacing_mm=(5.0, 1.0, 1.0),
                                          landmarks={"pelvis_start": 19.0}),
                             annotated=False, split="val")
    held = replace(cache_volume(tmp_path, "held", ramp(25), spacing_mm=(5.0, 1.0, 1.0)),
                   split="test")
    return Manifest(volumes=(annotated, unlabelled, val, unlabelled_val, held))


def test_unlabelled_volumes_are_not_scored(manifest: Manifest, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    scored: list[int] = []
    real_score = calibrate.score_slices

    def recording(model, array, **kwargs):
        scored.append(len(array))
        return real_score(model, array, **kwargs)

    monkeypatch.setattr(calibrate, "score_slices", recording)
    calibrate.calibrate_model(MeanNet(), manifest, tmp_path)
    volumes = sorted(n for n in scored if n > 1)  # 1 slice: the empty-slice score s0
    assert volumes == [30, 40]  # the annotated train and val volumes only


def test_unlabelled_volumes_do_not_move_the_calibration(manifest: Manifest,
                                                        tmp_path: Path) -> None:
    got = calibrate.calibrate_model(MeanNet(), manifest, tmp_path)
    annotated_only = Manifest(volumes=tuple(v for v in manifest.volumes if v.annotated))
    expected = calibrate.calibrate_model(MeanNet(), annotated_only, tmp_path)
    assert got.lookup_table_original == expected.lookup_table_original
    # the same entries counted as annotated do move it (so the test above can fail)
    relabelled = Manifest(volumes=tuple(replace(v, annotated=True) for v in manifest.volumes))
    moved = calibrate.calibrate_model(MeanNet(), relabelled, tmp_path)
    assert (moved.lookup_table_original["pelvis_start"].mean
            != pytest.approx(got.lookup_table_original["pelvis_start"].mean, abs=1e-3))
