"""Post-processing of raw slice scores into cleaned slice scores (thesis sec. 4.3, fig. 4.8).

The four steps of fig. 4.8, each a pure numpy function over one score curve of shape (n,) in
the canonical slice order (index grows feet → head, ``z_mm`` increasing):

1. :func:`filter_empty_slices` — "filter s0": empty (all-air) slices become NaN.
2. :func:`transform_scores` — map raw network output to the 0–100 scale (eq. 4.12).
3. :func:`smooth_scores` — Gaussian smoothing along z, σ = 10 mm.
4. :func:`remove_tails` — cut the curve's tails before 0 / after 100 where the tangential slope
   m_t (eq. 4.17) is atypical.

:func:`clean_scores` runs them in order; :func:`fit_slope` is the straight-line fit of the
cleaned curve used by the sanity checks (sec. 4.3.3). Behaviour follows bpreg 1.1.0
(``notes/bpreg-reference.md`` §3.6) except where a docstring says "differs from bpreg".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bodyscore.errors import InputError, ModelError
from bodyscore.filters import gaussian_filter1d
from bodyscore.settings import InferenceSettings

__all__ = [
    "CleanedScores",
    "clean_scores",
    "filter_empty_slices",
    "fit_slope",
    "inverse_transform_scores",
    "remove_tails",
    "smooth_scores",
    "transform_scores",
]

logger = logging.getLogger(__name__)

#: Relative deviation of slice steps from their mean still treated as uniform spacing.
UNIFORM_SPACING_RTOL = 0.01
#: Gaussian kernel half-width in units of σ (scipy's default ``truncate``).
GAUSSIAN_TRUNCATE = 4.0
#: bpreg's distance (score units) within which a score counts as reaching 0 or 100.
BOUNDARY_TOLERANCE = 10.0


def _as_curve(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.array(values, dtype=np.float64, copy=True)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D score curve, got shape {arr.shape}")
    return arr


def _as_positions(z_mm: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    z = np.asarray(z_mm, dtype=np.float64)
    if z.shape != (n,) or not np.all(np.isfinite(z)):
        raise InputError(f"z_mm: expected {n} finite slice positions, got shape {z.shape}")
    if n > 1 and not (np.all(np.diff(z) > 0) or np.all(np.diff(z) < 0)):
        raise InputError("z_mm: slice positions must be strictly monotone; sort the slices")
    return z


# -- step 1: filter s0 --------------------------------------------------------------------------
def filter_empty_slices(
    raw: Sequence[float] | np.ndarray,
    *,
    empty_mask: Sequence[bool] | np.ndarray | None = None,
    background_scores: Sequence[float] = (),
    decimals: int = 2,
) -> np.ndarray:
    """Set the scores of empty slices to NaN (thesis sec. 4.3 step 1, "filter s0").

    Parameters
    ----------
    raw : array_like, shape (n,)
        Raw network outputs.
    empty_mask : array_like of bool, shape (n,), optional
        True where the input slice is all air (no body, no table): filtered whatever its score.
    background_scores : sequence of float
        Raw scores treated as the empty-slice score s0: a slice whose raw score rounded to
        ``decimals`` equals one of them is filtered (bpreg compatibility, bpreg rounds to 2).
    decimals : int
        Rounding applied before comparing with ``background_scores``.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        A copy of ``raw`` with NaN at empty slices. Non-finite raw scores also become NaN.

    Notes
    -----
    Differs from bpreg: the input is not modified in place, and the primary criterion is the
    image content (``empty_mask``); the score equality is kept only so that bpreg model folders
    give bpreg's results (its bug 5: a real slice whose score happens to round to a background
    value is dropped too).
    """
    scores = _as_curve(raw, "raw scores")
    scores[~np.isfinite(scores)] = np.nan
    if empty_mask is not None:
        mask = np.asarray(empty_mask, dtype=bool)
        if mask.shape != scores.shape:
            raise InputError(
                f"empty_mask: shape {mask.shape} does not match the scores' {scores.shape}"
            )
        scores[mask] = np.nan
    if len(background_scores):
        with np.errstate(invalid="ignore"):
            rounded = np.round(scores, decimals)
        scores[np.isin(rounded, np.asarray(background_scores, dtype=np.float64))] = np.nan
    return scores


# -- step 2: transform --------------------------------------------------------------------------
def _knots(settings: InferenceSettings) -> tuple[np.ndarray, np.ndarray]:
    knots = np.asarray(settings.calibration, dtype=np.float64)
    if knots.ndim != 2 or knots.shape[0] < 2 or knots.shape[1] != 2:
        raise ModelError(
            f"inference settings: calibration needs at least 2 (raw, score) knots, got "
            f"{len(settings.calibration)}; fix the model's inference-settings.json"
        )
    return knots[:, 0], knots[:, 1]


def _piecewise_linear(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp inside the knots, continued with the end segments' slopes outside."""
    y = np.interp(x, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    below, above = x < xp[0], x > xp[-1]
    y[below] = fp[0] + (x[below] - xp[0]) * lo_slope
    y[above] = fp[-1] + (x[above] - xp[-1]) * hi_slope
    y[np.isnan(x)] = np.nan
    return y


def transform_scores(
    raw: Sequence[float] | np.ndarray, *, settings: InferenceSettings
) -> np.ndarray:
    """Map raw scores to the 0–100 scale (thesis sec. 4.3 step 2, eq. 4.12).

    Without calibration knots: T(s) = (s − s_min) · 100 / (s_max − s_min) with s_min, s_max the
    reference-table means of the start (pelvis_start → 0) and end (eyes_end → 100) landmarks,
    exactly as bpreg. With ``settings.calibration`` knots (raw, score): a monotone piecewise-linear
    map through them, extended linearly beyond the outer knots with the end segments' slopes.

    Parameters
    ----------
    raw : array_like, shape (n,)
        Raw scores; NaN stays NaN.
    settings : InferenceSettings
        The model's inference settings.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    scores = _as_curve(raw, "raw scores")
    if settings.calibration:
        xp, fp = _knots(settings)
        return _piecewise_linear(scores, xp, fp)
    lo, hi = settings.transform_min, settings.transform_max
    return (scores - lo) * 100.0 / (hi - lo)


def inverse_transform_scores(
    scores: Sequence[float] | np.ndarray, *, settings: InferenceSettings
) -> np.ndarray:
    """Inverse of :func:`transform_scores`: 0–100 scale back to raw network units.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Scores on the 0–100 scale.
    settings : InferenceSettings

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    values = _as_curve(scores, "scores")
    if settings.calibration:
        xp, fp = _knots(settings)
        return _piecewise_linear(values, fp, xp)
    lo, hi = settings.transform_min, settings.transform_max
    return values * (hi - lo) / 100.0 + lo


# -- step 3: smooth -----------------------------------------------------------------------------
def _is_uniform(z: np.ndarray) -> bool:
    steps = np.abs(np.diff(z))
    mean = float(np.mean(steps))
    return bool(np.all(np.abs(steps - mean) <= UNIFORM_SPACING_RTOL * mean))


#: Below this many σ of z-extent, smoothing replicates the edge values instead of reflecting.
SHORT_STACK_SIGMAS = 3.0


def smooth_scores(
    scores: Sequence[float] | np.ndarray,
    *,
    z_mm: Sequence[float] | np.ndarray,
    sigma_mm: float = 10.0,
) -> np.ndarray:
    """Gaussian smoothing of a score curve along z (thesis sec. 4.3 step 3, σ = 10 mm).

    Parameters
    ----------
    scores : array_like, shape (n,)
        Score curve; NaN marks missing slices and stays NaN.
    z_mm : array_like, shape (n,)
        Slice positions in mm, strictly monotone.
    sigma_mm : float
        Standard deviation of the Gaussian kernel in mm; 0 returns a copy.

    Returns
    -------
    numpy.ndarray, shape (n,), float64

    Notes
    -----
    * Uniform spacing (every step within 1 % of the mean step dz): exactly bpreg — the valid
      values are compressed (neighbours across a NaN gap become adjacent), filtered with
      ``scipy.ndimage.gaussian_filter1d(sigma=sigma_mm / dz, mode="reflect", truncate=4.0)``
      (its numpy copy :func:`bodyscore.filters.gaussian_filter1d`) and written back to their
      positions. Stacks shorter than ``SHORT_STACK_SIGMAS`` · σ use
      ``mode="nearest"`` instead (differs from bpreg): with a kernel much longer than the curve,
      reflection makes a rising curve fall (e.g. [2, 28.5, 55] at 1 mm steps), which would flag
      a correct thin slab as reversed; edge replication keeps any monotone curve monotone.
    * Non-uniform spacing (differs from bpreg, which assumes the header spacing): each valid
      value becomes the average of the valid values within 4σ, weighted by the Gaussian of
      their physical distance, with weights normalised over those neighbours (so there is no
      reflection at the ends and gaps are measured in mm).
    """
    values = _as_curve(scores, "scores")
    z = _as_positions(z_mm, values.size)
    if not (math.isfinite(sigma_mm) and sigma_mm >= 0):
        raise InputError(f"sigma_mm: must be a finite value >= 0, got {sigma_mm}")
    valid = ~np.isnan(values)
    if sigma_mm == 0 or values.size < 2 or np.count_nonzero(valid) < 2:
        return values
    if _is_uniform(z):
        extent = abs(float(z[-1] - z[0]))
        dz = extent / (values.size - 1)
        mode = "reflect" if extent >= SHORT_STACK_SIGMAS * sigma_mm else "nearest"
        values[valid] = gaussian_filter1d(
            values[valid], sigma=sigma_mm / dz, mode=mode, truncate=GAUSSIAN_TRUNCATE
        )
        return values
    zv, sv = z[valid], values[valid]
    distance = zv[:, None] - zv[None, :]
    weights = np.exp(-0.5 * (distance / sigma_mm) ** 2)
    weights[np.abs(distance) > GAUSSIAN_TRUNCATE * sigma_mm] = 0.0
    values[valid] = weights @ sv / weights.sum(axis=1)
    return values


# -- slope fit ----------------------------------------------------------------------------------
def fit_slope(
    scores: Sequence[float] | np.ndarray, *, z_mm: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Least-squares line s = m·z + b through the valid scores (thesis sec. 4.3, sec. 4.3.3).

    Parameters
    ----------
    scores : array_like, shape (n,)
        Score curve; NaN values are ignored.
    z_mm : array_like, shape (n,)
        Slice positions in mm.

    Returns
    -------
    (slope, intercept) : tuple of float
        Slope m in score units per mm and intercept b; both NaN with fewer than 2 valid scores.
    """
    values = _as_curve(scores, "scores")
    z = np.asarray(z_mm, dtype=np.float64)
    if z.shape != values.shape:
        raise InputError(f"z_mm: shape {z.shape} does not match the scores' {values.shape}")
    valid = np.isfinite(values) & np.isfinite(z)
    if np.count_nonzero(valid) < 2:
        return math.nan, math.nan
    zv, sv = z[valid], values[valid]
    z_mean, s_mean = float(zv.mean()), float(sv.mean())
    zc = zv - z_mean
    denominator = float(np.dot(zc, zc))
    if denominator == 0:
        return math.nan, math.nan
    slope = float(np.dot(zc, sv - s_mean)) / denominator
    return slope, s_mean - slope * z_mean


def _orientation(values: np.ndarray, z: np.ndarray) -> int:
    """+1 when the curve rises with z, -1 when it falls, 0 when it has no clear trend."""
    slope, _ = fit_slope(values, z_mm=z)
    if not math.isfinite(slope):
        return 0
    valid = ~np.isnan(values)
    rise = abs(slope) * float(np.ptp(z[valid]))
    scale = float(np.nanmax(np.abs(values[valid]))) + 1.0
    if rise <= 1e-9 * scale:
        return 0
    return 1 if slope > 0 else -1


# -- step 4: remove tails -----------------------------------------------------------------------
def _boundary_index(values: np.ndarray, target: float, tolerance: float) -> int | None:
    distance = np.abs(values - target)
    if np.all(np.isnan(distance)) or np.nanmin(distance) >= tolerance:
        return None
    return int(np.nanargmin(distance))


def _remove_tails_increasing(
    values: np.ndarray, z: np.ndarray, slope_min: float, slope_max: float, tolerance: float
) -> np.ndarray:
    """bpreg ``remove_outliers`` (§3.6 steps 4-5) for a curve rising with increasing z."""
    min_idx = _boundary_index(values, 0.0, tolerance)
    max_idx = _boundary_index(values, 100.0, tolerance)
    if min_idx is not None and max_idx is not None and min_idx > max_idx:
        min_idx = None
    slopes = np.diff(values) / np.diff(z)  # eq. 4.17, per mm
    slopes = np.append(slopes, slopes[-1])  # bpreg: last slope repeated
    with np.errstate(invalid="ignore"):
        outliers = np.flatnonzero((slopes < slope_min) | (slopes > slope_max))
    cleaned = values.copy()
    left = outliers[outliers < min_idx] if min_idx is not None else outliers[:0]
    right = outliers[outliers > max_idx] if max_idx is not None else outliers[:0]
    if left.size:
        cleaned[: int(left.max())] = np.nan
    if right.size:
        cleaned[int(right.min()) :] = np.nan
    return cleaned


def remove_tails(
    scores: Sequence[float] | np.ndarray,
    *,
    z_mm: Sequence[float] | np.ndarray,
    slope_min: float,
    slope_max: float,
    reverse: bool | None = None,
    boundary_tolerance: float = BOUNDARY_TOLERANCE,
) -> np.ndarray:
    """Remove atypical tails before 0 and after 100 (thesis sec. 4.3 step 4, eq. 4.17).

    The curve is first oriented so that it rises along the traversal direction. In that frame
    (bpreg §3.6 steps 4-5): the 0-boundary is the slice whose score is closest to 0 and the
    100-boundary the slice closest to 100, each only if within ``boundary_tolerance``; the
    0-boundary is dropped if it lies after the 100-boundary. The tangential slope
    m_t,i = (s_{i+1} − s_i) / (h_{i+1} − h_i) (eq. 4.17, the last one repeated) is an outlier
    outside [slope_min, slope_max]. Scores before the last outlier that lies before the
    0-boundary (exclusive), and from the first outlier after the 100-boundary on (inclusive),
    become NaN.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Smoothed score curve (0–100 scale); NaN allowed.
    z_mm : array_like, shape (n,)
        Slice positions in mm, strictly monotone; slopes use the real distances.
    slope_min, slope_max : float
        Valid range of the tangential slope in score units per mm (the model's 0.5 % and
        99.5 % quantiles).
    reverse : bool, optional
        True when the curve falls with z (head first). None (default): decided from the sign of
        the least-squares slope of ``scores`` versus ``z_mm``; a curve without a trend is
        returned unchanged.
    boundary_tolerance : float
        Distance in score units within which a score counts as reaching 0 or 100 (bpreg: 10).

    Returns
    -------
    numpy.ndarray, shape (n,), float64

    Notes
    -----
    Differs from bpreg (its bug 6): bpreg compares *signed* slopes with the thresholds and resets
    the 0-boundary whenever it lies after the 100-boundary in index order, so for a volume stored
    head first every slope is an outlier, the legs tail is never removed and the head tail is cut
    entirely. Here the curve is oriented first, so reversing the input reverses the output, and
    slopes use the actual slice positions rather than one nominal spacing.
    """
    values = _as_curve(scores, "scores")
    z = _as_positions(z_mm, values.size)
    if values.size < 2:
        return values
    if z[-1] < z[0]:  # positions given head to feet: work along increasing z
        flipped = remove_tails(
            values[::-1],
            z_mm=z[::-1],
            slope_min=slope_min,
            slope_max=slope_max,
            reverse=reverse,
            boundary_tolerance=boundary_tolerance,
        )
        return flipped[::-1].copy()
    if reverse is None:
        direction = _orientation(values, z)
        if direction == 0:
            return values
        reverse = direction < 0
    if not reverse:
        return _remove_tails_increasing(values, z, slope_min, slope_max, boundary_tolerance)
    mirrored = _remove_tails_increasing(
        values[::-1], -z[::-1], slope_min, slope_max, boundary_tolerance
    )
    return mirrored[::-1].copy()


# -- fig. 4.8 as a whole ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CleanedScores:
    """Result of :func:`clean_scores` (thesis fig. 4.8), arrays of shape (n,) in input order.

    Attributes
    ----------
    unprocessed : numpy.ndarray
        Raw scores transformed to the 0–100 scale, nothing filtered (bpreg's "unprocessed slice
        scores").
    cleaned : numpy.ndarray
        Filtered, transformed, smoothed scores with atypical tails removed; NaN where missing.
    slope : float
        Least-squares slope of ``cleaned`` versus z in score units per mm (NaN if undefined).
    intercept : float
        Intercept of that line (score at z = 0 mm).
    """

    unprocessed: np.ndarray
    cleaned: np.ndarray
    slope: float
    intercept: float

    def __post_init__(self) -> None:
        for name in ("unprocessed", "cleaned"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)


def clean_scores(
    raw: Sequence[float] | np.ndarray,
    *,
    z_mm: Sequence[float] | np.ndarray,
    settings: InferenceSettings,
    empty_mask: Sequence[bool] | np.ndarray | None = None,
) -> CleanedScores:
    """Run the post-processing of thesis fig. 4.8 on one raw score curve.

    filter s0 (``empty_mask`` plus ``settings.background_scores`` and
    ``settings.empty_slice_score``) → transform (eq. 4.12) → smooth (σ =
    ``settings.smoothing_sigma_mm``) → remove tails (slope quantiles of the settings) → line fit.

    Parameters
    ----------
    raw : array_like, shape (n,)
        Raw network outputs, slices ordered along ``z_mm``.
    z_mm : array_like, shape (n,)
        Slice positions in mm, strictly monotone.
    settings : InferenceSettings
    empty_mask : array_like of bool, shape (n,), optional
        True for all-air slices.

    Returns
    -------
    CleanedScores

    Notes
    -----
    Differs from bpreg: the orientation used for tail removal is the slope of the filtered,
    smoothed scores versus z (bpreg: unfiltered transformed scores versus slice index), so
    empty slices with their high s0 score cannot flip it.
    """
    raw_arr = _as_curve(raw, "raw scores")
    z = _as_positions(z_mm, raw_arr.size)
    background = tuple(settings.background_scores)
    if settings.empty_slice_score is not None:
        background = (*background, settings.empty_slice_score)
    unprocessed = transform_scores(raw_arr, settings=settings)
    filtered = filter_empty_slices(raw_arr, empty_mask=empty_mask, background_scores=background)
    smoothed = smooth_scores(
        transform_scores(filtered, settings=settings),
        z_mm=z,
        sigma_mm=settings.smoothing_sigma_mm,
    )
    cleaned = remove_tails(
        smoothed,
        z_mm=z,
        slope_min=settings.tangential_slope_min,
        slope_max=settings.tangential_slope_max,
    )
    slope, intercept = fit_slope(cleaned, z_mm=z)
    logger.debug(
        "cleaned %d slices: %d filtered, %d removed as tails, slope %.4g /mm",
        raw_arr.size,
        int(np.count_nonzero(np.isnan(filtered))),
        int(np.count_nonzero(np.isnan(cleaned) & ~np.isnan(smoothed))),
        slope,
    )
    return CleanedScores(unprocessed=unprocessed, cleaned=cleaned, slope=slope, intercept=intercept)
