"""The :class:`ScoreResult` of one volume and its strict-JSON form (thesis table 4.7).

The JSON keeps every one of bpreg's 14 keys with bpreg's names, so that code written for bpreg's
output reads ours, and adds ``schema_version``, ``model``, ``input`` and ``warnings``. Unlike bpreg
(``notes/bpreg-reference.md`` §3.9, bug 1) the file is strict JSON: a missing value is ``null``,
never ``NaN``; booleans are JSON booleans, not 0.0/1.0.

Per-slice lists are in the **input's own slice order** (index i = slice i of the file as stored or
of the DICOM instances sorted by position); ``"z"`` gives each slice's position in mm along the
canonical feet→head axis, so the score-versus-z slope is positive for a correctly labelled volume
in any storage order.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from bodyscore.errors import InputError

__all__ = ["BPREG_KEYS", "SCHEMA_VERSION", "ScoreResult"]

SCHEMA_VERSION = "1.0"

#: bpreg's JSON keys, in bpreg's order (thesis table 4.7).
BPREG_KEYS: tuple[str, ...] = (
    "cleaned slice scores",
    "z",
    "unprocessed slice scores",
    "body part examined",
    "body part examined tag",
    "look-up table",
    "reverse z-ordering",
    "valid z-spacing",
    "expected slope",
    "observed slope",
    "slope ratio",
    "expected z-spacing",
    "z-spacing",
    "settings",
)

OptFloat = float | None


def _opt(value: Any) -> OptFloat:
    """Float or None for NaN/None/inf."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _opt_tuple(values: Sequence[Any] | np.ndarray) -> tuple[OptFloat, ...]:
    return tuple(_opt(v) for v in np.asarray(values, dtype=np.float64).tolist())


