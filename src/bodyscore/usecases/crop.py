"""Use case 2: known region cropping (thesis sec. 4.3.2, fig. 4.10).

An algorithm's *known region* is a score interval [s_min, s_max]. It is found either manually
from the reference table (:func:`bounds_from_landmarks`, e.g. femur_end … Th12 for a kidney
model) or data-driven from the algorithm's training volumes (:func:`bounds_from_results`). A
volume is then cropped to the slices whose cleaned score lies in the interval
(:func:`slices_in_bounds`), as a pre-processing step, or predictions outside it are discarded as a
post-processing step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.result import ScoreResult
from bodyscore.usecases.bodypart import BODY_REGION_BOUNDARIES, landmark_means

__all__ = [
    "CropBounds",
    "SliceRange",
    "bounds_from_landmarks",
    "bounds_from_results",
    "bounds_from_scores",
    "slices_in_bounds",
    "slices_in_scores",
]

logger = logging.getLogger(__name__)

#: Other spellings accepted for the regions of table 4.6.
_REGION_ALIASES = {
    "neck": "shoulder-neck",
    "neck-and-shoulder": "shoulder-neck",
    "shoulder_neck": "shoulder-neck",
    "leg": "legs",
}


@dataclass(frozen=True)
class CropBounds:
    """Known region [score_min, score_max] on the 0–100 scale (inclusive; ±inf allowed)."""

    score_min: float
    score_max: float

    def __post_init__(self) -> None:
        lo, hi = float(self.score_min), float(self.score_max)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise InputError(
                f"crop bounds: need score_min <= score_max, got [{lo}, {hi}]; swap or fix them"
            )
        object.__setattr__(self, "score_min", lo)
        object.__setattr__(self, "score_max", hi)

    def contains(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask, same shape as ``scores``: inside the bounds (NaN → False)."""
        with np.errstate(invalid="ignore"):
            return (scores >= self.score_min) & (scores <= self.score_max)


