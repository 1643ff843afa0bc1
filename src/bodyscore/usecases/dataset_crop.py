"""Known-region cropping of whole segmentation datasets: nnU-Net raw and Medical Segmentation
Decathlon folders (thesis sec. 4.3.2, cropping as pre-processing of an algorithm's data).

Layouts read and written (the output has the input's layout, file names and ``dataset.json``):

* **nnU-Net** (v2, and v1 with ``_0000`` files): ``imagesTr/<case>_<XXXX><ending>`` (one file per
  channel), ``labelsTr/<case><ending>``, optional ``imagesTs/`` and ``labelsTs/``;
  ``dataset.json`` with ``channel_names`` (v1: ``modality``) and ``file_ending``.
* **MSD**: ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs/``;
  ``dataset.json`` with ``training`` / ``test`` lists.

Per case the CT channel (the channel named ``CT``, else the first) is scored once; every channel
and the label map are cropped on its kept slices (they must share its grid). A case without any
slice in the known region is dropped and left out of the new ``dataset.json``. Each case writes
its files, then its row file ``bodyscore-crop.parts/<split>__<case>.row.json``; a re-run skips
cases with a row file, so an interrupted run resumes. The per-case table
``bodyscore-crop.csv`` and the run description ``bodyscore-crop.json`` (bounds, model, counts)
are written at the end. With ``workers > 1`` or a scheduler the cases run on the Dask cohort
runner (:func:`bodyscore.cohort.runner.run_tasks`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import BodyscoreError, InputError, OutputError
from bodyscore.export.atomic import atomic_write_text
from bodyscore.usecases.crop import CropBounds, slices_in_bounds

__all__ = [
    "CASE_COLUMNS",
    "DatasetCase",
    "DatasetCropSummary",
    "DatasetLayout",
    "crop_case",
    "crop_dataset",
    "read_layout",
]

logger = logging.getLogger(__name__)

#: Columns of the per-case table ``bodyscore-crop.csv``, in order.
CASE_COLUMNS: tuple[str, ...] = (
    "case",
    "split",
    "status",
    "n_slices",
    "kept_start",
    "kept_stop",
    "n_kept",
    "kept_score_min",
    "kept_score_max",
    "volume_score_min",
    "volume_score_max",
    "reason",
)

PARTS = "bodyscore-crop.parts"
TABLE = "bodyscore-crop.csv"
RUN_FILE = "bodyscore-crop.json"
_IMAGE_SPLITS = {"imagesTr": "labelsTr", "imagesTs": "labelsTs"}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class DatasetCase:
    """One case of a dataset.

    Attributes
    ----------
    case_id : str
        nnU-Net case identifier / MSD file stem.
    split : str
        ``"imagesTr"`` or ``"imagesTs"``.
    images : tuple of str
        Channel files relative to the dataset root; the CT channel first.
    label : str or None
        Label map relative to the root (``labelsTr/<case><ending>``), None when absent.
    """

    case_id: str
    split: str
    images: tuple[str, ...]
    label: str | None = None

    @property
    def key(self) -> str:
        """Unique, file-name safe key: ``<split>__<case>``."""
        return f"{self.split}__{self.case_id}"


@dataclass(frozen=True)
class DatasetLayout:
    """A dataset folder: its kind, file ending, ``dataset.json`` and cases."""

    root: Path
    kind: str
    file_ending: str
    dataset_json: Mapping[str, Any]
    cases: tuple[DatasetCase, ...]


@dataclass(frozen=True)
class DatasetCropSummary:
    """Outcome of :func:`crop_dataset`."""

    destination: Path
    table: Path
    n_cases: int
    n_kept: int
    n_dropped: int
    n_failed: int
    n_skipped: int


def _read_dataset_json(root: Path) -> dict[str, Any]:
    path = root / "dataset.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"{root}: no dataset.json; expected an nnU-Net raw or MSD dataset folder"
        ) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _files(folder: Path, ending: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        f for f in folder.iterdir()
        if f.is_file() and f.name.endswith(ending) and not f.name.startswith(".")
    )


def _ct_channel(meta: Mapping[str, Any]) -> str:
    names = meta.get("channel_names") or meta.get("modality") or {}
    for index, name in sorted(names.items(), key=lambda kv: int(kv[0])):
        if str(name).strip().upper() == "CT":
            return f"{int(index):04d}"
    return "0000"


def _nnunet_cases(root: Path, split: str, ending: str, ct: str) -> list[DatasetCase]:
    channels: dict[str, list[str]] = {}
    for file in _files(root / split, ending):
        match = _CHANNEL.match(file.name[: -len(ending)])
        if match is None:
            raise InputError(
                f"{file}: not named <case>_<XXXX>{ending} like the other nnU-Net channel files"
            )
        channels.setdefault(match["case"], []).append(match["channel"])
    cases = []
    for case_id, found in sorted(channels.items()):
        order = sorted(found, key=lambda c: (c != ct, c))
        label = Path(_IMAGE_SPLITS[split]) / f"{case_id}{ending}"
        cases.append(
            DatasetCase(
                case_id=case_id,
                split=split,
                images=tuple(f"{split}/{case_id}_{c}{ending}" for c in order),
                label=str(label) if (root / label).is_file() else None,
            )
        )
    return cases


def _msd_cases(root: Path, split: str, ending: str) -> list[DatasetCase]:
    cases = []
    for file in _files(root / split, ending):
        case_id = file.name[: -len(ending)]
        label = Path(_IMAGE_SPLITS[split]) / file.name
        cases.append(
            DatasetCase(
                case_id=case_id,
                split=split,
                images=(f"{split}/{file.name}",),
                label=str(label) if (root / label).is_file() else None,
            )
        )
    return cases


def read_layout(root: str | os.PathLike[str]) -> DatasetLayout:
    """Recognise an nnU-Net raw or MSD dataset folder and list its cases.

    Raises
    ------
    InputError
        No ``dataset.json`` / ``imagesTr``, or files not following the layout's naming.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give an nnU-Net raw or MSD dataset folder")
    meta = _read_dataset_json(root)
    if not (root / "imagesTr").is_dir():
        raise InputError(f"{root}: no imagesTr folder; expected an nnU-Net raw or MSD dataset")
    ending = str(meta.get("file_ending", ".nii.gz"))
    stems = [f.name[: -len(ending)] for f in _files(root / "imagesTr", ending)]
    channel_named = bool(stems) and all(_CHANNEL.match(s) for s in stems)
    is_nnunet = ("channel_names" in meta or "modality" in meta) and (
        channel_named or "file_ending" in meta
    )
    cases: list[DatasetCase] = []
    for split in _IMAGE_SPLITS:
        if is_nnunet:
            cases += _nnunet_cases(root, split, ending, _ct_channel(meta))
        else:
            cases += _msd_cases(root, split, ending)
    if not cases:
        raise InputError(f"{root}: imagesTr holds no *{ending} image")
    return DatasetLayout(
        root=root,
        kind="nnunet" if is_nnunet else "msd",
        file_ending=ending,
        dataset_json=meta,
        cases=tuple(cases),
    )


