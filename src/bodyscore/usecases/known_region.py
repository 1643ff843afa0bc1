"""A known region learnt once and stored: ``known-region.json`` (thesis sec. 4.3.2, 5.2.2).

The data-driven approach of sec. 4.3.2 scores an algorithm's training volumes once; the
``q_min`` quantile of their minimum cleaned scores and the ``q_max`` quantile of their maxima
are the known region [s_min, s_max] (sec. 5.2.2 used q_min = 25 %, q_max = 75 %). A
:class:`KnownRegion` keeps those bounds with the model that produced the scores, so that the
crop command, ``crop-dataset`` and the MONAI/TorchIO transforms reuse it and can tell when they
score with a different model (whose scores, and so whose bounds, differ).

File format (strict UTF-8 JSON, written atomically)::

    {"schema_version": "1.0", "kind": "bodyscore known region",
     "score_min": 12.3, "score_max": 58.9,          # null = unbounded (±inf)
     "method": "data-driven", "q_min": 0.25, "q_max": 0.75,
     "n_volumes": 41, "volumes": ["case_001", ...],
     "model": {"name": "default", "version": "...", "sha256": "..."}}
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bodyscore.errors import InputError
from bodyscore.result import ScoreResult
from bodyscore.usecases.crop import (
    CropBounds,
    bounds_from_landmarks,
    bounds_from_results,
    bounds_from_scores,
)

__all__ = [
    "KNOWN_REGION_KIND",
    "KnownRegion",
    "collect_results",
    "fit_known_region",
    "model_mismatch",
    "resolve_bounds",
]

logger = logging.getLogger(__name__)

KNOWN_REGION_KIND = "bodyscore known region"
_SCHEMA_VERSION = "1.0"
#: Model keys stored with a known region (the identity of the scores, not the backend).
_MODEL_KEYS = ("name", "version", "sha256")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class KnownRegion:
    """Score bounds of an algorithm's known region and where they come from.

    Attributes
    ----------
    bounds : CropBounds
        [s_min, s_max] on the 0–100 scale.
    model : mapping
        ``name``, ``version``, ``sha256`` of the model whose scores gave the bounds.
    method : str
        ``"data-driven"`` (fitted on volumes) or ``"manual"``.
    q_min, q_max : float or None
        Quantiles of the data-driven fit.
    volumes : tuple of str
        Names of the volumes the bounds were fitted on.
    """

    bounds: CropBounds
    model: Mapping[str, Any] = field(default_factory=dict)
    method: str = "data-driven"
    q_min: float | None = None
    q_max: float | None = None
    volumes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (±inf bounds as ``null``)."""
        return {
            "schema_version": _SCHEMA_VERSION,
            "kind": KNOWN_REGION_KIND,
            "score_min": _finite_or_none(self.bounds.score_min),
            "score_max": _finite_or_none(self.bounds.score_max),
            "method": self.method,
            "q_min": self.q_min,
            "q_max": self.q_max,
            "n_volumes": len(self.volumes),
            "volumes": list(self.volumes),
            "model": {k: self.model.get(k) for k in _MODEL_KEYS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> KnownRegion:
        """Parse :meth:`to_dict` output; raises :class:`InputError` naming ``source``."""
        if data.get("kind") != KNOWN_REGION_KIND:
            raise InputError(
                f"{source}: not a known-region file (no \"kind\": \"{KNOWN_REGION_KIND}\"); "
                "write one with 'bodyscore known-region fit'"
            )
        try:
            lo = -math.inf if data.get("score_min") is None else float(data["score_min"])
            hi = math.inf if data.get("score_max") is None else float(data["score_max"])
            q_min = None if data.get("q_min") is None else float(data["q_min"])
            q_max = None if data.get("q_max") is None else float(data["q_max"])
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: score_min/score_max/q_min/q_max must be numbers") from exc
        model = data.get("model") or {}
        if not isinstance(model, Mapping):
            raise InputError(f"{source}: \"model\" must be an object")
        return cls(
            bounds=CropBounds(lo, hi),
            model={k: model.get(k) for k in _MODEL_KEYS},
            method=str(data.get("method", "data-driven")),
            q_min=q_min,
            q_max=q_max,
            volumes=tuple(str(v) for v in data.get("volumes") or ()),
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the region as strict JSON, atomically; returns the path."""
        from bodyscore.export.atomic import atomic_write_text

        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        return atomic_write_text(path, text + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> KnownRegion:
        """Read a known-region file.

        Raises
        ------
        InputError
            Missing, unreadable, not JSON or not a known-region file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError(f"{path}: known-region file not found") from exc
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: a known-region file holds one JSON object")
        return cls.from_dict(data, source=str(path))


def model_mismatch(region: KnownRegion, model_info: Mapping[str, Any]) -> str | None:
    """Why ``model_info`` differs from the model that produced ``region``; None when the same.

    Models are the same when their weights' ``sha256`` agree (or, without hashes, their name and
    version).
    """
    stored = region.model
    if not any(stored.get(k) for k in _MODEL_KEYS):
        return None
    if stored.get("sha256") and model_info.get("sha256"):
        same = stored["sha256"] == model_info["sha256"]
    else:
        same = (stored.get("name"), stored.get("version")) == (
            model_info.get("name"),
            model_info.get("version"),
        )
    if same:
        return None
    return (
        f"the known region was fitted with model {stored.get('name')} {stored.get('version')}, "
        f"scores now come from {model_info.get('name')} {model_info.get('version')}; "
        "refit it with this model for exact bounds"
    )


def _model_of(results: Sequence[ScoreResult]) -> dict[str, Any]:
    identities = {tuple(r.model.get(k) for k in _MODEL_KEYS) for r in results}
    if len(identities) > 1:
        names = sorted(f"{n} {v}" for n, v, _ in identities)
        raise InputError(
            f"known region: the results come from {len(identities)} different models ({names}); "
            "fit on results of one model"
        )
    (identity,) = identities
    return dict(zip(_MODEL_KEYS, identity, strict=True))


def _result_files(folder: Path) -> list[Path]:
    """The result JSON files of a ``bodyscore predict`` / ``cohort run`` output folder."""
    files = sorted(folder.glob("*.json"))
    if not files:
        files = sorted(folder.glob("*.parts/*.json"))  # a cohort table's per-series files
    return [f for f in files if not f.name.endswith(".row.json")]


def collect_results(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: Any = None,
) -> tuple[list[ScoreResult], list[str], list[str]]:
    """Scores of an algorithm's training volumes: result files as they are, images scored.

    Parameters
    ----------
    inputs : sequence of path-like
        Result JSON files; folders of result JSON files (``bodyscore predict`` output, or a
        cohort table's ``.parts`` folder); image files; folders of images / DICOM series
        (found as ``bodyscore cohort run`` finds them).
    model : ScoreModel or str, optional
        Model that scores the images (default ``"default"``); result files keep their own.

    Returns
    -------
    results : list of ScoreResult
    names : list of str
        One name per result (its file).
    failures : list of str
        One line per input that could not be read or scored.
    """
    from bodyscore.cohort.runner import discover_jobs
    from bodyscore.errors import BodyscoreError
    from bodyscore.inference import predict

    results: list[ScoreResult] = []
    names: list[str] = []
    failures: list[str] = []
    to_score: list[tuple[str, str | None]] = []
    for item in (Path(i) for i in inputs):
        try:
            if item.is_file() and item.suffix.lower() == ".json":
                results.append(ScoreResult.from_json(item))
                names.append(str(item))
            elif item.is_dir() and (files := _result_files(item)):
                for file in files:
                    results.append(ScoreResult.from_json(file))
                    names.append(str(file))
            elif item.is_dir():
                to_score.extend((job.path, job.series_uid) for job in discover_jobs(item))
            else:
                to_score.append((str(item), None))
        except BodyscoreError as exc:
            failures.append(str(exc))
    for path, series_uid in to_score:
        try:
            results.append(predict(path, model, series_uid=series_uid))
            names.append(path if series_uid is None else f"{path} [series {series_uid}]")
        except BodyscoreError as exc:
            failures.append(str(exc))
    return results, names, failures


def fit_known_region(
    results: Sequence[ScoreResult],
    *,
    q_min: float = 0.25,
    q_max: float = 0.75,
    volumes: Sequence[str] | None = None,
) -> KnownRegion:
    """Data-driven known region of an algorithm's training volumes (thesis sec. 4.3.2).

    Parameters
    ----------
    results : sequence of ScoreResult
        Scores of the training volumes, all from one model.
    q_min, q_max : float
        Quantiles of the per-volume minima / maxima of the cleaned scores; the defaults are the
        thesis's choice for its nnU-Net experiment (sec. 5.2.2).
    volumes : sequence of str, optional
        Names of the volumes (default: each result's ``input.source``).

    Returns
    -------
    KnownRegion

    Raises
    ------
    InputError
        No result, results of several models, no valid score, or empty bounds.
    """
    if not results:
        raise InputError("known region: no scored volume given; give result files or images")
    names = (
        [str(r.input.get("source", "")) for r in results] if volumes is None else list(volumes)
    )
    return KnownRegion(
        bounds=bounds_from_results(results, q_min=q_min, q_max=q_max),
        model=_model_of(results),
        method="data-driven",
        q_min=float(q_min),
        q_max=float(q_max),
        volumes=tuple(names),
    )


def resolve_bounds(
    *,
    lookup_table: Mapping[str, Any],
    model_info: Mapping[str, Any] | None = None,
    region: str | None = None,
    landmarks: Sequence[str] | None = None,
    scores: tuple[float, float] | None = None,
    known_region: KnownRegion | str | os.PathLike[str] | None = None,
) -> CropBounds:
    """The known region given in exactly one of four ways (thesis sec. 4.3.2).

    Parameters
    ----------
    lookup_table : mapping
        The scoring model's reference table (for ``region`` and ``landmarks``).
    model_info : mapping, optional
        The scoring model's identity; a known region fitted with another model logs a warning.
    region : str, optional
        A region of table 4.6 (``"abdomen"``, ``"chest"``, ...).
    landmarks : sequence of str, optional
        Landmarks of the reference table spanning the region (``["L5", "Th8"]``).
    scores : (float, float), optional
        Score bounds (s_min, s_max).
    known_region : KnownRegion or path, optional
        A fitted region or its ``known-region.json``.

    Returns
    -------
    CropBounds

    Raises
    ------
    InputError
        None or more than one way given, or an invalid one.
    """
    given = [
        name
        for name, value in (
            ("region", region),
            ("landmarks", landmarks),
            ("scores", scores),
            ("known_region", known_region),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InputError(
            "known region: give exactly one of region, landmarks, scores or known_region "
            f"(got {given or 'none'})"
        )
    if region is not None:
        return bounds_from_landmarks([region], lookup_table=lookup_table)
    if landmarks is not None:
        return bounds_from_landmarks(landmarks, lookup_table=lookup_table)
    if scores is not None:
        return bounds_from_scores(*scores)
    assert known_region is not None
    fitted = (
        known_region if isinstance(known_region, KnownRegion) else KnownRegion.read(known_region)
    )
    if model_info is not None and (problem := model_mismatch(fitted, model_info)):
        logger.warning("%s", problem)
    return fitted.bounds
