"""Evaluate a model on annotated volumes: predict (with a result cache), then compute the metrics.

:func:`evaluate_model_on` is the script-level entry point (volumes + landmark annotations →
:class:`EvaluationReport`); :func:`evaluate_folder` resolves a data folder and a landmark file
first. Metrics are those of :mod:`bodyscore.evaluate.metrics` (thesis sec. 4.2).

Pseudo-labels (thesis eq. 4.11) come by default from the model's own slice score reference
table (``inference-settings.json``, computed on its training set, as in the thesis);
``reference="data"`` averages the evaluated volumes instead (the thesis' fallback for BTCV,
sec. 5.1.4; optimistic, as the evaluation data then defines its own labels).

Cache: a scored volume is stored as ``<cache>/<model key>/<input sha256>.json`` (the
:class:`~bodyscore.result.ScoreResult` JSON). The model key hashes the weights' sha256, the
inference settings and the bodyscore version; input hashes are memoised by path, size and
mtime in ``<cache>/inputs.json``, so unchanged inputs are neither re-hashed nor re-scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bodyscore.errors import BodyscoreError, InputError, OutputError
from bodyscore.evaluate import metrics as m
from bodyscore.evaluate.landmarks import VolumeAnnotation, read_landmarks, volume_id_from_path
from bodyscore.export.atomic import atomic_write_text
from bodyscore.result import ScoreResult

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel

__all__ = [
    "EvaluationReport",
    "ResultCache",
    "VolumeEvaluation",
    "compare_reports",
    "evaluate_folder",
    "evaluate_model_on",
    "find_volume_files",
]

logger = logging.getLogger(__name__)

ScoreKind = Literal["unprocessed", "cleaned"]
ReferenceKind = Literal["model", "data"]

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


# -- result dataclasses --------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeEvaluation:
    """Per-volume numbers and the curve needed for plots.

    Attributes
    ----------
    volume_id : str
    source : str
        The scored file or folder.
    landmark_k : mapping of str to float
        Fractional slice index of each annotated landmark (canonical names).
    landmark_scores : mapping of str to float
        Predicted score at each landmark (0–100 scale).
    lmse, mae : float
        φ_i (eq. 4.13) and mean |error| over the counted landmarks; NaN if none.
    accuracy : float
        5-class accuracy of the volume (eq. 3.7 inner mean); NaN without labelled slices.
    n_class_slices : int
    r2 : float
        R² of score versus z (eq. 3.8); NaN if undefined.
    region_accuracy : float
        Per-slice accuracy of the annotated coarse regions; NaN without regions.
    n_region_slices : int
    tag : str
        The result's body part examined tag.
    z_mm, scores : tuple of float
        The evaluated curve (stored slice order; NaN where missing).
    """

    volume_id: str
    source: str
    landmark_k: Mapping[str, float]
    landmark_scores: Mapping[str, float]
    lmse: float
    mae: float
    accuracy: float
    n_class_slices: int
    r2: float
    region_accuracy: float
    n_region_slices: int
    tag: str
    z_mm: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()

    def to_dict(self, *, include_curve: bool = False) -> dict[str, Any]:
        """Strict-JSON form; the curve only when ``include_curve``."""
        out: dict[str, Any] = {
            "volume_id": self.volume_id,
            "source": self.source,
            "landmark_k": {k: _jf(v) for k, v in self.landmark_k.items()},
            "landmark_scores": {k: _jf(v) for k, v in self.landmark_scores.items()},
            "lmse": _jf(self.lmse),
            "mae": _jf(self.mae),
            "accuracy": _jf(self.accuracy),
            "n_class_slices": self.n_class_slices,
            "r2": _jf(self.r2),
            "region_accuracy": _jf(self.region_accuracy),
            "n_region_slices": self.n_region_slices,
            "tag": self.tag,
        }
        if include_curve:
            out["z_mm"] = [_jf(v) for v in self.z_mm]
            out["scores"] = [_jf(v) for v in self.scores]
        return out


@dataclass(frozen=True)
class EvaluationReport:
    """All metrics of one model on one annotated data set.

    Attributes
    ----------
    model : mapping
        Model identification (``ScoreModel.info``).
    score_kind : str
        ``"unprocessed"`` (network output on the 0–100 scale, default) or ``"cleaned"``.
    reference_kind : str
        ``"model"`` (the model's reference table) or ``"data"`` (eq. 4.11 on these volumes).
    reference : mapping of str to float
        Pseudo-labels s̄_l used (0–100 scale).
    d : float
        Normalisation constant (eq. 4.12) of ``reference``.
    landmarks : tuple of str or None
        Landmarks counted in the LMSE; None = all landmarks shared with the reference.
    lmse, mae, accuracy, r2, region_accuracy : MeanSE
        Dataset metrics (mean over volumes ± SE).
    per_landmark : tuple of LandmarkError
    volumes : tuple of VolumeEvaluation
    skipped : tuple of str
        One message per annotated volume that could not be evaluated.
    notes : tuple of str
        Caveats (e.g. classes the reference table cannot define).
    """

    model: Mapping[str, Any]
    score_kind: str
    reference_kind: str
    reference: Mapping[str, float]
    d: float
    landmarks: tuple[str, ...] | None
    lmse: m.MeanSE
    mae: m.MeanSE
    accuracy: m.MeanSE
    r2: m.MeanSE
    region_accuracy: m.MeanSE
    per_landmark: tuple[m.LandmarkError, ...]
    volumes: tuple[VolumeEvaluation, ...]
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """A short label of the model for tables and plots."""
        return str(self.model.get("name") or "model")

    def to_dict(self, *, include_curves: bool = False) -> dict[str, Any]:
        """Strict-JSON form (no NaN/inf; ``json.dumps(..., allow_nan=False)`` works)."""
        return {
            "model": _json_safe(dict(self.model)),
            "score_kind": self.score_kind,
            "reference_kind": self.reference_kind,
            "reference": {k: _jf(v) for k, v in self.reference.items()},
            "d": _jf(self.d),
            "landmarks": None if self.landmarks is None else list(self.landmarks),
            "metrics": {
                "lmse": self.lmse.to_dict(),
                "mae": self.mae.to_dict(),
                "accuracy_5class": self.accuracy.to_dict(),
                "r2": self.r2.to_dict(),
                "region_accuracy": self.region_accuracy.to_dict(),
            },
            "per_landmark": [e.to_dict() for e in self.per_landmark],
            "volumes": [v.to_dict(include_curve=include_curves) for v in self.volumes],
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }

    def to_json(self, *, indent: int | None = 2, include_curves: bool = False) -> str:
        """Strict JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(include_curves=include_curves), indent=indent,
                          allow_nan=False)