@dataclass(frozen=True)
class SliceRange:
    """Slices ``start … stop - 1`` of the input, in the input's own slice order."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"SliceRange: need 0 <= start < stop, got [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    def as_slice(self) -> slice:
        """The range as a Python :class:`slice`."""
        return slice(self.start, self.stop)


def bounds_from_scores(lo: float, hi: float) -> CropBounds:
    """Known region from two scores given by hand (thesis sec. 4.3.2, manual approach)."""
    return CropBounds(float(lo), float(hi))


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def bounds_from_landmarks(names: Iterable[str], *, lookup_table: Mapping[str, Any]) -> CropBounds:
    """Known region spanning landmarks and/or regions of the reference table (sec. 4.3.2).

    Parameters
    ----------
    names : iterable of str
        Landmark names of ``lookup_table`` (``"femur_end"``, ``"Th12"``; case and ``-``/``_``
        insensitive) and/or region names of table 4.6 (``"pelvis"``, ``"abdomen"``,
        ``"chest"``, ``"shoulder-neck"``/``"neck"``, ``"head"``, ``"legs"``), which contribute
        their start and end landmarks (legs: −inf, head: +inf).
    lookup_table : mapping
        Slice score reference table on the 0–100 scale.

    Returns
    -------
    CropBounds
        From the smallest to the largest of the resolved scores.
    """
    means = landmark_means(lookup_table)
    by_key = {_normalise(k).replace("-", "_"): v for k, v in means.items()}
    regions = {_normalise(k): v for k, v in BODY_REGION_BOUNDARIES.items()}
    scores: list[float] = []
    requested = [str(n) for n in names]
    if not requested:
        raise InputError("crop bounds: no landmark or region name given; name at least one")
    for name in requested:
        key = _normalise(name)
        landmark_key = key.replace("-", "_")
        region = _REGION_ALIASES.get(key, key)
        if landmark_key in by_key:
            scores.append(by_key[landmark_key])
        elif region in regions:
            start, end = regions[region]
            for landmark, infinite in ((start, -math.inf), (end, math.inf)):
                if landmark is None:
                    scores.append(infinite)
                elif landmark in means:
                    scores.append(means[landmark])
                else:
                    raise InputError(
                        f"crop bounds: region {name!r} needs landmark {landmark!r}, which the "
                        "reference table lacks; give landmark names instead"
                    )
        else:
            known = sorted(means) + sorted(BODY_REGION_BOUNDARIES)
            raise InputError(
                f"crop bounds: unknown landmark or region {name!r}; use one of {known}"
            )
    return CropBounds(min(scores), max(scores))


def bounds_from_results(
    results: Iterable[ScoreResult], *, q_min: float = 0.05, q_max: float = 0.95
) -> CropBounds:
    """Data-driven known region from an algorithm's training volumes (thesis sec. 4.3.2).

    s_min is the ``q_min`` quantile of the per-volume minimum cleaned scores, s_max the ``q_max``
    quantile of the per-volume maxima (linear interpolation). Volumes without any valid cleaned
    score are skipped.

    Parameters
    ----------
    results : iterable of ScoreResult
    q_min, q_max : float
        Quantiles in [0, 1].

    Returns
    -------
    CropBounds
    """
    for q in (q_min, q_max):
        if not 0.0 <= q <= 1.0:
            raise InputError(f"crop bounds: quantile {q} is outside [0, 1]")
    minima: list[float] = []
    maxima: list[float] = []
    skipped = 0
    for result in results:
        cleaned = result.cleaned
        if not np.any(np.isfinite(cleaned)):
            skipped += 1
            continue
        minima.append(float(np.nanmin(cleaned)))
        maxima.append(float(np.nanmax(cleaned)))
    if skipped:
        logger.warning("known region: %d volume(s) without valid scores skipped", skipped)
    if not minima:
        raise InputError("crop bounds: no result with valid cleaned scores; check the inputs")
    lo = float(np.quantile(minima, q_min))
    hi = float(np.quantile(maxima, q_max))
    if lo > hi:
        raise InputError(
            f"crop bounds: data-driven bounds are empty ([{lo:.2f}, {hi:.2f}]); widen q_min/q_max"
        )
    return CropBounds(lo, hi)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True values, in order."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """[start, stop) of the first longest run of True values; None if there is none."""
    runs = _runs(mask)
    if not runs:
        return None
    return max(runs, key=lambda run: run[1] - run[0])  # max keeps the first on ties


def slices_in_bounds(result: ScoreResult, bounds: CropBounds) -> SliceRange | None:
    """Input slices to keep for known region cropping (thesis sec. 4.3.2, step 3).

    Parameters
    ----------
    result : ScoreResult
        Scores of the volume; per-slice lists are in the input's own slice order.
    bounds : CropBounds

    Returns
    -------
    SliceRange or None
        See :func:`slices_in_scores`.
    """
    return slices_in_scores(result.cleaned, bounds)


def slices_in_scores(scores: np.ndarray, bounds: CropBounds) -> SliceRange | None:
    """Slices to keep given cleaned scores (thesis sec. 4.3.2, step 3).

    Parameters
    ----------
    scores : numpy.ndarray, shape (n,)
        Cleaned slice scores in the input's own slice order, NaN where missing.
    bounds : CropBounds

    Returns
    -------
    SliceRange or None
        The longest contiguous run of slices (first one on ties) whose cleaned score lies
        in ``bounds``; slices without a score (NaN) inside the run, i.e. with in-bound slices on
        both sides, are kept with it. None when no slice is in bounds.
    """
    scores = np.asarray(scores, dtype=np.float64)
    inside = bounds.contains(scores)
    missing = np.isnan(scores)
    # bridge gaps of missing scores enclosed by in-bound slices
    bridged = inside.copy()
    in_idx = np.flatnonzero(inside)
    if in_idx.size:
        between = np.zeros_like(inside)
        between[in_idx[0] : in_idx[-1] + 1] = True
        for gap_start, gap_stop in _runs(missing & between):
            if inside[gap_start - 1] and gap_stop < inside.size and inside[gap_stop]:
                bridged[gap_start:gap_stop] = True
    run = _longest_run(bridged)
    if run is None:
        return None
    return SliceRange(*run)
