"""Inference settings of a model: the slice score reference table and post-processing values.

Read from and written to bpreg's ``inference-settings.json`` layout (``notes/bpreg-reference.md``
§2, §3.2) so that bpreg model folders load unchanged. Thesis sec. 4.2 (reference table,
eq. 4.12), sec. 4.3 (fig. 4.8: s0, transform, smoothing σ = 10 mm, tangential-slope quantiles),
sec. 4.3.3 (expected slope m̄s, threshold θ = 0.28).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bodyscore.errors import ModelError

__all__ = ["BPREG_BACKGROUND_SCORES", "InferenceSettings", "LandmarkStats"]

#: bpreg's hard-coded raw "background" scores (``score_processing/scores.py`` L48-53).
BPREG_BACKGROUND_SCORES: tuple[float, ...] = (110.83, 6.14, 108.92, 6.22)


@dataclass(frozen=True)
class LandmarkStats:
    """Mean and standard deviation of one landmark's slice score."""

    mean: float
    std: float


LookupTable = Mapping[str, LandmarkStats]


def _table(raw: Mapping[str, Any], where: str) -> LookupTable:
    try:
        return MappingProxyType(
            {
                str(name): LandmarkStats(float(v["mean"]), float(v.get("std", math.nan)))
                for name, v in raw.items()
            }
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelError(f"{where}: malformed look-up table ({exc})") from exc


def _table_json(table: LookupTable) -> dict[str, dict[str, float | None]]:
    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {k: {"mean": num(v.mean), "std": num(v.std)} for k, v in table.items()}


@dataclass(frozen=True)
class InferenceSettings:
    """Everything post-processing needs from a model package.

    Attributes
    ----------
    lookup_table_original : mapping of str to LandmarkStats
        Landmark scores in raw network units (``lookuptable_train_val.original``).
    lookup_table : mapping of str to LandmarkStats
        Landmark scores on the 0–100 scale (``lookuptable_train_val.transformed``).
    slope_mean : float
        Expected slope m̄s of cleaned scores versus z, score units per mm.
    tangential_slope_min, tangential_slope_max : float
        Quantiles (0.5 %, 99.5 %) of the tangential slope m_t (eq. 4.17), score units per mm.
    start_landmark, end_landmark : str
        Landmarks mapped to 0 and 100 (``pelvis_start``, ``eyes_end``).
    smoothing_sigma_mm : float
        σ of the Gaussian smoothing along z (thesis: 10 mm).
    r_slope_threshold : float
        Threshold θ on the expected relative error γ̂ (thesis: 0.28).
    background_scores : tuple of float
        Raw scores treated as empty slices (bpreg compatibility; rounded to 2 decimals).
    empty_slice_score : float or None
        Raw score s0 of an empty (all-air) slice, measured for this model; None if unknown.
    calibration : tuple of (float, float), optional
        Knots ``(raw, score)`` of a monotone piecewise-linear map raw → 0–100 scale; when
        empty, the linear transform with transform_min/max is used (eq. 4.12).
    spacing_check_min_extent_mm : float
        The z-spacing check is decided only when the valid cleaned scores span at least this
        many mm (else undefined); 0 for bpreg folders (bpreg decides on any length), 100 for
        models bodyscore calibrates (:data:`bodyscore.usecases.sanity.MIN_SPACING_CHECK_EXTENT_MM`).
    tag_min_present_landmarks : mapping of str to int
        Per tag body part, how many of its landmarks must be present for the part to count as
        visible (thesis fig. 4.9); parts not listed keep bpreg's numbers
        (:data:`bodyscore.usecases.bodypart.TAG_MIN_PRESENT_LANDMARKS`). Empty for bpreg
        folders; bodyscore's default model sets ``{"ABDOMEN": 5}``.
    slope_std, slope_median, tangential_slope_mean : float
        Extra statistics kept for reference.
    extra : mapping
        Unknown keys of the file, written back unchanged.
    """

    lookup_table_original: LookupTable
    lookup_table: LookupTable
    slope_mean: float
    tangential_slope_min: float
    tangential_slope_max: float
    start_landmark: str = "pelvis_start"
    end_landmark: str = "eyes_end"
    smoothing_sigma_mm: float = 10.0
    r_slope_threshold: float = 0.28
    background_scores: tuple[float, ...] = ()
    empty_slice_score: float | None = None
    calibration: tuple[tuple[float, float], ...] = ()
    spacing_check_min_extent_mm: float = 0.0
    tag_min_present_landmarks: Mapping[str, int] = field(default_factory=dict)
    slope_std: float = math.nan
    slope_median: float = math.nan
    tangential_slope_mean: float = math.nan
    lower_tangential_quantile: float = 0.005
    upper_tangential_quantile: float = 0.995
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def transform_min(self) -> float:
        """Raw score mapped to 0: mean raw score of the start landmark."""
        return self.lookup_table_original[self.start_landmark].mean

    @property
    def transform_max(self) -> float:
        """Raw score mapped to 100: mean raw score of the end landmark."""
        return self.lookup_table_original[self.end_landmark].mean

    def __post_init__(self) -> None:
        for name in (self.start_landmark, self.end_landmark):
            if name not in self.lookup_table_original:
                raise ModelError(f"inference settings: look-up table has no landmark {name!r}")
        if not math.isfinite(self.transform_min) or not math.isfinite(self.transform_max):
            raise ModelError("inference settings: transform_min/max are not finite")
        if self.transform_max == self.transform_min:
            raise ModelError("inference settings: transform_min equals transform_max")
        if not (math.isfinite(self.slope_mean) and self.slope_mean > 0):
            raise ModelError(f"inference settings: slope_mean {self.slope_mean} must be > 0")
        knots = self.calibration
        if knots and any(b[0] <= a[0] or b[1] <= a[1] for a, b in itertools.pairwise(knots)):
            raise ModelError("inference settings: calibration knots must strictly increase")
        extent = self.spacing_check_min_extent_mm
        if not (math.isfinite(extent) and extent >= 0):
            raise ModelError(f"inference settings: spacing_check_min_extent_mm must be >= 0, "
                             f"got {extent}")
        from bodyscore.usecases.bodypart import tag_min_present

        try:
            tag_min_present(self.tag_min_present_landmarks)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"inference settings: tag_min_present_landmarks: {exc}") from exc

    # -- bpreg file format --------------------------------------------------------------------
    @classmethod
    def from_bpreg_dict(
        cls,
        data: Mapping[str, Any],
        *,
        where: str = "inference-settings.json",
        default_background: bool = True,
    ) -> InferenceSettings:
        """Parse bpreg's ``inference-settings.json`` content (plus bodyscore's optional keys).

        ``default_background`` applies bpreg's hard-coded background scores when the file does
        not list its own (files written by bpreg never do).
        """
        try:
            tables = data["lookuptable_train_val"]
            options = data.get("settings", {})
            known = {
                "lookuptable_train_val",
                "settings",
                "slope_mean",
                "slope_std",
                "slope_median",
                "tangential_slope_mean",
                "lower_quantile_tangential_slope",
                "upper_quantile_tangential_slope",
                "bodyscore",
            }
            ours = data.get("bodyscore", {})
            background = ours.get(
                "background_scores", BPREG_BACKGROUND_SCORES if default_background else ()
            )
            return cls(
                lookup_table_original=_table(tables["original"], where),
                lookup_table=_table(tables["transformed"], where),
                slope_mean=float(data["slope_mean"]),
                tangential_slope_min=float(data["lower_quantile_tangential_slope"]),
                tangential_slope_max=float(data["upper_quantile_tangential_slope"]),
                start_landmark=str(options.get("start-landmark", "pelvis_start")),
                end_landmark=str(options.get("end-landmark", "eyes_end")),
                smoothing_sigma_mm=float(ours.get("smoothing_sigma_mm", 10.0)),
                r_slope_threshold=float(ours.get("r_slope_threshold", 0.28)),
                background_scores=tuple(float(b) for b in background),
                empty_slice_score=(
                    None
                    if ours.get("empty_slice_score") is None
                    else float(ours["empty_slice_score"])
                ),
                calibration=tuple((float(a), float(b)) for a, b in ours.get("calibration", ())),
                spacing_check_min_extent_mm=float(ours.get("spacing_check_min_extent_mm", 0.0)),
                tag_min_present_landmarks=MappingProxyType(
                    {str(k): int(v) for k, v in ours.get("tag_min_present_landmarks", {}).items()}
                ),
                slope_std=float(data.get("slope_std", math.nan)),
                slope_median=float(data.get("slope_median", math.nan)),
                tangential_slope_mean=float(data.get("tangential_slope_mean", math.nan)),
                lower_tangential_quantile=float(options.get("lower_tangential_quantile", 0.005)),
                upper_tangential_quantile=float(options.get("upper_tangential_quantile", 0.995)),
                extra=MappingProxyType({k: v for k, v in data.items() if k not in known}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: not a valid inference settings file ({exc!r})") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> InferenceSettings:
        """Read an ``inference-settings.json`` file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: inference settings file not found") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: cannot read inference settings ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path}: inference settings must be a JSON object")
        return cls.from_bpreg_dict(data, where=str(path))

    def to_bpreg_dict(self) -> dict[str, Any]:
        """bpreg-compatible dict; bodyscore-only values go under the ``"bodyscore"`` key."""
        data: dict[str, Any] = dict(self.extra)
        data.update(
            {
                "slope_mean": self.slope_mean,
                "slope_median": self.slope_median if math.isfinite(self.slope_median) else None,
                "slope_std": self.slope_std if math.isfinite(self.slope_std) else None,
                "tangential_slope_mean": (
                    self.tangential_slope_mean
                    if math.isfinite(self.tangential_slope_mean)
                    else None
                ),
                "upper_quantile_tangential_slope": self.tangential_slope_max,
                "lower_quantile_tangential_slope": self.tangential_slope_min,
                "lookuptable_train_val": {
                    "original": _table_json(self.lookup_table_original),
                    "transformed": _table_json(self.lookup_table),
                },
                "settings": {
                    "upper_tangential_quantile": self.upper_tangential_quantile,
                    "lower_tangential_quantile": self.lower_tangential_quantile,
                    "start-landmark": self.start_landmark,
                    "end-landmark": self.end_landmark,
                },
                "bodyscore": {
                    "smoothing_sigma_mm": self.smoothing_sigma_mm,
                    "r_slope_threshold": self.r_slope_threshold,
                    "background_scores": list(self.background_scores),
                    "empty_slice_score": self.empty_slice_score,
                    "calibration": [list(k) for k in self.calibration],
                    "spacing_check_min_extent_mm": self.spacing_check_min_extent_mm,
                    **(
                        {"tag_min_present_landmarks": dict(self.tag_min_present_landmarks)}
                        if self.tag_min_present_landmarks
                        else {}
                    ),
                },
            }
        )
        return data