def _jf(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return _jf(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def compare_reports(x: EvaluationReport, y: EvaluationReport, *, alpha: float = 0.05) -> m.ZTest:
    """z-test of the LMSEs of two reports (eq. 4.16); negative t = x has the lower LMSE."""
    return m.z_test(x.lmse, y.lmse, alpha=alpha)


# -- cache ---------------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ResultCache:
    """ScoreResults keyed by input content and model (see module docstring).

    Parameters
    ----------
    folder : path-like
        Created on first write.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._index_path = self.folder / "inputs.json"
        self._index: dict[str, dict[str, Any]] | None = None

    def _load_index(self) -> dict[str, dict[str, Any]]:
        if self._index is None:
            try:
                data = json.loads(self._index_path.read_text(encoding="utf-8"))
                self._index = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._index = {}
        return self._index

    def input_digest(self, source: str | os.PathLike[str]) -> str:
        """sha256 of a file (or of a folder's files, by relative name), memoised by size+mtime."""
        path = Path(source).resolve()
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        if not files:
            raise InputError(f"{path}: no such file or folder; check --data")
        index = self._load_index()
        parts = []
        changed = False
        for file in files:
            stat = file.stat()
            key = str(file)
            entry = index.get(key)
            if not (entry and entry.get("size") == stat.st_size
                    and entry.get("mtime_ns") == stat.st_mtime_ns):
                entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                         "sha256": _sha256_file(file)}
                index[key] = entry
                changed = True
            rel = "" if file == path else str(file.relative_to(path))
            parts.append(f"{rel}\0{entry['sha256']}")
        if changed:
            try:
                atomic_write_text(self._index_path, json.dumps(index, indent=0))
            except OutputError as exc:
                logger.warning("result cache: %s", exc)
        if len(parts) == 1 and path.is_file():
            return str(index[str(path)]["sha256"])
        return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()

    def _entry(self, model_key: str, digest: str) -> Path:
        return self.folder / model_key[:24] / f"{digest}.json"

    def get(self, model_key: str, digest: str) -> ScoreResult | None:
        """The cached result, or None (also for an unreadable entry, which is logged)."""
        path = self._entry(model_key, digest)
        if not path.is_file():
            return None
        try:
            return ScoreResult.from_json(path)
        except (BodyscoreError, OSError, ValueError) as exc:
            logger.warning("result cache: ignoring unreadable %s (%s)", path, exc)
            return None

    def put(self, model_key: str, digest: str, result: ScoreResult) -> None:
        """Store a result (atomic write); a failing write is logged, not raised."""
        try:
            atomic_write_text(self._entry(model_key, digest), result.to_json(indent=None))
        except OutputError as exc:
            logger.warning("result cache: %s", exc)


def model_key(model: ScoreModel) -> str:
    """Hash of the model weights' sha256, its inference settings and the bodyscore version."""
    from bodyscore import __version__

    settings = json.dumps(model.settings.to_bpreg_dict(), sort_keys=True, default=str)
    text = f"{model.info.get('sha256')}\n{settings}\n{__version__}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- evaluation ----------------------------------------------------------------------------------
def find_volume_files(
    data_dir: str | os.PathLike[str], annotations: Mapping[str, VolumeAnnotation]
) -> dict[str, Path]:
    """Image file (or DICOM folder) of each annotated volume in ``data_dir``.

    A volume is found by the name of its annotation's ``file`` entry, else by its id plus an
    image suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``), else as a sub-folder
    named like the id (DICOM). Volumes not found are left out (see :func:`evaluate_folder`).
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give the folder with the annotated volumes")
    found: dict[str, Path] = {}
    for volume_id, annotation in annotations.items():
        candidates = []
        if annotation.file is not None:
            candidates.append(folder / annotation.file.name)
        candidates += [folder / f"{volume_id}{suffix}" for suffix in _IMAGE_SUFFIXES]
        candidates.append(folder / volume_id)
        for candidate in candidates:
            if candidate.exists():
                found[volume_id] = candidate
                break
    return found


def _resolve_model(model: ScoreModel | str | os.PathLike[str]) -> ScoreModel:
    from bodyscore.model.backends import ScoreModel
    from bodyscore.model.registry import load_model

    return model if isinstance(model, ScoreModel) else load_model(model)


def _predict(source: Path, model: ScoreModel, key: str, cache: ResultCache | None,
             batch_size: int) -> ScoreResult:
    from bodyscore.inference import predict

    digest = cache.input_digest(source) if cache is not None else ""
    if cache is not None:
        cached = cache.get(key, digest)
        if cached is not None:
            logger.info("%s: cached result", source)
            return cached
    result = predict(source, model, batch_size=batch_size)
    if cache is not None:
        cache.put(key, digest, result)
    return result


def _curve(result: ScoreResult, score_kind: str) -> np.ndarray:
    return result.cleaned if score_kind == "cleaned" else result.unprocessed


def _landmark_positions(annotation: VolumeAnnotation, z: np.ndarray) -> dict[str, float]:
    out = {}
    for name, position in annotation.landmarks.items():
        k = position.fractional_index(z)
        if math.isfinite(k):
            out[m.canonical_landmark_name(name)] = k
    return out


def evaluate_model_on(
    model: ScoreModel | str | os.PathLike[str],
    annotations: Mapping[str, VolumeAnnotation],
    *,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    landmarks: Sequence[str] | None = m.EVALUATION_LANDMARKS,
    reference: ReferenceKind | Mapping[str, float] = "model",
    score_kind: ScoreKind = "unprocessed",
    batch_size: int = 64,
    results: Mapping[str, ScoreResult] | None = None,
) -> EvaluationReport:
    """Score annotated volumes with a model and compute the thesis metrics (sec. 4.2).

    Parameters
    ----------
    model : ScoreModel, str or path-like
        Loaded model, registry name or package folder.
    annotations : mapping of str to VolumeAnnotation
        Landmark annotations by volume id (:func:`bodyscore.evaluate.landmarks.read_landmarks`).
    files : mapping of str to path-like, optional
        Image file or DICOM folder per volume id; default the annotations' ``file``.
    cache_dir : path-like, optional
        Result cache folder; None disables caching.
    landmarks : sequence of str or None
        Landmarks counted in LMSE / MAE / per-landmark errors; default the twelve of thesis
        table 4.3; None = every landmark shared with the reference table.
    reference : "model", "data" or mapping
        Pseudo-labels s̄_l on the 0–100 scale: the model's table, the mean over these volumes
        (eq. 4.11), or an explicit table.
    score_kind : "unprocessed" or "cleaned"
        Which curve of the result is evaluated (both on the 0–100 scale).
    batch_size : int
    results : mapping of str to ScoreResult, optional
        Precomputed results by volume id (skips prediction for those).

    Returns
    -------
    EvaluationReport

    Raises
    ------
    InputError
        When no volume could be evaluated or d cannot be computed from the reference.
    """
    if score_kind not in ("unprocessed", "cleaned"):
        raise InputError(f"score_kind={score_kind!r}: use 'unprocessed' or 'cleaned'")
    loaded = _resolve_model(model)
    cache = ResultCache(cache_dir) if cache_dir is not None else None
    scored, skipped = _score_all(loaded, annotations, files=files, cache=cache,
                                 batch_size=batch_size, results=results)
    curves = [_Scored(volume_id, source, annotation, result, score_kind)
              for volume_id, source, annotation, result in scored]
    ref, reference_kind, notes = _reference(reference, loaded, curves)
    d = m.normalization_constant(ref)
    names = None if landmarks is None else tuple(m.canonical_landmark_name(n) for n in landmarks)
    if names is not None:
        absent = [n for n in names if n not in ref]
        if absent:
            notes.append(f"reference table has no score for {', '.join(absent)}: not counted")
    undefined = [c for c, s, e in m.CLASS_BOUNDARIES if s not in ref or e not in ref]
    if undefined:
        notes.append(f"5-class accuracy: classes {', '.join(undefined)} undefined (reference "
                     "table lacks their boundary landmarks)")
    volumes = [c.evaluate(ref, d, names) for c in curves]
    return EvaluationReport(
        model=MappingProxyType(dict(loaded.info)),
        score_kind=score_kind,
        reference_kind=reference_kind,
        reference=MappingProxyType(ref),
        d=d,
        landmarks=names,
        lmse=m.mean_with_se(v.lmse for v in volumes),
        mae=m.mean_with_se(v.mae for v in volumes),
        accuracy=m.dataset_accuracy(v.accuracy for v in volumes),
        r2=m.mean_with_se(v.r2 for v in volumes),
        region_accuracy=m.mean_with_se(v.region_accuracy for v in volumes),
        per_landmark=m.per_landmark_errors([v.landmark_scores for v in volumes], ref, d=d,
                                           landmarks=names),
        volumes=tuple(volumes),
        skipped=tuple(skipped),
        notes=tuple(notes),
    )


def _score_all(
    model: ScoreModel,
    annotations: Mapping[str, VolumeAnnotation],
    *,
    files: Mapping[str, str | os.PathLike[str]] | None,
    cache: ResultCache | None,
    batch_size: int,
    results: Mapping[str, ScoreResult] | None,
) -> tuple[list[tuple[str, str, VolumeAnnotation, ScoreResult]], list[str]]:
    """Score (or fetch from the cache) every annotated volume; messages for the failures."""
    key = model_key(model)
    skipped: list[str] = []
    scored: list[tuple[str, str, VolumeAnnotation, ScoreResult]] = []
    for volume_id, annotation in annotations.items():
        if results is not None and volume_id in results:
            scored.append((volume_id, "(given)", annotation, results[volume_id]))
            continue
        source = (files or {}).get(volume_id) or annotation.file
        if source is None or not Path(source).exists():
            skipped.append(f"{volume_id}: image not found ({source}); put it in the data folder")
            continue
        try:
            result = _predict(Path(source), model, key, cache, batch_size)
        except BodyscoreError as exc:
            skipped.append(f"{volume_id}: {exc}")
            logger.warning("%s: not evaluated (%s)", volume_id, exc)
            continue
        scored.append((volume_id, str(source), annotation, result))
    if not scored:
        raise InputError("evaluation: no annotated volume could be scored; " +
                         ("; ".join(skipped[:3]) or "the landmark file lists no volume"))
    return scored, skipped


class _Scored:
    """One scored volume: its curve, landmark positions and landmark scores."""

    def __init__(self, volume_id: str, source: str, annotation: VolumeAnnotation,
                 result: ScoreResult, score_kind: str) -> None:
        self.volume_id, self.source = volume_id, source
        self.annotation, self.result = annotation, result
        self.scores = _curve(result, score_kind)
        self.k = _landmark_positions(annotation, result.z)
        self.landmark_scores = m.landmark_scores(self.scores, self.k)

    def evaluate(self, ref: Mapping[str, float], d: float,
                 names: tuple[str, ...] | None) -> VolumeEvaluation:
        scores, annotation, result = self.scores, self.annotation, self.result
        truth = m.ground_truth_classes(scores.size, self.k)
        region_truth = m.region_truth_per_slice(
            scores.size, [(r.k_first, r.k_last, r.label) for r in annotation.regions])
        sq = m.squared_errors(self.landmark_scores, ref, d=d, landmarks=names)
        ab = m.landmark_abs_errors(self.landmark_scores, ref, d=d, landmarks=names)
        return VolumeEvaluation(
            volume_id=self.volume_id,
            source=self.source,
            landmark_k=MappingProxyType(self.k),
            landmark_scores=MappingProxyType(self.landmark_scores),
            lmse=float(np.mean(list(sq.values()))) if sq else math.nan,
            mae=float(np.mean(list(ab.values()))) if ab else math.nan,
            accuracy=m.class_accuracy(truth, m.predicted_classes(scores, ref)),
            n_class_slices=int((truth >= 0).sum()),
            r2=m.r_squared(scores, result.z),
            region_accuracy=m.region_accuracy(region_truth, result.body_part_examined),
            n_region_slices=sum(label is not None for label in region_truth),
            tag=result.body_part_examined_tag,
            z_mm=tuple(float(v) for v in result.z),
            scores=tuple(float(v) for v in scores),
        )


def _reference(reference: ReferenceKind | Mapping[str, float], model: ScoreModel,
               curves: Sequence[_Scored]) -> tuple[dict[str, float], str, list[str]]:
    """Pseudo-labels, their kind and notes (eq. 4.11)."""
    if isinstance(reference, Mapping):
        return m.canonical_table(reference), "given", []
    if reference == "data":
        return (m.reference_table([c.landmark_scores for c in curves]), "data",
                ["pseudo-labels computed on the evaluated volumes themselves (optimistic)"])
    if reference == "model":
        table = {n: s.mean for n, s in model.settings.lookup_table.items()}
        return m.canonical_table(table), "model", []
    raise InputError(f"reference={reference!r}: use 'model', 'data' or a mapping")


def evaluate_folder(
    model: ScoreModel | str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    landmarks_file: str | os.PathLike[str],
    **kwargs: Any,
) -> EvaluationReport:
    """:func:`evaluate_model_on` for the volumes of ``data_dir`` annotated in ``landmarks_file``.

    ``landmarks_file`` is any form :func:`~bodyscore.evaluate.landmarks.read_landmarks` reads
    (JSON, CSV, bpreg's table). Annotated volumes missing from ``data_dir`` are reported in
    ``EvaluationReport.skipped``; images without annotation are ignored.
    """
    annotations = read_landmarks(Path(landmarks_file))
    files = find_volume_files(data_dir, annotations)
    missing = [v for v in annotations if v not in files]
    for volume_id in missing:
        logger.info("%s: annotated but not found in %s", volume_id, data_dir)
    known = {volume_id_from_path(p) for p in files.values()}
    logger.debug("evaluating %d volumes: %s", len(known), sorted(known))
    return evaluate_model_on(model, annotations, files=files, **kwargs)
