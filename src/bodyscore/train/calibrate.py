"""Calibration: from a trained network and annotated volumes to :class:`InferenceSettings`.

Thesis sec. 4.2 (reference table of landmark scores), sec. 4.3 (fig. 4.8; tangential slope
eq. 4.17 and its 0.5 %/99.5 % quantiles; mean slope m̄s of cleaned curves), sec. 5.2.

Steps (:func:`calibrate_from_curves`, pure numpy):

1. Raw landmark scores: each landmark's position is a fractional slice index k; its raw score
   is the linear interpolation of the raw score curve at k. Over all annotated volumes:
   mean and standard deviation (ddof = 0, as numpy/bpreg) → ``lookuptable_train_val.original``.
2. Start/end landmarks (``pelvis_start`` → 0, ``eyes_end`` → 100) must be annotated in at least
   ``min_annotations`` volumes. Our real CT set rarely contains them; the synthetic volumes of
   :mod:`bodyscore.synth` are always annotated and are part of the calibration set, so in
   practice these two table entries are estimated from the synthetic volumes.
3. Optional monotone piecewise-linear calibration to a published scale: knots (our raw mean,
   published transformed mean) for landmarks in both tables, sorted by the published value;
   the longest chain that increases strictly in both coordinates is kept (the fewest
   landmarks dropped; the start/end landmarks are kept whenever possible), so the map is
   strictly monotone.
4. Transformed table: means mapped by the transform (linear eq. 4.12, or the knots); the std
   scaled by the local slope of the transform — linear: std · 100/(max − min). Differs from
   bpreg: bpreg divides by ``max`` only (notes/bpreg-reference.md bug 4).
5. Tangential slopes (eq. 4.17) of transformed + smoothed (σ = 10 mm) curves, all slices of all
   volumes: quantiles 0.5 % / 99.5 % and mean.
6. Slopes of the cleaned curves (fig. 4.8 steps 1–4, :func:`bodyscore.postprocess.clean_scores`)
   versus z: mean, std, median over volumes → the sanity-check slope m̄s. Ours: when at least
   ``min_real_for_slope`` real volumes with two or more annotated landmarks are calibrated,
   only they count. Synthetic bodies have their own proportions, and a crop or a legs-only
   volume has nothing pinning its scale. Measured on the default model (2026-11-23): over all
   60 volumes m̄s was 0.104 score/mm, over the 20 real ones 0.0996 (crops, the 38 mm slab and
   the legs pull it down: 0.011–0.043); over the 15 real volumes with ≥ 2 landmarks 0.119,
   the published model's 0.1194. With the low values, correctly scanned chest and head volumes
   failed the z-spacing check (γ̂ up to 1.44) and got the tag NONE.
7. Threshold θ of the z-spacing check, data-driven as the thesis prescribes (sec. 4.3.3: the
   threshold for which every validation volume passes): the largest γ̂ = |1 − |m_X| / m̄s| of
   the real calibration volumes whose cleaned scores span at least
   :data:`~bodyscore.usecases.sanity.MIN_SPACING_CHECK_EXTENT_MM`, rounded up to 0.01 (like
   bpreg's 0.28; without it the volume that sets θ passes or fails by float noise between the
   torch and ONNX backends), never below 0.28. The calibration volumes are training volumes,
   so this θ is fitted in-sample; the cross-validation measures how it carries. Shorter
   volumes also leave the check undefined at inference (``spacing_check_min_extent_mm``;
   bpreg decides on any length).
8. s0: the raw score of an all-air slice (all −1), measured on the model.

:func:`calibrate_model` scores the cached volumes with a torch model and calls the above.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import ModelError
from bodyscore.evaluate.metrics import EVALUATION_LANDMARKS
from bodyscore.postprocess import CleanedScores, clean_scores, smooth_scores, transform_scores
from bodyscore.settings import InferenceSettings, LandmarkStats
from bodyscore.train.data import is_synthetic
from bodyscore.usecases.sanity import (
    DEFAULT_SLOPE_THRESHOLD,
    MIN_SPACING_CHECK_EXTENT_MM,
    scored_extent_mm,
)

if TYPE_CHECKING:
    import torch

    from bodyscore.train.data import Manifest

__all__ = [
    "LANDMARK_ORDER",
    "ScoreCurve",
    "calibrate_from_curves",
    "calibrate_model",
    "calibrate_package",
    "calibration_knots",
    "landmark_raw_scores",
    "score_slices",
    "tangential_slopes",
]

logger = logging.getLogger(__name__)

#: bpreg's landmark order of ``lookuptable_train_val`` (notes/bpreg-reference.md §2).
LANDMARK_ORDER: tuple[str, ...] = (
    "pelvis_start", "femur_end", "pelvis_end", "kidney", "lung_start", "liver_end", "lung_end",
    "teeth", "nose", "eyes_end", "head_end", "L5", "L4", "L3", "L2", "L1", "Th12", "Th11",
    "Th10", "Th9", "Th8", "Th7", "Th6", "Th5", "Th4", "Th3", "Th2", "Th1", "C7", "C6", "C5",
    "C4", "C3", "C2", "C1",
)


@dataclass(frozen=True, eq=False)
class ScoreCurve:
    """Raw scores of every slice of one volume.

    Attributes
    ----------
    volume_id : str
    raw : numpy.ndarray, shape (n,)
        Raw network output per slice, canonical order (index 0 = most inferior).
    z_mm : numpy.ndarray, shape (n,)
        Slice positions, mm, increasing.
    landmarks : mapping of str to float
        Landmark → fractional slice index into ``raw``.
    empty_mask : numpy.ndarray of bool, shape (n,), optional
        True for all-air slices.
    """

    volume_id: str
    raw: np.ndarray
    z_mm: np.ndarray
    landmarks: Mapping[str, float] = field(default_factory=dict)
    empty_mask: np.ndarray | None = None


def landmark_raw_scores(curve: ScoreCurve) -> dict[str, float]:
    """Raw score at each landmark: linear interpolation of the curve at fractional k."""
    index = np.arange(curve.raw.size, dtype=float)
    return {
        name: float(np.interp(k, index, curve.raw))
        for name, k in curve.landmarks.items()
        if math.isfinite(k) and -0.5 <= k <= curve.raw.size - 0.5
    }


def _ordered(names: set[str]) -> list[str]:
    known = [n for n in LANDMARK_ORDER if n in names]
    return known + sorted(names - set(known))


def calibration_knots(ours: Mapping[str, float], published: Mapping[str, float], *,
                      required: Sequence[str] = ("pelvis_start", "eyes_end"),
                      candidates: Sequence[str] | None = EVALUATION_LANDMARKS,
                      ) -> tuple[tuple[float, float], ...]:
    """Knots (raw, published score) strictly increasing in both coordinates.

    The knot candidates are the ``candidates`` landmarks (default: the twelve evaluation
    landmarks of thesis table 4.3; None: every landmark) plus the ``required`` ones, when both
    mappings have them. They are sorted by the published score (then raw); the heaviest chain
    increasing strictly in both is kept (O(n²)), where each landmark weighs 1 and the
    ``required`` ones (the 0 and 100 anchors) outweigh all others together, so they are kept
    whenever they are mutually consistent.

    Why only twelve candidates (measured on the default model, 2026-11-23): with all 35
    landmarks the chain had 32 knots, several of them less than 0.02 raw units apart (L1 and
    lung_start, Th8 and Th9), giving map segments 20× steeper than the median, a look-up table
    whose standard deviations reached 38 score units, and C1 dropped because C2, C3 and teeth
    outvoted it — 4 score units off its published mean. Knots at the evaluation landmarks put
    each of them on its published mean and keep the map smooth between them.
    """
    allowed = None if candidates is None else set(candidates) | set(required)
    items = sorted((float(published[n]), float(ours[n]), n) for n in ours if n in published
                   and (allowed is None or n in allowed)
                   and math.isfinite(ours[n]) and math.isfinite(published[n]))
    n = len(items)
    if n == 0:
        return ()
    weight = [float(n + 1) if name in required else 1.0 for _, _, name in items]
    best = list(weight)
    previous = [-1] * n
    for i in range(n):
        for j in range(i):
            if (items[j][0] < items[i][0] and items[j][1] < items[i][1]
                    and best[j] + weight[i] > best[i]):
                best[i], previous[i] = best[j] + weight[i], j
    i = int(np.argmax(best))
    chain = []
    while i >= 0:
        chain.append(items[i])
        i = previous[i]
    return tuple((raw, score) for score, raw, _ in reversed(chain))


def _settings(original: Mapping[str, LandmarkStats], transformed: Mapping[str, LandmarkStats],
              *, start: str, end: str, knots: tuple[tuple[float, float], ...],
              **kwargs: Any) -> InferenceSettings:
    return InferenceSettings(
        lookup_table_original=MappingProxyType(dict(original)),
        lookup_table=MappingProxyType(dict(transformed)),
        start_landmark=start, end_landmark=end, calibration=knots, **kwargs,
    )


def _check_annotated(values: Mapping[str, Sequence[float]], names: Sequence[str],
                     min_annotations: int) -> None:
    for name in names:
        count = len(values.get(name, ()))
        if count < min_annotations:
            raise ModelError(
                f"calibration: landmark {name!r} annotated in {count} volume(s), need "
                f"{min_annotations}; add annotated (e.g. synthetic) volumes"
            )


def tangential_slopes(curves: Sequence[ScoreCurve], *, settings: InferenceSettings,
                      sigma_mm: float = 10.0) -> np.ndarray:
    """Tangential slopes m_t (eq. 4.17) of transformed, smoothed curves, all slices pooled.

    Empty slices are NaN; per curve the last slope is repeated (as bpreg). Returns the finite
    values, score units per mm.
    """
    pooled = []
    for curve in curves:
        raw = curve.raw if curve.empty_mask is None else np.where(curve.empty_mask, np.nan,
                                                                  curve.raw)
        smoothed = smooth_scores(transform_scores(raw, settings=settings), z_mm=curve.z_mm,
                                 sigma_mm=sigma_mm)
        if smoothed.size < 2:
            continue
        slopes = np.diff(smoothed) / np.diff(curve.z_mm)
        pooled.append(np.append(slopes, slopes[-1]))
    values = np.concatenate(pooled) if pooled else np.array([])
    return values[np.isfinite(values)]


def calibrate_from_curves(
    curves: Sequence[ScoreCurve],
    *,
    empty_slice_score: float | None = None,
    published: InferenceSettings | None = None,
    start_landmark: str = "pelvis_start",
    end_landmark: str = "eyes_end",
    smoothing_sigma_mm: float = 10.0,
    lower_quantile: float = 0.005,
    upper_quantile: float = 0.995,
    min_annotations: int = 1,
    min_real_for_slope: int = 5,
) -> InferenceSettings:
    """Inference settings from raw score curves with landmarks (module docstring, steps 1–6).

    Parameters
    ----------
    curves : sequence of ScoreCurve
        Curves of all calibration volumes; those without landmarks still feed the slope
        statistics.
    empty_slice_score : float, optional
        Raw score s0 of an all-air slice.
    published : InferenceSettings, optional
        A published model's settings; its transformed table gives the knots of a monotone
        piecewise-linear calibration (step 3).
    start_landmark, end_landmark : str
        Landmarks mapped to 0 and 100.
    smoothing_sigma_mm : float
        σ of the smoothing before the tangential slopes, mm.
    lower_quantile, upper_quantile : float
        Quantiles of the tangential slope distribution.
    min_annotations : int
        Volumes that must annotate the start and the end landmark.
    min_real_for_slope : int
        With at least this many real (non-synthetic) curves with >= 2 landmarks, the
        sanity-check slope statistics use only those (module docstring, step 6).

    Raises
    ------
    ModelError
        Start/end landmark missing, or the model's scores do not increase (slope ≤ 0).
    """
    landmark_scores = [landmark_raw_scores(curve) for curve in curves]
    values: dict[str, list[float]] = {}
    for scores in landmark_scores:
        for name, score in scores.items():
            values.setdefault(name, []).append(score)
    _check_annotated(values, (start_landmark, end_landmark), min_annotations)
    original = {n: LandmarkStats(float(np.mean(values[n])), float(np.std(values[n])))
                for n in _ordered(set(values))}
    lo, hi = original[start_landmark].mean, original[end_landmark].mean
    if not hi > lo:
        raise ModelError(
            f"calibration: raw score of {end_landmark} ({hi:.4g}) is not above {start_landmark} "
            f"({lo:.4g}); the model is not trained enough"
        )
    knots: tuple[tuple[float, float], ...] = ()
    if published is not None:
        knots = calibration_knots({n: s.mean for n, s in original.items()},
                                  {n: s.mean for n, s in published.lookup_table.items()},
                                  required=(start_landmark, end_landmark))
        if len(knots) < 2:
            logger.warning("calibration: fewer than 2 consistent landmarks shared with the "
                           "published table; using the linear transform")
            knots = ()
    provisional = _settings(original, original, start=start_landmark, end=end_landmark,
                            knots=knots, slope_mean=1.0, tangential_slope_min=-math.inf,
                            tangential_slope_max=math.inf)
    means = np.array([s.mean for s in original.values()])
    eps = 1e-6 * max(1.0, hi - lo)
    local_slope = (transform_scores(means + eps, settings=provisional)
                   - transform_scores(means - eps, settings=provisional)) / (2 * eps)
    mapped = transform_scores(means, settings=provisional)
    transformed = {n: LandmarkStats(float(m), float(s.std * g))
                   for (n, s), m, g in zip(original.items(), mapped, local_slope, strict=True)}

    all_slopes = tangential_slopes(curves, settings=provisional, sigma_mm=smoothing_sigma_mm)
    if all_slopes.size == 0:
        raise ModelError("calibration: no tangential slopes; give volumes with >= 2 slices")
    t_min, t_max = (float(q) for q in np.quantile(all_slopes, [lower_quantile, upper_quantile]))

    common = {
        "tangential_slope_min": t_min, "tangential_slope_max": t_max,
        "tangential_slope_mean": float(np.mean(all_slopes)),
        "smoothing_sigma_mm": smoothing_sigma_mm, "empty_slice_score": empty_slice_score,
        "lower_tangential_quantile": lower_quantile, "upper_tangential_quantile": upper_quantile,
    }
    stage = _settings(original, transformed, start=start_landmark, end=end_landmark,
                      knots=knots, slope_mean=1.0, **common)
    synthetic = [is_synthetic(c.volume_id) for c in curves]
    pinned = [i for i, (synth, scores) in enumerate(zip(synthetic, landmark_scores, strict=True))
              if not synth and len(scores) >= 2]
    slope_set = pinned if len(pinned) >= min_real_for_slope else list(range(len(curves)))
    threshold_set = [i for i, synth in enumerate(synthetic) if not synth] or list(
        range(len(curves)))
    cleaned = {i: clean_scores(curves[i].raw, z_mm=curves[i].z_mm, settings=stage,
                               empty_mask=curves[i].empty_mask)
               for i in sorted({*slope_set, *threshold_set})}
    slopes = [cleaned[i].slope for i in slope_set if math.isfinite(cleaned[i].slope)]
    if not slopes or float(np.mean(slopes)) <= 0:
        raise ModelError("calibration: the cleaned score curves do not increase along z "
                         "(mean slope <= 0); the model is not trained enough")
    slope_mean = float(np.mean(slopes))
    threshold = slope_threshold([cleaned[i] for i in threshold_set],
                                [curves[i].z_mm for i in threshold_set], slope_mean=slope_mean)
    return _settings(
        original, transformed, start=start_landmark, end=end_landmark, knots=knots,
        slope_mean=slope_mean, slope_std=float(np.std(slopes)),
        slope_median=float(np.median(slopes)), r_slope_threshold=threshold,
        spacing_check_min_extent_mm=MIN_SPACING_CHECK_EXTENT_MM, **common,
    )


def slope_threshold(cleaned: Sequence[CleanedScores], z_mm: Sequence[np.ndarray], *,
                    slope_mean: float, floor: float = DEFAULT_SLOPE_THRESHOLD) -> float:
    """θ of the z-spacing check from cleaned calibration curves (module docstring, step 7).

    Parameters
    ----------
    cleaned : sequence of CleanedScores
        Cleaned curves of the calibration volumes that count: the real ones (the synthetic
        ones only when there is no real one). Curves whose valid scores span less than
        :data:`~bodyscore.usecases.sanity.MIN_SPACING_CHECK_EXTENT_MM` are skipped.
    z_mm : sequence of numpy.ndarray
        Slice positions of each curve, mm.
    slope_mean : float
        m̄s, score units per mm.
    floor : float
        Smallest θ returned (bpreg's 0.28).

    Returns
    -------
    float
        max(floor, largest γ̂ among the counted curves rounded up to 0.01).
    """
    errors = [floor]
    for curve, z in zip(cleaned, z_mm, strict=True):
        long_enough = scored_extent_mm(curve.cleaned, z) >= MIN_SPACING_CHECK_EXTENT_MM
        if long_enough and math.isfinite(curve.slope):
            errors.append(abs(1.0 - abs(curve.slope) / slope_mean))
    return max(floor, math.ceil(100.0 * max(errors) - 1e-9) / 100.0)


def score_slices(model: torch.nn.Module, slices: np.ndarray, *, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Raw scores of preprocessed slices (n, H, W) or (n, 1, H, W); returns (n,) float64."""
    import torch

    array = np.asarray(slices)
    if array.ndim == 3:
        array = array[:, None]
    out = np.empty(array.shape[0], dtype=np.float64)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, array.shape[0], batch_size):
            batch = torch.from_numpy(np.asarray(array[start:start + batch_size],
                                                dtype=np.float32)).to(device)
            out[start:start + batch.shape[0]] = model(batch).reshape(-1).double().cpu().numpy()
    model.train(was_training)
    return out


