"""Turn raw slice scores of a volume into a :class:`~bodyscore.result.ScoreResult`.

The last step of inference (``DESIGN.md``): post-processing (thesis fig. 4.8), sanity checks
(sec. 4.3.3), body part dictionary and tag (sec. 4.3.1) are computed on the canonical slice order
(feet → head, as :class:`~bodyscore.volume.Volume` stores it), then every per-slice output is
reported in the input's own slice order (thesis table 4.7 keys).

"reverse z-ordering" therefore means: the image content runs head → feet while the geometry
(canonical z, feet → head) says otherwise — e.g. a header with a wrong slice direction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from bodyscore.errors import InputError
from bodyscore.postprocess import BOUNDARY_TOLERANCE, clean_scores
from bodyscore.result import ScoreResult
from bodyscore.settings import InferenceSettings
from bodyscore.usecases.bodypart import (
    BODY_REGION_BOUNDARIES,
    DISTINCT_BODY_PARTS,
    SHORT_VOLUME_MM,
    TAG_LANDMARKS,
    body_part_examined,
    body_part_examined_tag,
    missing_landmarks,
    tag_min_present,
)
from bodyscore.usecases.sanity import check_sanity
from bodyscore.volume import Volume, VolumeGeometry

__all__ = ["RawScores", "assemble_result", "settings_description"]

logger = logging.getLogger(__name__)

#: Header fields copied into ``ScoreResult.input`` when the reader put them into ``Volume.meta``.
_INPUT_META_KEYS = (
    "format",
    "modality",
    "series_instance_uid",
    "study_instance_uid",
    "body_part_examined",
    "manufacturer",
    "slice_thickness_mm",
    "gantry_tilt_deg",
)


class RawScores(Protocol):
    """Network output for the slices of a volume, in canonical (feet → head) order."""

    @property
    def raw(self) -> np.ndarray:
        """Raw scores, shape (n,), float64."""
        ...

    @property
    def empty(self) -> np.ndarray:
        """True for all-air slices, shape (n,), bool."""
        ...


def _json_safe(value: Any) -> Any:
    """JSON-ready copy of a header value, or None when it has no JSON form."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return str(value)


def _input_description(volume: Volume | VolumeGeometry) -> dict[str, Any]:
    meta = volume.meta
    info: dict[str, Any] = {
        "source": volume.source,
        "format": meta.get("format"),
        "shape_zyx": list(volume.shape),
        "spacing_mm_zyx": list(volume.spacing_mm),
        "series_instance_uid": meta.get("series_instance_uid"),
        "body_part_examined": meta.get("body_part_examined"),
        "uniform_z_spacing": volume.has_uniform_spacing,
        "z_extent_mm": volume.z_extent_mm,
    }
    for key in _INPUT_META_KEYS:
        if key in meta:
            info[key] = meta[key]
    return {key: _json_safe(value) for key, value in info.items()}


def settings_description(settings: InferenceSettings) -> dict[str, Any]:
    """The ``"settings"`` entry of a result: every value used, bpreg's layout, no NaN.

    Keys ``"slice score processing"``, ``"body part examined dict"`` (region → [start, end]
    landmark, None = unbounded) and ``"body part examined tag"`` as bpreg (§3.9), plus the
    bodyscore-only values (calibration knots, s0, thresholds in mm).
    """
    return {
        "slice score processing": {
            "transform_min": settings.transform_min,
            "transform_max": settings.transform_max,
            "slope_mean": settings.slope_mean,
            "tangential_slope_min": settings.tangential_slope_min,
            "tangential_slope_max": settings.tangential_slope_max,
            "r_slope_threshold": settings.r_slope_threshold,
            "spacing_check_min_extent_mm": settings.spacing_check_min_extent_mm,
            "smoothing_sigma": settings.smoothing_sigma_mm,
            "background_scores": list(settings.background_scores),
            "empty_slice_score": settings.empty_slice_score,
            "calibration": [list(knot) for knot in settings.calibration],
            "boundary_tolerance": BOUNDARY_TOLERANCE,
            "start_landmark": settings.start_landmark,
            "end_landmark": settings.end_landmark,
        },
        "body part examined dict": {
            region: [start, end] for region, (start, end) in BODY_REGION_BOUNDARIES.items()
        },
        "body part examined tag": {
            "body parts included": {k: list(v) for k, v in TAG_LANDMARKS.items()},
            "distinct body parts": {k: list(v) for k, v in DISTINCT_BODY_PARTS.items()},
            "min present landmarks": tag_min_present(settings.tag_min_present_landmarks),
            "short volume mm": SHORT_VOLUME_MM,
        },
    }


def _lookup_table(settings: InferenceSettings) -> dict[str, dict[str, float | None]]:
    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        k: {"mean": finite(v.mean), "std": finite(v.std)} for k, v in settings.lookup_table.items()
    }


