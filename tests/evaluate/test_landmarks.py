"""Tests of the landmark annotation readers (JSON and CSV forms)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bodyscore.errors import InputError
from bodyscore.evaluate.landmarks import (
    LandmarkPosition,
    read_landmarks,
    read_landmarks_csv,
    read_landmarks_json,
    volume_id_from_path,
)


@pytest.fixture
def ct_dir() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct"
    if not (path / "landmarks.json").is_file():
        pytest.skip("shared CT data not available")
    return path


def test_reads_shared_landmarks_json(ct_dir: Path):
    annotations = read_landmarks(ct_dir / "landmarks.json")
    assert "_conventions" not in annotations
    assert len(annotations) == 20
    cptac = annotations["cptac_pda_chest"]
    assert cptac.file == (ct_dir / "cptac_pda_chest.nii.gz").resolve()
    assert cptac.file.is_file()
    assert cptac.landmarks["lung_start"] == LandmarkPosition(15.0, -221.5, "medium")
    assert cptac.landmarks["L1"].k == 11.25
    assert "pelvis_start" not in cptac.landmarks  # null dropped
    assert cptac.regions[0].label == "abdomen"
    assert (cptac.regions[0].k_first,
                                                    cptac.regions[0].k_last) == (0, 14)
    for annotation in annotations.values():
        assert annotation.file is not None
        assert annotation.file.is_file()
        for position in annotation.landmarks.values():
            assert position.k is not None or position.z_mm is not None


def test_csv_form_and_z_only(tmp_path: Path):
    path = tmp_path / "lm.csv"
    path.write_text("volume,landmark,k,z_mm,confidence\n"
                    "a,lung_start,15,,medium\n"
                    "a,L1,,-232.75,\n"
                    "b,eyes_end,3.5,10,high\n", encoding="utf-8")
    annotations = read_landmarks(path)
    assert set(annotations) == {"a", "b"}
    assert annotations["a"].landmarks["lung_start"] == LandmarkPosition(15.0, None, "medium")
    l1 = annotations["a"].landmarks["L1"]
    assert l1.k is None
    assert l1.confidence is None
    # z -> k by linear interpolation, descending positions too
    z = -266.5 + 3.0 * np.arange(102)
    assert l1.fractional_index(z) == pytest.approx(11.25)
    assert l1.fractional_index(z[::-1]) == pytest.approx(101 - 11.25)
    with pytest.raises(InputError, match="slice positions"):
        l1.fractional_index()


@pytest.mark.parametrize(("text", "message"), [
    ("volume,landmark\na,L1\n", "header"),
    ("volume,landmark,k\na,L1,\n", "neither k nor z_mm"),
    ("volume,landmark,k\na,L1,abc\n", "not a number"),
    ("volume,landmark,k\na,L1,1\na,L1,2\n", "given twice"),
])
def test_csv_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_landmarks_csv(path)


def test_json_errors(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="invalid JSON"):
        read_landmarks_json(path)
    path.write_text(json.dumps({"v": {"landmarks": {"L1": {"confidence": "low"}}}}))
    with pytest.raises(InputError, match="neither k nor z_mm"):
        read_landmarks_json(path)
    with pytest.raises(InputError, match="cannot read"):
        read_landmarks_json(tmp_path / "missing.json")


def test_volume_id_from_path():
    assert volume_id_from_path("/x/ts_abdomen_pelvis.nii.gz") == "ts_abdomen_pelvis"
    assert volume_id_from_path("a.b.nii") == "a.b"