def _freeze(obj: Any) -> Any:
    """Recursively turn dicts into read-only mappings and lists into tuples; NaN → None."""
    if isinstance(obj, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return tuple(_freeze(v) for v in obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _opt(obj)
    return obj


def _thaw(obj: Any) -> Any:
    """Inverse of :func:`_freeze` for JSON output (mappings → dict, tuples → list)."""
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_thaw(v) for v in obj]
    return obj


@dataclass(frozen=True)
class ScoreResult:
    """Slice scores of one CT volume and everything derived from them.

    All per-slice sequences have one entry per input slice, in the input's own slice order.
    ``None`` marks a missing value (an empty slice filtered as s0, a removed tail, an undefined
    slope).

    Attributes
    ----------
    cleaned_scores : tuple of float or None
        Cleaned slice scores (thesis fig. 4.8: filter s0, transform, smooth, remove tails).
    z_mm : tuple of float
        Slice position in mm along the canonical feet→head axis.
    unprocessed_scores : tuple of float or None
        Network output linearly transformed to the 0–100 scale, before any cleaning.
    body_part_examined : mapping of str to tuple of int
        Body part examined dictionary (thesis eq. 4.18, table 4.6): region → slice indices.
    body_part_examined_tag : str
        Body part examined tag (thesis fig. 4.9), e.g. ``"CHEST-ABDOMEN"`` or ``"NONE"``.
    lookup_table : mapping
        Slice score reference table ``{landmark: {"mean": float, "std": float}}`` (0–100 scale).
    reverse_z_ordering : bool
        True when scores decrease towards the head (thesis sec. 4.3.3).
    valid_z_spacing : bool or None
        False when ``|1 - slope_ratio| > threshold`` (thesis eq. 4.19–4.20); None if undefined.
    expected_slope : float
        Expected slope m̄s of the score curve in score units per mm.
    observed_slope : float or None
        Slope m_X of a line fitted to cleaned scores versus z in score units per mm.
    slope_ratio : float or None
        |m_X| / m̄s (thesis eq. 4.19, absolute value as in bpreg).
    expected_z_spacing : float or None
        ẑ_X = m_X · z-spacing / m̄s in mm (thesis eq. 4.21).
    z_spacing : float
        Nominal slice spacing of the input in mm.
    settings : mapping
        Settings used to produce the result (post-processing, dictionary, tag rules).
    model : mapping
        Model identification: ``name``, ``version``, ``sha256`` (of the weights) and more.
    input : mapping
        Input description: ``source``, ``format``, ``shape_zyx``, ``spacing_mm_zyx``, UIDs, ...
    warnings : tuple of str
        Problems found on the way that did not prevent a result.
    schema_version : str
        Version of this JSON layout.
    """

    cleaned_scores: tuple[OptFloat, ...]
    z_mm: tuple[float, ...]
    unprocessed_scores: tuple[OptFloat, ...]
    body_part_examined: Mapping[str, tuple[int, ...]]
    body_part_examined_tag: str
    lookup_table: Mapping[str, Mapping[str, OptFloat]]
    reverse_z_ordering: bool
    valid_z_spacing: bool | None
    expected_slope: float
    observed_slope: OptFloat
    slope_ratio: OptFloat
    expected_z_spacing: OptFloat
    z_spacing: float
    settings: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    input: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        n = len(self.cleaned_scores)
        if len(self.unprocessed_scores) != n or len(self.z_mm) != n:
            raise ValueError(
                "ScoreResult: cleaned scores, unprocessed scores and z must have the same length "
                f"({n}, {len(self.unprocessed_scores)}, {len(self.z_mm)})"
            )
        set_ = object.__setattr__
        set_(self, "cleaned_scores", _opt_tuple(self.cleaned_scores))
        set_(self, "unprocessed_scores", _opt_tuple(self.unprocessed_scores))
        set_(self, "z_mm", tuple(float(v) for v in self.z_mm))
        set_(
            self,
            "body_part_examined",
            MappingProxyType(
                {str(k): tuple(int(i) for i in v) for k, v in self.body_part_examined.items()}
            ),
        )
        for name in ("lookup_table", "settings", "model", "input"):
            set_(self, name, _freeze(getattr(self, name)))
        for name in ("observed_slope", "slope_ratio", "expected_z_spacing"):
            set_(self, name, _opt(getattr(self, name)))
        set_(self, "expected_slope", float(self.expected_slope))
        set_(self, "z_spacing", float(self.z_spacing))
        set_(self, "reverse_z_ordering", bool(self.reverse_z_ordering))
        if self.valid_z_spacing is not None:
            set_(self, "valid_z_spacing", bool(self.valid_z_spacing))
        set_(self, "warnings", tuple(str(w) for w in self.warnings))

    # -- numpy views ----------------------------------------------------------------------------
    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return len(self.cleaned_scores)

    @property
    def cleaned(self) -> np.ndarray:
        """Cleaned scores as float64 array, shape (n,), NaN where missing."""
        return np.array([np.nan if v is None else v for v in self.cleaned_scores], dtype=float)

    @property
    def unprocessed(self) -> np.ndarray:
        """Unprocessed (transformed) scores as float64 array, shape (n,), NaN where missing."""
        return np.array([np.nan if v is None else v for v in self.unprocessed_scores], dtype=float)

    @property
    def z(self) -> np.ndarray:
        """Slice positions in mm, shape (n,)."""
        return np.asarray(self.z_mm, dtype=float)

    def region_of_slices(self) -> list[list[str]]:
        """For each slice, the body regions whose dictionary entry contains it."""
        out: list[list[str]] = [[] for _ in range(self.n_slices)]
        for region, indices in self.body_part_examined.items():
            for i in indices:
                out[i].append(region)
        return out

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict with bpreg's keys first, then ours (JSON-ready, no NaN)."""
        data: dict[str, Any] = {
            "cleaned slice scores": list(self.cleaned_scores),
            "z": list(self.z_mm),
            "unprocessed slice scores": list(self.unprocessed_scores),
            "body part examined": {k: list(v) for k, v in self.body_part_examined.items()},
            "body part examined tag": self.body_part_examined_tag,
            "look-up table": _thaw(self.lookup_table),
            "reverse z-ordering": self.reverse_z_ordering,
            "valid z-spacing": self.valid_z_spacing,
            "expected slope": self.expected_slope,
            "observed slope": self.observed_slope,
            "slope ratio": self.slope_ratio,
            "expected z-spacing": self.expected_z_spacing,
            "z-spacing": self.z_spacing,
            "settings": _thaw(self.settings),
            "schema_version": self.schema_version,
            "model": _thaw(self.model),
            "input": _thaw(self.input),
            "warnings": list(self.warnings),
        }
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        """Strict JSON text (``allow_nan=False``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreResult:
        """Build from :meth:`to_dict` output (or a bpreg JSON: NaN and 0/1 flags accepted)."""
        missing = [k for k in BPREG_KEYS if k not in data]
        if missing:
            raise InputError(f"result JSON lacks the keys {missing}")
        valid = data["valid z-spacing"]
        valid_flag = None if _opt(valid) is None else bool(valid)
        return cls(
            cleaned_scores=_opt_tuple(data["cleaned slice scores"]),
            z_mm=tuple(float(v) for v in data["z"]),
            unprocessed_scores=_opt_tuple(data["unprocessed slice scores"]),
            body_part_examined={
                k: tuple(int(i) for i in v) for k, v in data["body part examined"].items()
            },
            body_part_examined_tag=str(data["body part examined tag"]),
            lookup_table=data["look-up table"],
            reverse_z_ordering=bool(data["reverse z-ordering"]),
            valid_z_spacing=valid_flag,
            expected_slope=float(data["expected slope"]),
            observed_slope=data["observed slope"],
            slope_ratio=data["slope ratio"],
            expected_z_spacing=data["expected z-spacing"],
            z_spacing=float(data["z-spacing"]),
            settings=data.get("settings", {}),
            model=data.get("model", {}),
            input=data.get("input", {}),
            warnings=tuple(data.get("warnings", ())),
            schema_version=str(data.get("schema_version", SCHEMA_VERSION)),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ScoreResult:
        """Parse JSON text, or read a ``.json`` file when given a :class:`~pathlib.Path`."""
        if isinstance(text_or_path, Path):
            try:
                text = text_or_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"{text_or_path}: cannot read result file ({exc})") from exc
            where = str(text_or_path)
        else:
            text, where = text_or_path, "<json text>"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object")
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ScoreResult:
        """Copy with fields replaced (like :func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)