def _to_input_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Position ``order[k]`` gets canonical value ``k``."""
    out = np.empty_like(values)
    out[order] = values
    return out


def assemble_result(
    *,
    raw_scores: RawScores,
    volume: Volume | VolumeGeometry,
    settings: InferenceSettings,
    model_info: Mapping[str, Any],
    empty_mask: np.ndarray | None = None,
) -> ScoreResult:
    """Post-process raw scores and build the volume's :class:`ScoreResult`.

    Parameters
    ----------
    raw_scores : RawScores
        ``.raw`` (n,) float64 and ``.empty`` (n,) bool, canonical order (as ``volume.array``).
    volume : Volume or VolumeGeometry
        The scored volume (canonical) or its geometry; gives z positions, spacing, slice
        order and metadata.
    settings : InferenceSettings
        The model's inference settings.
    model_info : mapping
        Model identification written to ``ScoreResult.model`` (name, version, sha256, ...).
    empty_mask : numpy.ndarray of bool, shape (n,), optional
        Extra empty-slice mask (canonical order), combined with ``raw_scores.empty``.

    Returns
    -------
    ScoreResult
        Per-slice lists and dictionary indices in the input's own slice order; ``"z"`` of input
        slice ``i`` is its canonical position in mm.
    """
    n = volume.n_slices
    raw = np.asarray(raw_scores.raw, dtype=np.float64).ravel()
    empty = np.asarray(raw_scores.empty, dtype=bool).ravel()
    if raw.shape != (n,) or empty.shape != (n,):
        raise InputError(
            f"{volume.source}: got {raw.size} raw scores and {empty.size} empty flags for "
            f"{n} slices; score every slice of the volume"
        )
    if empty_mask is not None:
        extra = np.asarray(empty_mask, dtype=bool).ravel()
        if extra.shape != (n,):
            raise InputError(f"{volume.source}: empty_mask has {extra.size} entries for {n} slices")
        empty = empty | extra
    warnings = list(volume.warnings)
    if not np.all(np.isfinite(raw)):
        warnings.append(
            f"{int(np.count_nonzero(~np.isfinite(raw)))} slice(s) got a non-finite raw score "
            "and were treated as missing"
        )
    z = volume.z_mm
    dz = float(volume.spacing_mm[0])

    cleaned = clean_scores(raw, z_mm=z, settings=settings, empty_mask=empty)
    checks = check_sanity(
        cleaned.cleaned,
        z_mm=z,
        z_spacing_mm=dz,
        slope_mean=settings.slope_mean,
        threshold=settings.r_slope_threshold,
        min_extent_mm=settings.spacing_check_min_extent_mm,
    )
    regions = body_part_examined(cleaned.cleaned, lookup_table=settings.lookup_table)
    tag = body_part_examined_tag(
        cleaned.cleaned,
        lookup_table=settings.lookup_table,
        z_extent_mm=volume.z_extent_mm,
        valid_z_spacing=checks.valid_z_spacing,
        min_present_landmarks=settings.tag_min_present_landmarks,
    )

    n_valid = int(np.count_nonzero(np.isfinite(cleaned.cleaned)))
    if n == 1:
        warnings.append("only 1 slice: slope and z-spacing checks undefined")
    elif bool(np.all(empty)):
        warnings.append("all slices empty: no slice scores")
    elif n_valid < 2:
        warnings.append(f"{n_valid} valid cleaned score(s): slope and z-spacing checks undefined")
    lacking = missing_landmarks(settings.lookup_table)
    if lacking:
        warnings.append(
            f"reference table lacks landmarks {list(lacking)}: body part rules using them skipped"
        )
    if checks.valid_z_spacing is False:
        warnings.append(
            f"score slope {checks.observed_slope:.4g}/mm deviates from the expected "
            f"{settings.slope_mean:.4g}/mm by more than {settings.r_slope_threshold:.0%}: "
            f"z-spacing {dz:g} mm looks wrong (expected about "
            f"{abs(checks.expected_z_spacing or math.nan):.3g} mm)"
        )
    if checks.reverse_z_ordering:
        warnings.append("scores decrease towards the head: the slice order looks reversed")

    order = volume.slice_order
    return ScoreResult(
        cleaned_scores=tuple(_to_input_order(cleaned.cleaned, order).tolist()),
        z_mm=tuple(_to_input_order(np.asarray(z, dtype=np.float64), order).tolist()),
        unprocessed_scores=tuple(_to_input_order(cleaned.unprocessed, order).tolist()),
        body_part_examined={
            region: tuple(sorted(int(order[k]) for k in indices))
            for region, indices in regions.items()
        },
        body_part_examined_tag=tag,
        lookup_table=_lookup_table(settings),
        reverse_z_ordering=checks.reverse_z_ordering,
        valid_z_spacing=checks.valid_z_spacing,
        expected_slope=settings.slope_mean,
        observed_slope=checks.observed_slope,
        slope_ratio=checks.slope_ratio,
        expected_z_spacing=checks.expected_z_spacing,
        z_spacing=dz,
        settings=settings_description(settings),
        model=dict(model_info),
        input=_input_description(volume),
        warnings=tuple(warnings),
    )
