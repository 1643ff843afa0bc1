"""Evaluation runner: synthetic volumes with known landmarks, the result cache, real CT, the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from bodyscore.cli import main
from bodyscore.errors import InputError
from bodyscore.evaluate import landmarks as lm
from bodyscore.evaluate import runner
from bodyscore.evaluate.metrics import EVALUATION_LANDMARKS

#: Small real volumes of the development set covering pelvis→head landmarks (a fast subset).
REAL_SUBSET = ("ts_petct_slab", "crlm1004_abdomen", "pyradiomics_lung1_chest",
               "openkbp_test291_hn", "unc_cthead_cadaver_head")


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two held-out synthetic volumes (128² in-plane, ≤ 48 slices) and their landmarks.json."""
    from bodyscore.synth import generate_dataset
    from bodyscore.synth.generate import SynthConfig

    folder = tmp_path_factory.mktemp("synth_eval")
    config = SynthConfig(in_plane_size=128, max_slices=48, partial_probability=0.0)
    return folder, generate_dataset(folder, 2, seed=9100, config=config)


def test_evaluate_folder_on_synthetic_volumes(
    synth_data: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, landmarks_file = synth_data
    cache = tmp_path / "cache"
    report = runner.evaluate_folder(tiny_model_dir, folder, landmarks_file, cache_dir=cache)
    assert [v.volume_id for v in report.volumes] == ["synth_09100", "synth_09101"]
    assert report.skipped == ()
    assert report.d == pytest.approx(1.0)  # model table on the 0–100 scale
    # whole-body volumes: every evaluation landmark the model's table knows is measured
    known = [n for n in EVALUATION_LANDMARKS if n in report.reference]
    assert {e.name for e in report.per_landmark} == set(known)
    assert all(e.n == 2 for e in report.per_landmark)
    assert report.lmse.n == 2
    assert math.isfinite(report.lmse.mean)
    assert report.lmse.mean >= 0
    per_volume = [v.lmse for v in report.volumes]
    assert report.lmse.mean == pytest.approx(sum(per_volume) / 2)
    assert all(len(v.scores) == len(v.z_mm) > 0 for v in report.volumes)
    json.dumps(report.to_dict(include_curves=True), allow_nan=False)  # strict JSON

    # second run: served from the cache, the model is never run
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("predict called although the inputs did not change")

    monkeypatch.setattr("bodyscore.inference.predict", fail)
    again = runner.evaluate_folder(tiny_model_dir, folder, landmarks_file, cache_dir=cache)
    assert again.to_dict() == report.to_dict()


def test_cache_key_follows_input_content(tmp_path: Path) -> None:
    cache = runner.ResultCache(tmp_path / "cache")
    f = tmp_path / "a.nii.gz"
    f.write_bytes(b"one")
    first = cache.input_digest(f)
    assert cache.input_digest(f) == first
    f.write_bytes(b"two")
    os.utime(f, ns=(1, 1))
    assert cache.input_digest(f) != first
    assert (tmp_path / "cache" / "inputs.json").is_file()
    with pytest.raises(InputError):
        cache.input_digest(tmp_path / "missing")


def test_reference_from_data_and_explicit_mapping(
    synth_data: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder, landmarks_file = synth_data
    cache = tmp_path / "cache"
    data = runner.evaluate_folder(tiny_model_dir, folder, landmarks_file, cache_dir=cache,
                                  reference="data", landmarks=None)
    assert data.reference_kind == "data"
    assert data.notes
    # pseudo-labels are the mean over the two volumes (eq. 4.11)
    for name, value in data.reference.items():
        values = [v.landmark_scores[name] for v in data.volumes if name in v.landmark_scores]
        assert value == pytest.approx(sum(values) / len(values))
    with pytest.raises(InputError, match="pelvis_start"):
        runner.evaluate_folder(tiny_model_dir, folder, landmarks_file, cache_dir=cache,
                               reference={"L5": 1.0})


def test_missing_volumes_are_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "landmarks.json").write_text(json.dumps(
        {"ghost": {"file": "ghost.nii.gz", "landmarks": {"L5": {"k": 1}}}}))
    with pytest.raises(InputError, match="ghost"):
        runner.evaluate_folder(tiny_model_dir, tmp_path, tmp_path / "landmarks.json")


def test_bpreg_landmark_table_csv(tmp_path: Path) -> None:
    path = tmp_path / "bpreg.csv"
    path.write_text("filename,pelvis_start,L5,eyes_end\ncase_1.npy,3,17,\ncase_2,,4.0,88\n,,,\n")
    table = lm.read_landmarks(path)
    assert set(table) == {"case_1", "case_2"}
    assert {k: p.k for k, p in table["case_1"].landmarks.items()} == {"pelvis_start": 3.0,
                                                                       "L5": 17.0}
    assert table["case_2"].landmarks["eyes_end"].k == 88.0
    with pytest.raises(InputError, match=r"openpyxl|workbook"):
        lm.read_landmarks(tmp_path / "missing.xlsx")


def _subset_landmarks(ct_dir: Path, target: Path) -> Path:
    doc = json.loads((ct_dir / "landmarks.json").read_text())
    subset = {k: v for k, v in doc.items() if k.startswith("_") or k in REAL_SUBSET}
    target.write_text(json.dumps(subset))
    return target


def test_cli_evaluate_real_ct(ct_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    landmarks_file = _subset_landmarks(ct_dir, tmp_path / "landmarks.json")
    out = tmp_path / "out"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(ct_dir), "--landmarks",
            str(landmarks_file), "-o", str(out), "--all-landmarks"]
    assert main([*args, "--compare", str(tiny_model_dir)]) == 0
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "per_landmark.csv",
                                               "report.html", "report.png"}
    text = (out / "metrics.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    evaluation = doc["evaluation"]
    assert sorted(v["volume_id"] for v in evaluation["volumes"]) == sorted(REAL_SUBSET)
    assert evaluation["metrics"]["lmse"]["n"] >= 4
    # the same model twice: t = 0, not significant
    assert doc["compare"]["z_test"]["statistic"] == 0.0
    assert doc["compare"]["z_test"]["significant"] is False
    rows = list(csv.DictReader((out / "per_landmark.csv").open()))
    assert rows
    assert {r["model"] for r in rows} == {evaluation["model"]["name"]}
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "LMSE" in capsys.readouterr().out


def test_cli_evaluate_bad_landmark_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "landmarks.json"
    bad.write_text("{not json")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path),
                 "--landmarks", str(bad), "-o", str(tmp_path / "out")]) == 1
