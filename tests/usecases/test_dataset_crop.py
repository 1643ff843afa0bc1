"""``bodyscore crop-dataset`` on hand-made nnU-Net and MSD folders: layout, file names,
dataset.json and channel files round-trip; labels follow the CT; dropped cases; resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import bodyscore
from bodyscore.cli import main
from bodyscore.errors import InputError, OutputError
from bodyscore.usecases.crop import CropBounds, slices_in_bounds
from bodyscore.usecases.dataset_crop import PARTS, crop_dataset, read_layout
from helpers.region_ct import (
    middle_bounds,
    surviving_slices,
    write_slice_labels,
    write_synthetic_ct,
)


def _air_like(ct: Path, path: Path) -> Path:
    img = nib.load(str(ct))
    nib.save(nib.Nifti1Image(np.full(img.shape, -1000, np.int16), img.affine), str(path))
    return path


def _second_channel(ct: Path, path: Path) -> Path:
    """A channel on the CT grid whose value on slice k is k (traceable after the crop)."""
    img = nib.load(str(ct))
    data = np.broadcast_to(np.arange(img.shape[2], dtype=np.int16), img.shape).copy()
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cases")
    ct_a = write_synthetic_ct(folder / "a.nii.gz", seed=1)
    ct_b = write_synthetic_ct(folder / "b.nii.gz", seed=2)
    return {
        "a": ct_a,
        "b": ct_b,
        "air": _air_like(ct_a, folder / "air.nii.gz"),
        "label_a": write_slice_labels(folder / "la.nii.gz", ct_a),
        "label_b": write_slice_labels(folder / "lb.nii.gz", ct_b),
        "label_air": write_slice_labels(folder / "lair.nii.gz", ct_a),
        "chan_a": _second_channel(ct_a, folder / "ca.nii.gz"),
        "chan_b": _second_channel(ct_b, folder / "cb.nii.gz"),
        "chan_air": _second_channel(ct_a, folder / "cair.nii.gz"),
    }


@pytest.fixture(scope="module")
def bounds(sources: dict[str, Path]) -> CropBounds:
    return CropBounds(*middle_bounds(bodyscore.predict(sources["a"]).cleaned))


NNUNET_JSON = {
    "channel_names": {"0": "CT", "1": "slice_index"},
    "labels": {"background": 0, "box": 1},
    "numTraining": 3,
    "file_ending": ".nii.gz",
    "name": "Dataset999_Test",
}


def _nnunet(root: Path, s: dict[str, Path]) -> Path:
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    for case, key in (("case_001", "a"), ("case_002", "b"), ("case_003", "air")):
        shutil.copy(s[key], root / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(s[f"chan_{key}"], root / "imagesTr" / f"{case}_0001.nii.gz")
        shutil.copy(s[f"label_{key}"], root / "labelsTr" / f"{case}.nii.gz")
    shutil.copy(s["b"], root / "imagesTs" / "case_101_0000.nii.gz")
    shutil.copy(s["chan_b"], root / "imagesTs" / "case_101_0001.nii.gz")
    (root / "dataset.json").write_text(json.dumps(NNUNET_JSON))
    (root / "LICENSE.txt").write_text("CC BY 4.0\n")
    return root


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "bodyscore-crop.csv").open() as f:
        return {f"{r['split']}/{r['case']}": r for r in csv.DictReader(f)}


def test_nnunet_round_trip(sources: dict[str, Path], bounds: CropBounds, tmp_path: Path) -> None:
    source = _nnunet(tmp_path / "Dataset999_Test", sources)
    out = tmp_path / "cropped"
    rc = main(["-q", "crop-dataset", str(source), "-o", str(out), "--scores",
               str(bounds.score_min), str(bounds.score_max)])
    assert rc == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    assert written == [
        "imagesTr/case_001_0000.nii.gz", "imagesTr/case_001_0001.nii.gz",
        "imagesTr/case_002_0000.nii.gz", "imagesTr/case_002_0001.nii.gz",
        "imagesTs/case_101_0000.nii.gz", "imagesTs/case_101_0001.nii.gz",
        "labelsTr/case_001.nii.gz", "labelsTr/case_002.nii.gz",
    ]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta == {**NNUNET_JSON, "numTraining": 2}
    assert (out / "LICENSE.txt").read_text() == "CC BY 4.0\n"
    rows = _rows(out)
    assert rows["imagesTr/case_003"]["status"] == "dropped"
    assert "no valid score" in rows["imagesTr/case_003"]["reason"]
    for case, key in (("case_001", "a"), ("case_002", "b")):
        kept = slices_in_bounds(bodyscore.predict(sources[key]), bounds)
        assert kept is not None
        expected = set(range(kept.start, kept.stop))
        row = rows[f"imagesTr/{case}"]
        assert (int(row["kept_start"]), int(row["kept_stop"])) == (kept.start, kept.stop)
        assert bounds.score_min <= float(row["kept_score_min"]) <= float(row["kept_score_max"])
        assert surviving_slices(out / "labelsTr" / f"{case}.nii.gz") == expected
        channel = np.asarray(nib.load(str(out / "imagesTr" / f"{case}_0001.nii.gz")).dataobj)
        assert set(np.unique(channel).tolist()) == expected
        ct = nib.load(str(out / "imagesTr" / f"{case}_0000.nii.gz"))
        assert ct.shape[2] == len(expected)
    run = json.loads((out / "bodyscore-crop.json").read_text())
    assert run["status"] == "complete"
    assert run["n_kept"] == 3
    assert run["n_dropped"] == 1


def test_resume_redoes_only_missing_cases(sources: dict[str, Path], bounds: CropBounds,
                                          tmp_path: Path) -> None:
    source = _nnunet(tmp_path / "ds", sources)
    out = tmp_path / "cropped"
    first = crop_dataset(source, out, bounds=bounds)
    assert (first.n_cases, first.n_skipped) == (4, 0)
    # as if killed before case_002 finished: its row and one of its files are missing
    (out / PARTS / "imagesTr__case_002.row.json").unlink()
    (out / "labelsTr" / "case_002.nii.gz").unlink()
    again = crop_dataset(source, out, bounds=bounds)
    assert (again.n_skipped, again.n_kept, again.n_dropped) == (3, 3, 1)
    assert (out / "labelsTr" / "case_002.nii.gz").is_file()
    with pytest.raises(OutputError, match="other bounds"):
        crop_dataset(source, out, bounds=CropBounds(0.0, 100.0))
    with pytest.raises(OutputError, match="inside the source dataset"):
        crop_dataset(source, source / "out", bounds=bounds)


def test_case_on_another_grid_fails_alone(sources: dict[str, Path], bounds: CropBounds,
                                          tmp_path: Path) -> None:
    source = _nnunet(tmp_path / "ds", sources)
    img = nib.load(str(sources["label_a"]))
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), img.affine),
             str(source / "labelsTr" / "case_001.nii.gz"))
    out = tmp_path / "cropped"
    summary = crop_dataset(source, out, bounds=bounds)
    assert summary.n_failed == 1
    rows = _rows(out)
    assert rows["imagesTr/case_001"]["status"] == "error"
    assert "differs from the CT's" in rows["imagesTr/case_001"]["reason"]
    assert not list((out / "imagesTr").glob("case_001_*"))  # no half case left
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 1


def _msd(root: Path, s: dict[str, Path]) -> Path:
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    training = []
    for case, key in (("spleen_1", "a"), ("spleen_2", "air")):
        shutil.copy(s[key], root / "imagesTr" / f"{case}.nii.gz")
        shutil.copy(s[f"label_{key}"], root / "labelsTr" / f"{case}.nii.gz")
        training.append(
            {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
        )
    shutil.copy(s["b"], root / "imagesTs" / "spleen_9.nii.gz")
    (root / "imagesTr" / "._spleen_1.nii.gz").write_bytes(b"macOS resource fork")
    meta = {"name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "box"},
            "numTraining": 2, "numTest": 1, "training": training,
            "test": ["./imagesTs/spleen_9.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_msd_round_trip_on_dask(sources: dict[str, Path], bounds: CropBounds,
                                tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    source = _msd(tmp_path / "Task09_Spleen", sources)
    layout = read_layout(source)
    assert layout.kind == "msd"
    assert [c.case_id for c in layout.cases] == ["spleen_1", "spleen_2", "spleen_9"]
    out = tmp_path / "cropped"
    summary = crop_dataset(source, out, bounds=bounds, workers=2)
    assert (summary.n_kept, summary.n_dropped, summary.n_failed) == (2, 1, 0)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["training"] == [
        {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}
    ]
    assert meta["numTraining"] == 1
    assert meta["test"] == ["./imagesTs/spleen_9.nii.gz"]
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["spleen_1.nii.gz"]
    kept = slices_in_bounds(bodyscore.predict(sources["a"]), bounds)
    assert kept is not None
    assert surviving_slices(out / "labelsTr" / "spleen_1.nii.gz") == set(
        range(kept.start, kept.stop))


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no dataset\.json"):
        read_layout(tmp_path)
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(InputError, match="no imagesTr"):
        read_layout(tmp_path)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps(NNUNET_JSON))
    (tmp_path / "imagesTr" / "oddname.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"not named <case>_<XXXX>\.nii\.gz"):
        read_layout(tmp_path)
