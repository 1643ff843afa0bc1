"""Raw-score inference and the one-call :func:`predict` (thesis sec. 4.1.1 → 4.3).

:func:`predict_raw_scores` preprocesses a volume chunk by chunk and runs the model on each chunk,
so memory stays bounded by one batch of input slices whatever the volume size; the next chunk is
preprocessed in a background thread while the model scores the current one.
:func:`predict` reads an input, scores it and post-processes the scores into a
:class:`~bodyscore.result.ScoreResult`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bodyscore.preprocess import is_empty_slice, iter_preprocessed_batches
from bodyscore.volume import Volume

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel
    from bodyscore.result import ScoreResult

__all__ = ["RawScores", "predict", "predict_raw_scores"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RawScores:
    """Network outputs of every slice of a volume, in canonical slice order.

    Attributes
    ----------
    raw : numpy.ndarray, shape (n,), float64
        Raw (untransformed) slice scores.
    empty : numpy.ndarray, shape (n,), bool
        True where the preprocessed slice is air only (all -1): its score is s0 and is
        removed in post-processing (thesis sec. 4.3, step 1).
    """

    raw: np.ndarray
    empty: np.ndarray

    def __post_init__(self) -> None:
        raw = np.asarray(self.raw, dtype=np.float64).reshape(-1)
        empty = np.asarray(self.empty, dtype=bool).reshape(-1)
        if raw.shape != empty.shape:
            raise ValueError(f"raw {raw.shape} and empty {empty.shape} differ in length")
        raw.flags.writeable = False
        empty.flags.writeable = False
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "empty", empty)


def prefetched(iterator: Iterator[tuple[np.ndarray, np.ndarray]]
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield from ``iterator`` while computing its next item in a worker thread.

    Shared by :func:`predict_raw_scores` and :mod:`bodyscore.fast`: preprocessing of the next
    batch overlaps with scoring of the current one.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bodyscore-preprocess") as pool:
        pending: Future[tuple[np.ndarray, np.ndarray] | None] = pool.submit(next, iterator, None)
        while True:
            item = pending.result()
            if item is None:
                return
            pending = pool.submit(next, iterator, None)
            yield item


def predict_raw_scores(
    volume: Volume,
    model: ScoreModel,
    *,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> RawScores:
    """Raw scores of every slice of a volume.

    Parameters
    ----------
    volume : Volume
        The CT; made canonical (feet → head) first if it is not.
    model : ScoreModel
        The model (its package's preprocessing numbers are used).
    batch_size : int
        Slices preprocessed and scored together (memory ≈ batch_size × input slice size × 4 B
        plus the network's activations).
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch (slices).

    Returns
    -------
    RawScores
        ``raw`` and ``empty`` of shape (n,), canonical slice order.
    """
    volume = volume.canonical()
    n = volume.n_slices
    raw = np.empty(n, dtype=np.float64)
    empty = np.empty(n, dtype=bool)
    batches = iter_preprocessed_batches(
        volume, batch_size=batch_size, config=model.package.preprocessing
    )
    if n > batch_size and (os.cpu_count() or 1) > 1:
        batches = prefetched(batches)
    done = 0
    for indices, batch in batches:
        raw[indices] = model.predict_raw(batch)
        empty[indices] = is_empty_slice(batch)
        done += len(indices)
        if progress is not None:
            progress(done, n)
    logger.debug("%s: scored %d slices (%d empty)", volume.source, n, int(empty.sum()))
    return RawScores(raw=raw, empty=empty)


def predict(
    source: Volume | str | os.PathLike[str],
    model: ScoreModel | str | os.PathLike[str] | None = None,
    *,
    series_uid: str | None = None,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
    fast: bool = False,
) -> ScoreResult:
    """Score every slice of a CT and derive body part, tag and sanity checks.

    Parameters
    ----------
    source : Volume, str or path-like
        A :class:`~bodyscore.volume.Volume` or anything :func:`bodyscore.read_volume` reads
        (NIfTI, DICOM folder, NRRD/MHA, ...).
    model : ScoreModel, str or path-like, optional
        A loaded model, a registry name or a package folder; default ``"default"``.
    series_uid : str, optional
        SeriesInstanceUID to pick when a DICOM folder holds several series.
    batch_size : int
        Slices per inference batch.
    progress : callable, optional
        ``progress(done, total)`` after each batch.
    fast : bool
        Skip all-air slices and interpolate slices closer than 1.5 mm
        (:func:`bodyscore.fast.predict_raw_scores_fast`; within 0.5 score units of scoring
        every slice). Off by default: with the light default model, scoring every slice was
        measured faster (``benchmarks/RESULTS.md``); it pays off with the heavy VGG16 of bpreg
        folders.

    Returns
    -------
    ScoreResult

    Examples
    --------
    >>> result = bodyscore.predict("ct.nii.gz")             # doctest: +SKIP
    >>> result.body_part_examined_tag                        # doctest: +SKIP
    """
    from bodyscore.assemble import assemble_result
    from bodyscore.model.backends import ScoreModel
    from bodyscore.model.registry import load_model

    if isinstance(source, Volume):
        volume = source.canonical()
    else:
        from bodyscore.io import read_volume

        volume = read_volume(source, series_uid=series_uid)
    if not isinstance(model, ScoreModel):
        model = load_model("default" if model is None else model)
    if fast:
        from bodyscore.fast import predict_raw_scores_fast

        raw_scores = predict_raw_scores_fast(
            volume, model, batch_size=batch_size, progress=progress
        )
    else:
        raw_scores = predict_raw_scores(volume, model, batch_size=batch_size, progress=progress)
    return assemble_result(
        raw_scores=raw_scores, volume=volume, settings=model.settings, model_info=model.info
    )
