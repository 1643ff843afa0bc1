"""Fast raw scoring: run the network on a subset of slices along z and interpolate the rest.

Post-processing smooths the scores along z with a Gaussian of σ = 10 mm (thesis sec. 4.3,
fig. 4.8, step 3), which removes everything shorter than a few centimetres; the raw score curve
of a CT is smooth on that scale (the score grows about linearly with z, thesis sec. 4.3.3). So
scoring slices at most ``max_step_mm`` apart and interpolating linearly in z in between changes
the cleaned scores by a fraction of a score unit, while a 0.8 mm volume needs a third of the
network evaluations and preprocessed slices (``benchmarks/fast_accuracy.py`` measures it).

Differs from bpreg, which scores every slice. :func:`bodyscore.inference.predict_raw_scores`
still does (without the CLI's ``--fast``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from bodyscore.preprocess import EMPTY_SLICE_ATOL, is_empty_slice, iter_preprocessed_batches
from bodyscore.scoring import ProgressCallback, RawScores, parallel, prefetched
from bodyscore.volume import Volume

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel

__all__ = ["DEFAULT_MAX_STEP_MM", "air_only_slices", "predict_raw_scores_fast", "select_slices"]

logger = logging.getLogger(__name__)

#: Default largest z distance between two scored slices, mm. Measured with the default model
#: (``benchmarks/fast_accuracy.py``): 1.5 mm keeps every development CT within 0 score units of
#: scoring every slice; 2.0 and 2.5 mm stay within 0.35 on heads but reach 0.89 on the 1 mm legs
#: volume, where the model is noisy — above the 0.5 target, so the default does not subsample
#: slices of 1–1.5 mm spacing; pass a larger value to trade accuracy for speed.
DEFAULT_MAX_STEP_MM = 1.5


def select_slices(z_mm: np.ndarray, candidates: np.ndarray, *, max_step_mm: float) -> np.ndarray:
    """Greedy subset of ``candidates`` whose neighbours are at most ``max_step_mm`` apart in z.

    The first and last candidate are always kept; from each kept slice the farthest candidate
    within ``max_step_mm`` is kept next (the adjacent candidate when none is that close).

    Parameters
    ----------
    z_mm : numpy.ndarray, shape (n,), float
        Slice positions in mm, strictly increasing.
    candidates : numpy.ndarray, shape (m,), int
        Increasing indices into ``z_mm`` that may be scored (e.g. the non-empty slices).
    max_step_mm : float
        Largest wanted z distance between consecutive kept slices, mm (> 0).

    Returns
    -------
    numpy.ndarray, shape (k,), int64
        Increasing subset of ``candidates``.

    Examples
    --------
    >>> select_slices(np.arange(6) * 1.0, np.arange(6), max_step_mm=2.0).tolist()
    [0, 2, 4, 5]
    """
    if not max_step_mm > 0:
        raise ValueError(f"max_step_mm must be > 0, got {max_step_mm}")
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.size <= 2:
        return candidates.copy()
    zc = np.asarray(z_mm, dtype=np.float64)[candidates]
    kept = [0]
    position = 0
    last = candidates.size - 1
    while position < last:
        # farthest candidate within reach (tolerance for float spacing like 0.8 * 3)
        reach = int(np.searchsorted(zc, zc[position] + max_step_mm * (1 + 1e-9), side="right")) - 1
        position = max(position + 1, min(reach, last))
        kept.append(position)
    return candidates[np.asarray(kept, dtype=np.int64)]


def air_only_slices(array_zyx: np.ndarray, *, min_hu: float, max_hu: float) -> np.ndarray:
    """True for slices whose every voxel is at or below the clipping floor (pure air).

    Such a slice preprocesses to all -1 (HU scaling, blur and bilinear resampling never raise
    the maximum), i.e. it is "empty" for :func:`bodyscore.preprocess.is_empty_slice`. The
    converse can fail only for slices whose content lies outside the 128 × 128 field after
    cropping; those are scored like other slices.

    Parameters
    ----------
    array_zyx : numpy.ndarray, shape (n, y, x)
        HU values.
    min_hu, max_hu : float
        The model's clipping window.

    Returns
    -------
    numpy.ndarray, shape (n,), bool
    """
    threshold = min_hu + EMPTY_SLICE_ATOL * (max_hu - min_hu) / 2.0
    n = array_zyx.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    peaks = array_zyx.reshape(n, -1).max(axis=1)
    return np.asarray(peaks <= threshold, dtype=bool)


def predict_raw_scores_fast(
    volume: Volume,
    model: ScoreModel,
    *,
    max_step_mm: float = DEFAULT_MAX_STEP_MM,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> RawScores:
    """Raw scores of every slice, running the network only on slices ≤ ``max_step_mm`` apart.

    Same contract as :func:`bodyscore.inference.predict_raw_scores`. Slices that are air only
    get the model's empty-slice score s0 and ``empty=True`` without running the network; the
    other slices are thinned with :func:`select_slices`, scored, and the remaining raw scores are
    interpolated linearly in z between the scored non-empty slices (constant beyond the end
    ones). When the slices are already ``max_step_mm`` or more apart every slice is scored, so
    the result equals the full path exactly.

    Parameters
    ----------
    volume : Volume
        The CT; made canonical (feet → head) first if it is not.
    model : ScoreModel
        The model (its package's preprocessing numbers are used).
    max_step_mm : float
        Largest z distance between two scored slices, mm. The default keeps the cleaned
        scores within 0.5 score units of scoring every slice (``tests/test_fast.py`` checks it
        on the development CTs with the default model; ``benchmarks/fast_accuracy.py``
        measures it; see :data:`DEFAULT_MAX_STEP_MM`). Volumes whose slices are at least this
        far apart are scored completely.
    batch_size : int
        Slices preprocessed and scored together.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch, counting scored slices.

    Returns
    -------
    RawScores
        ``raw`` (n,) float64 and ``empty`` (n,) bool in canonical slice order.
    """
    volume = volume.canonical()
    n = volume.n_slices
    config = model.package.preprocessing
    z = np.asarray(volume.z_mm, dtype=np.float64)
    empty = air_only_slices(volume.array, min_hu=config.min_hu, max_hu=config.max_hu)
    raw = np.full(n, np.nan, dtype=np.float64)
    if empty.any():
        raw[empty] = model.empty_slice_score()
    candidates = np.flatnonzero(~empty)
    chosen = select_slices(z, candidates, max_step_mm=max_step_mm)
    scored = np.zeros(n, dtype=bool)
    done = 0
    batches = iter_preprocessed_batches(
        volume, batch_size=batch_size, slice_indices=chosen, config=config
    )
    if chosen.size > batch_size and parallel():
        batches = prefetched(batches)  # preprocess the next batch while this one is scored
    for indices, batch in batches:
        raw[indices] = model.predict_raw(batch)
        empty[indices] = is_empty_slice(batch)
        scored[indices] = True
        done += len(indices)
        if progress is not None:
            progress(done, int(chosen.size))
    knots = np.flatnonzero(scored & ~empty)
    missing = np.flatnonzero(~scored & ~empty)
    if missing.size and knots.size:
        raw[missing] = np.interp(z[missing], z[knots], raw[knots])
    elif missing.size:  # every scored slice was empty after cropping: nothing to interpolate
        raw[missing] = model.empty_slice_score()
        empty[missing] = True
    logger.debug("%s: scored %d of %d slices (%d empty)", volume.source, int(chosen.size), n,
                 int(empty.sum()))
    return RawScores(raw=raw, empty=empty)
