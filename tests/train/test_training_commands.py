"""`bodyscore prepare-data` and `bodyscore train` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bodyscore.cli import main


def test_prepare_data_writes_cache_and_manifest(ct_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    sources = [str(ct_dir / "ts_petct_slab.nii.gz"), str(ct_dir / "crlm1004_abdomen.nii.gz")]
    assert main(["-q", "prepare-data", *sources, "-o", str(out), "--val-fraction", "0.5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    ids = sorted(v["volume_id"] for v in manifest["volumes"])
    assert ids == ["crlm1004_abdomen", "ts_petct_slab"]
    assert sorted(v["split"] for v in manifest["volumes"]) == ["train", "val"]
    assert all((out / v["file"]).is_file() for v in manifest["volumes"])


@pytest.mark.slow
def test_train_command_resumes_and_writes_a_package(tmp_path: Path) -> None:
    config = {
        "name": "cli-smoke", "seed": 1, "synthetic_volumes": 3,
        "synthetic_config": {"in_plane_size": 48, "in_plane_spacing_mm": [8.0, 9.0],
                             "slice_spacing_mm": [8.0, 10.0], "max_slices": 60},
        "val_fraction": 0.3, "batch_size": 2, "max_steps": 4, "checkpoint_every": 2,
        "model": {"base_model": "light",
                  "backbone": {"widths": [4, 4, 8, 8, 8], "convs_per_stage": 1}},
        "transform_params": {}, "calibrate": False, "export_onnx": False, "num_threads": 1,
    }
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(config))
    run = tmp_path / "run"
    assert main(["-q", "train", str(path), "-o", str(run)]) == 0
    rows = (run / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,")
    assert (run / "checkpoint.pt").is_file()
    # a second call resumes at the last step and has nothing left to do
    assert main(["-q", "train", str(path), "-o", str(run)]) == 0
    assert (run / "train_log.csv").read_text().splitlines() == rows