# ------------------------------------------------------------------------------------------
# one case
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CropTask:
    """What a worker needs to crop one case (picklable)."""

    source: str
    destination: str
    score_min: float
    score_max: float
    model: str
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)


def _finite(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None, None
    return float(finite.min()), float(finite.max())


def _write_case(case: DatasetCase, task: _CropTask, start: int, stop: int) -> None:
    from bodyscore.io import write_cropped
    from bodyscore.io.label_maps import check_same_grid, read_grid, write_label_slices

    source, destination = Path(task.source), Path(task.destination)
    ct = source / case.images[0]
    ct_grid = read_grid(ct)
    for image in case.images:
        grid = ct_grid if image == case.images[0] else read_grid(source / image)
        check_same_grid(ct_grid, grid)
        lo, hi = grid.from_canonical(*ct_grid.to_canonical(start, stop))
        write_cropped(source / image, destination / image, start=lo, stop=hi)
    if case.label is not None:
        write_label_slices(source / case.label, destination / case.label, ct=ct,
                           start=start, stop=stop)


def _remove_case_files(case: DatasetCase, destination: Path) -> None:
    """Remove what a failed case wrote, so that no half case sits in the new dataset."""
    for name in (*case.images, case.label):
        if name is not None:
            (destination / name).unlink(missing_ok=True)


def crop_case(case: DatasetCase, task: _CropTask) -> dict[str, Any]:
    """Score, crop and write one case, then its row file; never raises for a bad case.

    Returns
    -------
    dict
        The case's row (:data:`CASE_COLUMNS`); ``status`` is ``"kept"``, ``"dropped"`` (no slice
        in the known region) or ``"error"``.
    """
    from bodyscore.cohort.runner import cached_model
    from bodyscore.inference import predict

    row: dict[str, Any] = dict.fromkeys(CASE_COLUMNS)
    row.update(case=case.case_id, split=case.split)
    bounds = CropBounds(task.score_min, task.score_max)
    try:
        result = predict(Path(task.source) / case.images[0], cached_model(task.model, task.backend))
        scores = result.cleaned
        row["n_slices"] = result.n_slices
        row["volume_score_min"], row["volume_score_max"] = _finite(scores)
        selected = slices_in_bounds(result, bounds)
        if selected is None:
            lo, hi = row["volume_score_min"], row["volume_score_max"]
            seen = "no valid score" if lo is None else f"its scores span {lo:.1f}..{hi:.1f}"
            row.update(
                status="dropped",
                n_kept=0,
                reason=f"no slice scores within {bounds.score_min:.1f}..{bounds.score_max:.1f} "
                f"({seen})",
            )
        else:
            _write_case(case, task, selected.start, selected.stop)
            kept = scores[selected.as_slice()]
            row.update(status="kept", kept_start=selected.start, kept_stop=selected.stop,
                       n_kept=len(selected))
            row["kept_score_min"], row["kept_score_max"] = _finite(kept)
    except Exception as exc:
        _remove_case_files(case, Path(task.destination))
        row.update(status="error", reason=str(exc).splitlines()[0] if str(exc) else repr(exc))
        if not isinstance(exc, BodyscoreError):
            logger.warning("%s: unexpected %s", case.key, type(exc).__name__, exc_info=True)
    parts = Path(task.destination) / PARTS
    atomic_write_text(parts / f"{case.key}.row.json", json.dumps(row, allow_nan=False) + "\n")
    return row


# ------------------------------------------------------------------------------------------
# the dataset
# ------------------------------------------------------------------------------------------
def _read_rows(parts: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for file in sorted(parts.glob("*.row.json")):
        try:
            rows[file.name.removesuffix(".row.json")] = json.loads(file.read_text("utf-8"))
        except (OSError, ValueError):
            logger.warning("%s: unreadable row file ignored (case will be re-run)", file)
    return rows


def _run_description(layout: DatasetLayout, bounds: CropBounds, model_info: Mapping[str, Any],
                     known_region: Mapping[str, Any] | None) -> dict[str, Any]:
    def bound(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "source": str(layout.root),
        "layout": layout.kind,
        "score_min": bound(bounds.score_min),
        "score_max": bound(bounds.score_max),
        "model": {k: model_info.get(k) for k in ("name", "version", "sha256")},
        "known_region": dict(known_region) if known_region else None,
    }


def _start_run(destination: Path, description: dict[str, Any]) -> None:
    """Write (or, resuming, check) the run description; refuse a folder of another run."""
    run_file = destination / RUN_FILE
    if run_file.is_file():
        previous = json.loads(run_file.read_text("utf-8"))
        same = {k: previous.get(k) for k in ("source", "score_min", "score_max", "model")}
        if same != {k: description[k] for k in same}:
            raise OutputError(
                f"{destination}: holds a crop of {previous.get('source')} with other bounds or "
                "another model; choose a new output folder"
            )
        return
    if destination.exists() and any(destination.iterdir()):
        raise OutputError(
            f"{destination}: exists and is not a bodyscore crop-dataset output; choose a new "
            "or empty folder"
        )
    text = json.dumps({**description, "status": "running"}, indent=2, allow_nan=False)
    atomic_write_text(run_file, text + "\n")


def _entry_case(entry: Any, ending: str) -> str:
    path = entry.get("image", "") if isinstance(entry, Mapping) else str(entry)
    name = Path(path).name
    return name[: -len(ending)] if name.endswith(ending) else name


def _new_dataset_json(layout: DatasetLayout, kept: Mapping[str, set[str]]) -> dict[str, Any]:
    """``dataset.json`` of the output: every key kept, the case lists and counts updated."""
    meta = json.loads(json.dumps(layout.dataset_json))
    ending = layout.file_ending
    if "numTraining" in meta:
        meta["numTraining"] = len(kept["imagesTr"])
    if "numTest" in meta:
        meta["numTest"] = len(kept["imagesTs"])
    for key, split in (("training", "imagesTr"), ("test", "imagesTs")):
        if isinstance(meta.get(key), list):
            meta[key] = [e for e in meta[key] if _entry_case(e, ending) in kept[split]]
    return meta


def _write_table(destination: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CASE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (str(r["split"]), str(r["case"]))):
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CASE_COLUMNS})
    return atomic_write_text(destination / TABLE, buffer.getvalue())