def empty_slice_score(model: torch.nn.Module, *, size: int = 128,
                      device: str | torch.device = "cpu") -> float:
    """s0: raw score of an all-air slice (every pixel −1)."""
    return float(score_slices(model, np.full((1, size, size), -1.0, np.float32),
                              device=device)[0])


def calibrate_model(
    model: torch.nn.Module,
    manifest: Manifest,
    cache_dir: str | Path,
    *,
    published: InferenceSettings | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    include_synthetic: bool = True,
) -> InferenceSettings:
    """Score every slice of every cached volume and calibrate (module docstring).

    The annotated train and val volumes of the manifest are used (bpreg's ``train_val``
    table); the held-out ``"test"`` split never is, nor unlabelled volumes (their weak labels
    do not calibrate), nor synthetic volumes when ``include_synthetic`` is False (a model that
    learnt only their order).
    """
    curves = []
    for entry in manifest.volumes:
        synthetic = is_synthetic(entry.volume_id)
        if (entry.split == "test" or not entry.annotated
                or (synthetic and not include_synthetic)):
            continue
        array = np.load(Path(cache_dir) / entry.file, mmap_mode="r")
        raw = score_slices(model, array, batch_size=batch_size, device=device)
        empty = np.all(np.asarray(array, dtype=np.float32).reshape(len(array), -1) <= -0.999,
                       axis=1)
        curves.append(ScoreCurve(entry.volume_id, raw, np.asarray(entry.z_positions_mm),
                                 dict(entry.landmarks), empty))
    size = manifest.volumes[0].shape[-1] if manifest.volumes else 128
    return calibrate_from_curves(
        curves, empty_slice_score=empty_slice_score(model, size=size, device=device),
        published=published,
    )


