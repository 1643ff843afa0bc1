"""Landmark annotations of CT volumes: reading the JSON and CSV forms.

Landmarks are the anatomical reference points of thesis table 4.3 (``pelvis_start``,
``femur_end``, ``L5`` … ``C1``, ``lung_start``, ``eyes_end``, ...). They anchor the 0–100 scale
(pelvis_start → 0, eyes_end → 100) and are the ground truth of the evaluation (sec. 4.2).

Positions use the volume as stored on disk: ``k`` is the 0-based, possibly fractional, index
along the slice axis (for RAS+ canonical NIfTI files k = 0 is the most caudal slice) and
``z_mm`` the world z of the slice centre (RAS z = DICOM patient z). At least one of them is
given; :meth:`LandmarkPosition.fractional_index` converts z to k when only z is known.

JSON form (``shared/data/ct/landmarks.json``, also written by :mod:`bodyscore.synth`)::

    {
      "_conventions": {...},                    # keys starting with "_" are ignored
      "<volume id>": {
        "file": "ct.nii.gz",                    # relative to the JSON file's folder
        "shape": [x, y, z], "spacing_mm": [x, y, z],        # optional, informative
        "landmarks": {"<name>": {"k": 12.5, "z_mm": -40.0, "confidence": "medium"} | null},
        "regions": [{"k": [0, 14], "label": "abdomen"}, ...]  # optional, inclusive k ranges
      }
    }

A ``null`` landmark is outside the volume or not readable and is dropped when read.

CSV form (UTF-8, header row, one landmark per row)::

    volume,landmark,k,z_mm,confidence
    ct_chest,lung_start,15.0,,medium
    ct_chest,L1,,-232.75,

Columns ``volume`` and ``landmark`` are required; at least one of ``k`` / ``z_mm`` must be a
column and every row must fill one of them; ``confidence`` is optional (empty = unknown).
Volume ids are the file names without ``.nii.gz``/``.nii``/... by convention.

bpreg's layout (MIC-DKFZ/BodyPartRegression ``bpreg/dataset/base_dataset.py``: an ``.xlsx``
read with ``pd.read_excel(sheet_name="landmarks-train" | "landmarks-val" | "landmarks-test",
index_col="filename")``), one volume per row, one landmark per column, cells = slice index or
empty::

    filename,pelvis_start,femur_end,L5,...,eyes_end
    case_0001,3,17,,...,

read from ``.xlsx`` (needs ``openpyxl``; all sheets whose name starts with ``landmarks`` unless
``sheet`` is given) or from the same table saved as CSV. Assumption (bpreg's files are not
public): the index refers to bpreg's ``.npy`` volume, whose slice axis equals the stored NIfTI
axis for the usual RAS/LPS files with a positive z step; ``filename`` loses its ``.npy`` /
image suffix to become the volume id.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from bodyscore.errors import InputError

__all__ = [
    "LandmarkPosition",
    "RegionLabel",
    "VolumeAnnotation",
    "read_landmark_files",
    "read_landmarks",
    "read_landmarks_bpreg",
    "read_landmarks_csv",
    "read_landmarks_json",
    "volume_id_from_path",
]

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".npy", ".dcm")
_BPREG_INDEX = "filename"


def volume_id_from_path(path: str | Path) -> str:
    """The volume id of a file: its name without the image extension."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class LandmarkPosition:
    """Where a landmark lies along the slice axis.

    Attributes
    ----------
    k : float or None
        Fractional slice index in the stored file (0 = first stored slice).
    z_mm : float or None
        World z of the landmark, mm.
    confidence : str or None
        ``"high"``, ``"medium"``, ``"low"`` or None when unknown.
    """

    k: float | None
    z_mm: float | None = None
    confidence: str | None = None

    def __post_init__(self) -> None:
        if self.k is None and self.z_mm is None:
            raise InputError("landmark position: neither k nor z_mm given; give one of them")

    def fractional_index(self, z_positions_mm: np.ndarray | None = None) -> float:
        """Fractional slice index k; from ``z_mm`` by linear interpolation if k is unknown.

        Parameters
        ----------
        z_positions_mm : numpy.ndarray, shape (n,), optional
            World z of each stored slice (any monotone order). Needed when only z is given.
        """
        if self.k is not None:
            return float(self.k)
        if z_positions_mm is None:
            raise InputError("landmark position: only z_mm given; pass the slice positions")
        z = np.asarray(z_positions_mm, dtype=float)
        k = np.arange(z.size, dtype=float)
        if z.size > 1 and z[-1] < z[0]:
            z, k = z[::-1], k[::-1]
        return float(np.interp(float(self.z_mm), z, k))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RegionLabel:
    """A coarse body region over an inclusive range of slice indices."""

    k_first: int
    k_last: int
    label: str