def _copy_other_files(layout: DatasetLayout, destination: Path) -> None:
    for file in sorted(layout.root.iterdir()):
        if file.is_file() and file.name != "dataset.json" and not file.name.startswith("."):
            shutil.copy2(file, destination / file.name)


def crop_dataset(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    bounds: CropBounds,
    model: str = "default",
    backend: str = "auto",
    workers: int = 1,
    scheduler: str | None = None,
    retry_failed: bool = False,
    known_region: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetCropSummary:
    """Crop every case of an nnU-Net raw / MSD dataset to a known region.

    Parameters
    ----------
    source : path-like
        The dataset folder (see :func:`read_layout`).
    destination : path-like
        New (or empty) folder receiving the cropped dataset, same layout; an earlier,
        interrupted run of the same crop is resumed.
    bounds : CropBounds
        The known region [s_min, s_max].
    model, backend : str
        Scoring model (registry name or folder) and backend.
    workers : int
        1: cases run in this process; more: on a Dask ``LocalCluster`` with that many workers.
    scheduler : str, optional
        Address of an existing Dask scheduler (implies Dask).
    retry_failed : bool
        Re-run cases whose earlier row is an error.
    known_region : mapping, optional
        The known-region file content the bounds come from, recorded in ``bodyscore-crop.json``.
    progress : callable, optional
        ``progress(done, total)`` after each case.

    Returns
    -------
    DatasetCropSummary

    Raises
    ------
    InputError
        Not a dataset folder.
    OutputError
        Destination is the source, inside it, or holds another run.
    """
    from bodyscore.cohort.runner import cached_model, run_tasks

    layout = read_layout(source)
    destination = Path(destination)
    if destination.resolve() == layout.root.resolve() or layout.root.resolve() in (
        destination.resolve().parents
    ):
        raise OutputError(f"{destination}: is inside the source dataset; choose another folder")
    info = cached_model(model, backend).info
    _start_run(destination, _run_description(layout, bounds, info, known_region))
    done = _read_rows(destination / PARTS)
    todo = [
        c for c in layout.cases
        if c.key not in done or (retry_failed and done[c.key].get("status") == "error")
    ]
    task = _CropTask(str(layout.root), str(destination), bounds.score_min, bounds.score_max,
                     model, backend)
    if workers > 1 or scheduler:
        rows = run_tasks(crop_case, todo, keys=[f"bodyscore-crop-{c.key}" for c in todo],
                         workers=workers, scheduler=scheduler, progress=progress, task=task)
        for row in rows:
            done[f"{row['split']}__{row['case']}"] = row
    else:
        for number, case in enumerate(todo, start=1):
            done[case.key] = crop_case(case, task)
            if progress is not None:
                progress(number, len(todo))
    rows_now = [done[c.key] for c in layout.cases if c.key in done]
    kept: dict[str, set[str]] = {split: set() for split in _IMAGE_SPLITS}
    for row in rows_now:
        if row["status"] == "kept":
            kept[row["split"]].add(row["case"])
    new_json = _new_dataset_json(layout, kept)
    atomic_write_text(destination / "dataset.json", json.dumps(new_json, indent=4) + "\n")
    _copy_other_files(layout, destination)
    table = _write_table(destination, rows_now)
    counts = {s: sum(r["status"] == s for r in rows_now) for s in ("kept", "dropped", "error")}
    summary = DatasetCropSummary(
        destination=destination,
        table=table,
        n_cases=len(layout.cases),
        n_kept=counts["kept"],
        n_dropped=counts["dropped"],
        n_failed=counts["error"],
        n_skipped=len(layout.cases) - len(todo),
    )
    description = _run_description(layout, bounds, info, known_region)
    description.update(status="complete", **{k: v for k, v in asdict(summary).items()
                                             if k.startswith("n_")})
    atomic_write_text(destination / RUN_FILE,
                      json.dumps(description, indent=2, allow_nan=False) + "\n")
    return summary
