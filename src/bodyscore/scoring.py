"""Raw slice scores and the threaded pipeline that computes them (thesis sec. 4.1.1 → 4.3).

Shared by :mod:`bodyscore.inference` (every slice, from a volume or streamed from a file) and
:mod:`bodyscore.fast` (a subset of slices), which import it; it imports neither.

:func:`score_batches` runs the model over preprocessed batches while earlier pipeline stages run
ahead in worker threads (:func:`prefetched`): reading/inflating, preprocessing and scoring
overlap, each stage holding at most one finished item ahead of the next (a bounded hand-over),
so memory stays bounded by a few batches whatever the volume size. While it runs, the BLAS
library that numpy uses (the preprocessing's matrix products) is held to one thread
(threadpoolctl): the pipeline's parallelism is its stages, and BLAS threads on top of them
oversubscribe the cores — two cohort workers on 2 cores each took 1.7 s per 120-slice series
instead of 0.47 s (issue 18).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from bodyscore.preprocess import is_empty_slice

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel

__all__ = ["ProgressCallback", "RawScores", "parallel", "prefetched", "score_batches"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]

_T = TypeVar("_T")


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


def parallel() -> bool:
    """True when there is more than one core to overlap pipeline stages on."""
    return (os.cpu_count() or 1) > 1


def prefetched(iterator: Iterator[_T]) -> Iterator[_T]:
    """Yield from ``iterator`` while computing its next item in a worker thread.

    At most one item is computed ahead, so a chain of ``prefetched`` stages is a pipeline with
    bounded hand-over queues. The worker's exceptions are raised in the consumer.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bodyscore-stage") as pool:
        pending: Future[_T | None] = pool.submit(next, iterator, None)
        while True:
            item = pending.result()
            if item is None:
                return
            pending = pool.submit(next, iterator, None)
            yield item


def score_batches(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    model: ScoreModel,
    *,
    n_slices: int,
    progress: ProgressCallback | None = None,
) -> RawScores:
    """Run ``model`` on preprocessed batches covering every slice once.

    Parameters
    ----------
    batches : iterable of (indices, batch)
        Canonical slice indices (m,) and their preprocessed slices (m, 1, size, size).
    model : ScoreModel
    n_slices : int
        Slices of the volume; every index must come exactly once.
    progress : callable, optional
        ``progress(done, n_slices)`` after each batch.

    Returns
    -------
    RawScores
    """
    from threadpoolctl import threadpool_limits

    raw = np.full(n_slices, np.nan, dtype=np.float64)
    empty = np.zeros(n_slices, dtype=bool)
    done = 0
    with threadpool_limits(limits=1, user_api="blas"):  # process-wide, for the stage threads
        for indices, batch in batches:
            raw[indices] = model.predict_raw(batch)
            empty[indices] = is_empty_slice(batch)
            done += len(indices)
            if progress is not None:
                progress(done, n_slices)
    if done != n_slices:
        raise RuntimeError(f"scored {done} slices of {n_slices}")  # a bug, not bad input
    return RawScores(raw=raw, empty=empty)