@dataclass(frozen=True)
class VolumeAnnotation:
    """The landmark annotation of one volume.

    Attributes
    ----------
    volume_id : str
    file : pathlib.Path or None
        The annotated image (absolute when read from a file with a ``file`` entry).
    landmarks : mapping of str to LandmarkPosition
        Only landmarks present in the volume (nulls dropped).
    regions : tuple of RegionLabel
    meta : mapping
        Other keys of the JSON entry (shape, spacing_mm, body_regions, ...).
    """

    volume_id: str
    file: Path | None
    landmarks: Mapping[str, LandmarkPosition]
    regions: tuple[RegionLabel, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


def _number(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {value!r} is not a number; fix the annotation") from exc
    if not math.isfinite(number):
        raise InputError(f"{where}: {value!r} is not finite; fix the annotation")
    return number


def _position(raw: Any, where: str) -> LandmarkPosition | None:
    if raw is None:
        return None
    if isinstance(raw, (int, float)):
        return LandmarkPosition(k=_number(raw, where))
    if not isinstance(raw, Mapping):
        raise InputError(f"{where}: expected an object {{k, z_mm, confidence}} or null")
    k = _number(raw.get("k"), f"{where}.k")
    z = _number(raw.get("z_mm"), f"{where}.z_mm")
    if k is None and z is None:
        raise InputError(f"{where}: neither k nor z_mm given; give one of them or null")
    confidence = raw.get("confidence")
    return LandmarkPosition(k=k, z_mm=z, confidence=None if confidence is None
                            else str(confidence))


def read_landmarks_json(path: str | Path) -> dict[str, VolumeAnnotation]:
    """Read a ``landmarks.json`` file (format in the module docstring).

    Returns
    -------
    dict of str to VolumeAnnotation
        Keyed by volume id, in file order.

    Raises
    ------
    InputError
        Missing file, invalid JSON or a malformed entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read landmark file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON ({exc}); fix the landmark file") from exc
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: expected a JSON object of volume entries")
    result: dict[str, VolumeAnnotation] = {}
    for volume_id, entry in data.items():
        if str(volume_id).startswith("_"):
            continue
        where = f"{path}: {volume_id}"
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: expected an object with 'landmarks'")
        raw_landmarks = entry.get("landmarks") or {}
        if not isinstance(raw_landmarks, Mapping):
            raise InputError(f"{where}: 'landmarks' must be an object")
        landmarks = {}
        for name, raw in raw_landmarks.items():
            position = _position(raw, f"{where}.landmarks.{name}")
            if position is not None:
                landmarks[str(name)] = position
        regions = []
        for region in entry.get("regions") or ():
            try:
                first, last = region["k"]
                regions.append(RegionLabel(int(first), int(last), str(region["label"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"{where}: malformed region {region!r}") from exc
        file = entry.get("file")
        meta = {k: v for k, v in entry.items() if k not in ("file", "landmarks", "regions")}
        result[str(volume_id)] = VolumeAnnotation(
            volume_id=str(volume_id),
            file=(path.parent / str(file)).resolve() if file else None,
            landmarks=MappingProxyType(landmarks),
            regions=tuple(regions),
            meta=MappingProxyType(meta),
        )
    return result


def read_landmarks_csv(path: str | Path) -> dict[str, VolumeAnnotation]:
    """Read the CSV form ``volume,landmark,k,z_mm,confidence`` (module docstring)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            rows = list(reader)
    except OSError as exc:
        raise InputError(f"{path}: cannot read landmark file ({exc.strerror})") from exc
    if not {"volume", "landmark"} <= columns or not columns & {"k", "z_mm"}:
        raise InputError(
            f"{path}: header must have volume, landmark and k and/or z_mm; got {sorted(columns)}"
        )
    per_volume: dict[str, dict[str, LandmarkPosition]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        volume, name = (row.get("volume") or "").strip(), (row.get("landmark") or "").strip()
        if not volume or not name:
            raise InputError(f"{where}: empty volume or landmark name; fill both")
        k = _number(row.get("k"), f"{where} k")
        z = _number(row.get("z_mm"), f"{where} z_mm")
        if k is None and z is None:
            raise InputError(f"{where}: neither k nor z_mm given; fill one of them")
        confidence = (row.get("confidence") or "").strip() or None
        landmarks = per_volume.setdefault(volume, {})
        if name in landmarks:
            raise InputError(f"{where}: landmark {name!r} of {volume!r} given twice")
        landmarks[name] = LandmarkPosition(k=k, z_mm=z, confidence=confidence)
    return {
        volume: VolumeAnnotation(volume_id=volume, file=None,
                                 landmarks=MappingProxyType(landmarks))
        for volume, landmarks in per_volume.items()
    }


def _bpreg_table(header: list[str], rows: list[list[Any]], where: str
                 ) -> dict[str, VolumeAnnotation]:
    names = [str(h).strip() if h is not None else "" for h in header]
    if _BPREG_INDEX not in names:
        raise InputError(f"{where}: no '{_BPREG_INDEX}' column; expected bpreg's landmark table")
    index = names.index(_BPREG_INDEX)
    result: dict[str, VolumeAnnotation] = {}
    for line, row in enumerate(rows, start=2):
        cells = list(row) + [None] * (len(names) - len(row))
        filename = cells[index]
        if filename is None or not str(filename).strip():
            continue
        volume = volume_id_from_path(str(filename).strip())
        landmarks = {}
        for column, (name, value) in enumerate(zip(names, cells, strict=False)):
            if column == index or not name:
                continue
            k = _number(value, f"{where}:{line} {name}")
            if k is not None:
                landmarks[name] = LandmarkPosition(k=k)
        result[volume] = VolumeAnnotation(volume_id=volume, file=None,
                                          landmarks=MappingProxyType(landmarks))
    return result


def read_landmarks_bpreg(path: str | Path, *, sheet: str | None = None
                         ) -> dict[str, VolumeAnnotation]:
    """Read bpreg's landmark table (``.xlsx`` or CSV; layout in the module docstring).

    Parameters
    ----------
    path : path-like
    sheet : str, optional
        Worksheet of an ``.xlsx`` (e.g. ``"landmarks-test"``); default every sheet whose name
        starts with ``landmarks`` (or the first sheet), later sheets overriding earlier ones.
    """
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                table = list(csv.reader(handle))
        except OSError as exc:
            raise InputError(f"{path}: cannot read landmark file ({exc.strerror})") from exc
        if not table:
            raise InputError(f"{path}: empty landmark table")
        return _bpreg_table(table[0], [list(r) for r in table[1:]], str(path))
    try:
        openpyxl = importlib.import_module("openpyxl")
    except ImportError as exc:
        raise InputError(f"{path}: reading .xlsx needs openpyxl; pip install openpyxl "
                         "or save the sheet as CSV") from exc
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the workbook ({exc})") from exc
    names = [sheet] if sheet else (
        [n for n in book.sheetnames if n.lower().startswith("landmarks")] or book.sheetnames[:1])
    result: dict[str, VolumeAnnotation] = {}
    for name in names:
        if name not in book.sheetnames:
            raise InputError(f"{path}: no sheet {name!r}; sheets are {book.sheetnames}")
        rows = [list(r) for r in book[name].iter_rows(values_only=True)]
        if rows:
            result.update(_bpreg_table(rows[0], rows[1:], f"{path}[{name}]"))
    return result


def _is_bpreg_csv(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except OSError:
        return False
    columns = {h.strip() for h in header}
    return _BPREG_INDEX in columns and "volume" not in columns


def read_landmarks(path: str | Path) -> dict[str, VolumeAnnotation]:
    """Read landmark annotations: JSON, our CSV, or bpreg's table (``.xlsx`` or a CSV with a
    ``filename`` column), by extension and header."""
    suffix = Path(path).suffix.lower()
    if suffix == ".xlsx":
        return read_landmarks_bpreg(path)
    if suffix == ".csv":
        if _is_bpreg_csv(Path(path)):
            return read_landmarks_bpreg(path)
        return read_landmarks_csv(path)
    return read_landmarks_json(path)


def read_landmark_files(paths: Iterable[str | os.PathLike[str]]
                        ) -> dict[str, VolumeAnnotation]:
    """:func:`read_landmarks` of several files, merged by volume id (a later file wins)."""
    annotations: dict[str, VolumeAnnotation] = {}
    for path in paths:
        annotations.update(read_landmarks(Path(path)))
    return annotations
