"""`bodyscore calibrate`: re-calibrate a copy of the default model on synthetic volumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import bodyscore
from bodyscore.cli import main
from bodyscore.errors import ModelError
from bodyscore.settings import InferenceSettings
from bodyscore.synth import SynthConfig, generate_dataset


def test_calibrate_rewrites_the_settings_from_annotated_volumes(tmp_path: Path) -> None:
    try:
        source = Path(bodyscore.load_model("default").package.path)
    except ModelError:
        pytest.skip("the default model package is not installed")
    model = tmp_path / "model"
    shutil.copytree(source, model)
    data = tmp_path / "synth"
    generate_dataset(data, 3, seed=4242, config=SynthConfig(
        in_plane_size=96, in_plane_spacing_mm=(3.0, 4.0), slice_spacing_mm=(4.0, 5.0),
        partial_probability=0.0, max_slices=300))
    # a package-specific tag rule survives re-calibration
    settings_file = model / "inference-settings.json"
    stored = json.loads(settings_file.read_text())
    stored.setdefault("bodyscore", {})["tag_min_present_landmarks"] = {"ABDOMEN": 4}
    settings_file.write_text(json.dumps(stored))
    before = (model / "inference-settings.json").read_text()
    assert main(["-q", "calibrate", str(model), "--landmarks", str(data / "landmarks.json")]) == 0
    after = InferenceSettings.from_file(model / "inference-settings.json")
    assert (model / "inference-settings.json").read_text() != before
    # linear transform (no --published): the start and end landmarks map to 0 and 100
    assert after.lookup_table["pelvis_start"].mean == pytest.approx(0.0, abs=1e-6)
    assert after.lookup_table["eyes_end"].mean == pytest.approx(100.0, abs=1e-6)
    assert after.slope_mean > 0
    assert dict(after.tag_min_present_landmarks) == {"ABDOMEN": 4}
    json.loads((model / "inference-settings.json").read_text(), parse_constant=_reject)


def _reject(name: str) -> None:
    raise ValueError(name)