def _annotated_curve(annotation: Any, model: Any, *, data_dirs: Sequence[Path]) -> ScoreCurve:
    """Read one annotated volume, score it with ``model`` and build its :class:`ScoreCurve`."""
    from bodyscore.inference import predict_raw_scores
    from bodyscore.io import read_volume
    from bodyscore.train.data import canonical_landmark_indices

    candidates = [annotation.file] if annotation.file is not None else []
    if annotation.file is not None:
        candidates += [d / annotation.file.name for d in data_dirs]
    path = next((p for p in candidates if p is not None and Path(p).exists()), None)
    if path is None:
        raise ModelError(
            f"calibration: image of annotated volume {annotation.volume_id!r} not found "
            f"(looked for {[str(c) for c in candidates]}); pass --data FOLDER"
        )
    volume = read_volume(path)
    raw = predict_raw_scores(volume, model)
    landmarks = canonical_landmark_indices(annotation, volume)
    return ScoreCurve(annotation.volume_id, raw.raw, np.asarray(volume.z_mm), landmarks,
                      raw.empty)


def calibrate_package(
    model_dir: str | Path,
    *,
    landmarks: Sequence[str | Path],
    data_dir: Sequence[str | Path] | None = None,
    published: str | Path | None = None,
) -> Path:
    """Re-calibrate a model package from annotated volumes and rewrite its settings file.

    Scores every volume named in the landmark files (:mod:`bodyscore.evaluate.landmarks`)
    with the package's network (any backend), runs :func:`calibrate_from_curves` and writes
    ``inference-settings.json`` in bpreg's format, atomically, into ``model_dir``. The
    package's tag rule (``tag_min_present_landmarks``) is kept.

    Parameters
    ----------
    model_dir : path
        A model package folder.
    landmarks : sequence of path
        Landmark annotation files (JSON or CSV).
    data_dir : sequence of path, optional
        Folders to look for the images in when the annotation's own path does not exist.
    published : path, optional
        A published ``inference-settings.json`` for the piecewise-linear calibration.

    Returns
    -------
    pathlib.Path
        The written settings file.
    """
    from bodyscore.evaluate.landmarks import read_landmark_files
    from bodyscore.export.atomic import atomic_write_text
    from bodyscore.model import load_model

    model = load_model(Path(model_dir))
    annotations = read_landmark_files(landmarks)
    # images are looked for in the given folders, then next to each landmark file
    dirs = [Path(d) for d in (data_dir or [])] + [Path(file).parent for file in landmarks]
    curves = [_annotated_curve(a, model, data_dirs=dirs) for a in annotations.values()]
    settings = calibrate_from_curves(
        curves,
        empty_slice_score=model.empty_slice_score(),
        published=None if published is None else InferenceSettings.from_file(published),
    )
    settings = dataclasses.replace(
        settings, tag_min_present_landmarks=dict(model.settings.tag_min_present_landmarks))
    import json

    target = Path(model_dir) / "inference-settings.json"
    atomic_write_text(target, json.dumps(settings.to_bpreg_dict(), indent=2, allow_nan=False))
    return target
