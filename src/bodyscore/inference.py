"""Raw-score inference and the one-call :func:`predict` (thesis sec. 4.1.1 → 4.3).

:func:`predict_raw_scores` preprocesses a volume chunk by chunk and runs the model on each chunk,
so memory stays bounded by one batch of input slices whatever the volume size; the next chunk is
preprocessed in a background thread while the model scores the current one.
:func:`predict_raw_scores_streamed` scores a file while it is read: slabs are inflated in one
thread, preprocessed in a second and scored in the caller's, so the volume is never held whole
(memory: a few slabs and batches) and reading, preprocessing and scoring overlap.
:func:`predict` reads an input (streaming NIfTI files), scores it and post-processes the scores
into a :class:`~bodyscore.result.ScoreResult`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bodyscore.preprocess import iter_preprocessed_batches, preprocess_slices
from bodyscore.scoring import ProgressCallback, RawScores, parallel, prefetched, score_batches
from bodyscore.volume import Volume, VolumeGeometry

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel
    from bodyscore.result import ScoreResult

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ProgressCallback",
    "RawScores",
    "SlabSource",
    "predict",
    "predict_raw_scores",
    "predict_raw_scores_streamed",
    "score_input",
]

logger = logging.getLogger(__name__)

#: Slices per slab and network batch. Measured (``benchmarks/RESULTS.md``): ONNX Runtime's time
#: per slice is the same from 16 to 64 slices a batch, while its activation memory grows with the
#: batch (about +55 MB at 16 and +210 MB at 64 slices of 128² with the bundled model): 16 keeps
#: the peak RSS within 400 MB at any volume size.
DEFAULT_BATCH_SIZE = 16


class SlabSource(Protocol):
    """A volume read slab by slab (:class:`bodyscore.io.nifti.NiftiSlabs`)."""

    @property
    def geometry(self) -> VolumeGeometry:
        """The canonical volume's geometry (final once :meth:`slabs` is exhausted)."""
        ...

    def slabs(self, n_slices: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(canonical indices (m,), HU slices (m, y, x)) covering every slice once."""
        ...


def predict_raw_scores(
    volume: Volume,
    model: ScoreModel,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
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
    batches = iter_preprocessed_batches(
        volume, batch_size=batch_size, config=model.package.preprocessing
    )
    if volume.n_slices > batch_size and parallel():
        batches = prefetched(batches)
    raw_scores = score_batches(batches, model, n_slices=volume.n_slices, progress=progress)
    logger.debug("%s: scored %d slices (%d empty)", volume.source, volume.n_slices,
                 int(raw_scores.empty.sum()))
    return raw_scores


def predict_raw_scores_streamed(
    source: SlabSource,
    model: ScoreModel,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> tuple[RawScores, VolumeGeometry]:
    """Raw scores of every slice of a volume read slab by slab, without holding it whole.

    Three stages overlap: reading/inflating slabs of ``batch_size`` slices (a worker thread),
    preprocessing them (a second one) and scoring (the caller's thread); each hands over at
    most one item ahead, so memory is a few slabs and batches (no full volume).

    Parameters
    ----------
    source : SlabSource
        E.g. :class:`bodyscore.io.nifti.NiftiSlabs`.
    model : ScoreModel
    batch_size : int
        Slices per slab and per network batch.
    progress : callable, optional
        ``progress(done, total)`` after each batch.

    Returns
    -------
    raw_scores : RawScores
        Canonical slice order.
    geometry : VolumeGeometry
        The scored volume's geometry with the reading warnings.

    Raises
    ------
    InputError
        The file's data is truncated or corrupt (found while streaming).
    """
    geometry = source.geometry
    config = model.package.preprocessing
    spacing = (geometry.spacing_mm[1], geometry.spacing_mm[2])
    slabs = source.slabs(batch_size)
    if geometry.n_slices > batch_size and parallel():
        slabs = prefetched(slabs)
    batches: Iterator[tuple[np.ndarray, np.ndarray]] = (
        (indices, preprocess_slices(slab, pixel_spacing_mm=spacing, config=config))
        for indices, slab in slabs
    )
    if geometry.n_slices > batch_size and parallel():
        batches = prefetched(batches)
    raw_scores = score_batches(batches, model, n_slices=geometry.n_slices, progress=progress)
    logger.debug("%s: streamed and scored %d slices (%d empty)", geometry.source,
                 geometry.n_slices, int(raw_scores.empty.sum()))
    return raw_scores, source.geometry


def predict(
    source: Volume | str | os.PathLike[str],
    model: ScoreModel | str | os.PathLike[str] | None = None,
    *,
    series_uid: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    fast: bool = False,
) -> ScoreResult:
    """Score every slice of a CT and derive body part, tag and sanity checks.

    Parameters
    ----------
    source : Volume, str or path-like
        A :class:`~bodyscore.volume.Volume` or anything :func:`bodyscore.read_volume` reads
        (NIfTI, DICOM folder, NRRD/MHA, ...). A NIfTI file is scored while it is read
        (:func:`predict_raw_scores_streamed`; not with ``fast``).
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
    return score_input(source, model, series_uid=series_uid, batch_size=batch_size,
                       progress=progress, fast=fast)[0]


def score_input(
    source: Volume | str | os.PathLike[str],
    model: ScoreModel | str | os.PathLike[str] | None = None,
    *,
    series_uid: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    fast: bool = False,
) -> tuple[ScoreResult, Volume | VolumeGeometry]:
    """:func:`predict`, also returning what was scored: the volume, or only its geometry when
    a NIfTI file was streamed (parameters as :func:`predict`)."""
    from bodyscore.assemble import assemble_result
    from bodyscore.model.backends import ScoreModel
    from bodyscore.model.registry import load_model

    slabs = None
    if isinstance(source, Volume):
        volume = source.canonical()
    else:
        from bodyscore.io import open_slabs, read_volume

        slabs = None if fast else open_slabs(source)
        if slabs is None:
            volume = read_volume(source, series_uid=series_uid)
    if not isinstance(model, ScoreModel):
        model = load_model("default" if model is None else model)
    geometry: Volume | VolumeGeometry
    if slabs is not None:
        raw_scores, geometry = predict_raw_scores_streamed(
            slabs, model, batch_size=batch_size, progress=progress
        )
    elif fast:
        from bodyscore.fast import predict_raw_scores_fast

        raw_scores = predict_raw_scores_fast(
            volume, model, batch_size=batch_size, progress=progress
        )
        geometry = volume
    else:
        raw_scores = predict_raw_scores(volume, model, batch_size=batch_size, progress=progress)
        geometry = volume
    result = assemble_result(
        raw_scores=raw_scores, volume=geometry, settings=model.settings, model_info=model.info
    )
    return result, geometry
