"""The independence figure: spread of the score at anatomical boundaries over patients.

Thesis sec. 4.1.3 (independence condition) and table 5.10: the score at a fixed anatomical
position should not depend on the patient, so its standard deviation over volumes measures how
far a model is from the condition (bpreg: 3.98 for organ landmarks, 2.43 for bone landmarks).
Here the positions are contour boundaries (:mod:`bodyscore.train.correspondence`) or landmarks,
given as fractional canonical slice indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["boundary_score_spread", "mean_boundary_spread", "score_at", "spread_of_readings"]


def score_at(scores: np.ndarray, k: float) -> float:
    """Score at a fractional slice index by linear interpolation of the per-slice scores.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n,)
        Score of every slice, canonical order; NaN where a slice has none.
    k : float
        Fractional slice index.

    Returns
    -------
    float
        NaN when k lies outside ``[0, n - 1]`` or a slice it interpolates between is NaN.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not math.isfinite(k) or k < 0 or k > values.size - 1:
        return math.nan
    low = math.floor(k)
    frac = k - low
    if frac == 0.0:
        return float(values[low])
    return float((1.0 - frac) * values[low] + frac * values[low + 1])


def boundary_score_spread(
    scores: Mapping[str, np.ndarray],
    boundaries: Mapping[str, Mapping[str, float]],
) -> dict[str, tuple[float, int]]:
    """Standard deviation over volumes of the score at each boundary (table 5.10).

    Parameters
    ----------
    scores : mapping of str to numpy.ndarray
        Volume id → per-slice scores, shape (n,), canonical order (NaN = no score).
    boundaries : mapping of str to mapping of str to float
        Volume id → {boundary → fractional canonical slice index}.

    Returns
    -------
    dict of str to (float, int)
        Boundary → (population standard deviation of the score over the volumes where it could
        be read, number of those volumes); the standard deviation is NaN below 2 volumes.
        Volumes missing from ``scores`` and NaN readings (:func:`score_at`) are ignored.
        Sorted by boundary name.
    """
    readings: dict[str, list[float]] = {}
    for volume_id, found in boundaries.items():
        if volume_id not in scores:
            continue
        for name, k in found.items():
            readings.setdefault(name, []).append(score_at(scores[volume_id], float(k)))
    return {name: (std, n) for name, (std, _, n) in spread_of_readings(readings).items()}


def spread_of_readings(readings: Mapping[str, Sequence[float]]
                       ) -> dict[str, tuple[float, float, int]]:
    """Population standard deviation and mean of each boundary's score readings (table 5.10).

    Parameters
    ----------
    readings : mapping of str to sequence of float
        Boundary → its score in each volume where it was read; NaN readings are ignored.

    Returns
    -------
    dict of str to (float, float, int)
        Boundary → (standard deviation, mean, number of finite readings); both NaN below 2
        readings. Sorted by boundary name.
    """
    spread: dict[str, tuple[float, float, int]] = {}
    for name, values in sorted(readings.items()):
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        enough = len(finite) >= 2
        spread[name] = (float(np.std(finite)) if enough else math.nan,
                        float(np.mean(finite)) if enough else math.nan, len(finite))
    return spread


def mean_boundary_spread(spread: Mapping[str, tuple[float, int]]) -> float:
    """Mean of the finite standard deviations of :func:`boundary_score_spread` (NaN if none)."""
    values = [std for std, _ in spread.values() if math.isfinite(std)]
    return float(np.mean(values)) if values else math.nan
