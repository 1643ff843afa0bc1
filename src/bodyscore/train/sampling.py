"""Equidistant slice sampling with a physical slice distance Δh (thesis sec. 4.1.3, eq. 4.1).

For one volume sample, m slices with the same index step k are drawn: Δh ~ U[Δh_min, Δh_max]
in mm, k = max(1, round(Δh / dz)) (eq. 4.1; at least one slice apart), a random start index so
that all m slices lie in the volume. The physical distance actually used, k·dz, is returned: it
is the Δh of the heuristic order loss (eq. 4.7).

Short volumes: when (m − 1)·k slices do not fit, k is shrunk to the largest step that fits,
k_max = (n − 1) // (m − 1), so Δh may fall below Δh_min for short volumes (bpreg instead
re-draws; we keep every volume usable). Volumes with fewer than m slices cannot be sampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bodyscore.errors import InputError

__all__ = [
    "SliceSample",
    "epoch_volume_order",
    "labelled_epoch_order",
    "rank_batch",
    "region_epoch_order",
    "sample_equidistant_slices",
    "steps_per_epoch",
]


@dataclass(frozen=True)
class SliceSample:
    """Indices of m equidistant slices of one volume.

    Attributes
    ----------
    indices : numpy.ndarray of int64, shape (m,)
        Increasing slice indices (0 = most inferior slice).
    step : int
        Index step k between consecutive slices.
    delta_h_mm : float
        Physical distance k·dz between consecutive slices, mm.
    """

    indices: np.ndarray
    step: int
    delta_h_mm: float


def sample_equidistant_slices(
    n_slices: int,
    *,
    z_spacing_mm: float,
    rng: np.random.Generator,
    num_slices: int = 4,
    delta_h_range_mm: tuple[float, float] = (5.0, 100.0),
) -> SliceSample:
    """Draw m equidistant slices with a random physical distance (thesis sec. 4.1.3).

    Parameters
    ----------
    n_slices : int
        Number of slices of the volume.
    z_spacing_mm : float
        Slice spacing dz, mm.
    rng : numpy.random.Generator
        Source of randomness (Δh, then the start index).
    num_slices : int
        m ≥ 2.
    delta_h_range_mm : (float, float)
        Δh is drawn uniformly from this range, mm.

    Returns
    -------
    SliceSample

    Raises
    ------
    InputError
        If the volume has fewer than m slices or the spacing is not positive.
    """
    if num_slices < 2:
        raise InputError(f"sampling: num_slices must be >= 2, got {num_slices}")
    if not z_spacing_mm > 0:
        raise InputError(f"sampling: z spacing must be > 0 mm, got {z_spacing_mm}")
    if n_slices < num_slices:
        raise InputError(
            f"sampling: a volume with {n_slices} slices cannot give {num_slices} slices; "
            "drop it from the training data"
        )
    lo, hi = delta_h_range_mm
    delta_h = float(rng.uniform(lo, hi))
    step = max(1, round(delta_h / z_spacing_mm))
    step = min(step, (n_slices - 1) // (num_slices - 1))
    span = step * (num_slices - 1)
    start = int(rng.integers(0, n_slices - span))
    indices = start + step * np.arange(num_slices, dtype=np.int64)
    return SliceSample(indices=indices, step=step, delta_h_mm=step * float(z_spacing_mm))


def epoch_volume_order(n_volumes: int, *, seed: int, epoch: int) -> np.ndarray:
    """Shuffled volume order of one epoch, reproducible from (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 0x5A3])
    return rng.permutation(n_volumes)


def synthetic_draw_count(n_real: int, n_synthetic: int, share: float | None) -> int:
    """Synthetic volumes in one epoch: all of them when ``share`` is None (or there is no real
    volume), else ``round(n_real · share / (1 − share))`` capped at ``n_synthetic``."""
    if share is None or n_real == 0:
        return n_synthetic
    return min(n_synthetic, round(n_real * share / (1.0 - share)))


def mixed_epoch_order(is_synthetic: Sequence[bool] | np.ndarray, *, share: float | None,
                      seed: int, epoch: int) -> np.ndarray:
    """Shuffled volume order of one epoch with a set share of synthetic volumes.

    Every real volume appears once; of the synthetic ones (``is_synthetic`` True), a fresh
    random subset of :func:`synthetic_draw_count` volumes is drawn each epoch, so that they make
    up about ``share`` of the samples while all of them are seen over the epochs. ``share``
    None: every volume once (:func:`epoch_volume_order`). Reproducible from (seed, epoch).

    Parameters
    ----------
    is_synthetic : sequence of bool, shape (n_volumes,)
    share : float in [0, 1) or None
    seed, epoch : int

    Returns
    -------
    numpy.ndarray of int
        Volume indices, length n_real + the drawn synthetic count.
    """
    flags = np.asarray(is_synthetic, dtype=bool)
    if share is None:
        return epoch_volume_order(len(flags), seed=seed, epoch=epoch)
    rng = np.random.default_rng([seed, epoch, 0x5A4])
    real, synthetic = np.flatnonzero(~flags), np.flatnonzero(flags)
    count = synthetic_draw_count(len(real), len(synthetic), share)
    drawn = rng.choice(synthetic, size=count, replace=False)
    return rng.permutation(np.concatenate([real, drawn]).astype(np.int64))


def rank_batch(order: Sequence[int] | np.ndarray, *, step_in_epoch: int, batch_size: int,
               rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Volume indices of one process for one step.

    Each step consumes ``batch_size · world_size`` volumes of the epoch order; process ``rank``
    takes its contiguous share, so processes never sample the same volume in a step (unless
    the epoch order is shorter than one global batch). The order wraps around at its end so
    that every process always gets ``batch_size`` volumes (data-parallel steps must match).
    """
    order = np.asarray(order)
    start = (step_in_epoch * world_size + rank) * batch_size
    return order[np.arange(start, start + batch_size) % len(order)]


def steps_per_epoch(n_volumes: int, *, batch_size: int, world_size: int = 1) -> int:
    """Steps that cover every training volume once: ceil(n / (B · world_size))."""
    return max(1, -(-n_volumes // (batch_size * world_size)))


def region_epoch_order(regions: Sequence[str], *, shares: Mapping[str, float] | None = None,
                       epoch_size: int | None = None, seed: int, epoch: int) -> np.ndarray:
    """Shuffled volume order of one epoch in which every body region weighs by its share.

    258 of ~300 real training volumes are head-and-neck CTs: drawn once each per epoch, the
    legs and the pelvis would be a few per cent of the samples. Here each region ``r`` gets
    ``round(epoch_size · w_r / Σw)`` draws (``w_r`` from ``shares``, 1 for regions not
    listed), taken from a fresh permutation of that region's volumes, repeated when the
    region has fewer volumes than draws; so a region's volumes are seen evenly, and the
    head-and-neck volumes in turn over the epochs. Reproducible from (seed, epoch).

    Parameters
    ----------
    regions : sequence of str, shape (n_volumes,)
        Body region of each volume (any labels).
    shares : mapping of str to float, optional
        Relative weight per region, >= 0 (0 leaves a region out).
    epoch_size : int, optional
        Samples per epoch; default the number of volumes.
    seed, epoch : int

    Returns
    -------
    numpy.ndarray of int64
        Volume indices; about ``epoch_size`` of them (rounding per region).
    """
    labels = np.asarray(regions, dtype=object)
    names = sorted(set(labels.tolist()))
    weights = np.array([float((shares or {}).get(name, 1.0)) for name in names])
    if weights.sum() <= 0:
        raise InputError("sampling: every region share is 0; give at least one region a share")
    size = len(labels) if epoch_size is None else int(epoch_size)
    rng = np.random.default_rng([seed, epoch, 0x5A5])
    drawn = []
    for name, weight in zip(names, weights, strict=True):
        members = np.flatnonzero(labels == name)
        count = round(size * weight / weights.sum())
        if count == 0:
            continue
        repeats = -(-count // len(members))
        cycle = np.concatenate([rng.permutation(members) for _ in range(repeats)])
        drawn.append(cycle[:count])
    if not drawn:
        raise InputError(f"sampling: an epoch of {size} samples gives no region a draw; "
                         "use a larger epoch")
    return rng.permutation(np.concatenate(drawn).astype(np.int64))


def labelled_epoch_order(annotated: Sequence[bool] | np.ndarray, *, share: float,
                         regions: Sequence[str] | None = None,
                         region_shares: Mapping[str, float] | None = None,
                         seed: int, epoch: int) -> np.ndarray:
    """Every annotated volume once, plus unlabelled draws making up ``share`` of the epoch.

    The unlabelled draws number ``round(n_annotated · share / (1 − share))``; with
    ``regions`` they are drawn by body region (:func:`region_epoch_order` over the unlabelled
    volumes), else uniformly (each unlabelled volume in turn over the epochs). Adding ~270
    unlabelled volumes to 20 annotated ones this way leaves the annotated volumes' anchor and
    region terms their weight per step. Reproducible from (seed, epoch).

    Parameters
    ----------
    annotated : sequence of bool, shape (n_volumes,)
    share : float in [0, 1)
    regions : sequence of str, shape (n_volumes,), optional
        Body region of every volume (only the unlabelled volumes' are used).
    region_shares : mapping of str to float, optional
        Relative weight of each region in the unlabelled draws (``shares`` of
        :func:`region_epoch_order`); only with ``regions``.
    seed, epoch : int

    Returns
    -------
    numpy.ndarray of int64
        Volume indices, shuffled.
    """
    flags = np.asarray(annotated, dtype=bool)
    labelled, unlabelled = np.flatnonzero(flags), np.flatnonzero(~flags)
    count = round(len(labelled) * share / (1.0 - share)) if len(unlabelled) else 0
    rng = np.random.default_rng([seed, epoch, 0x5A6])
    if count and regions is not None:
        names = [regions[int(i)] for i in unlabelled]
        drawn = unlabelled[region_epoch_order(names, shares=region_shares, epoch_size=count,
                                              seed=seed, epoch=epoch)]
    elif count:  # one fixed order of the unlabelled volumes, taken in turn epoch by epoch
        cycle = np.random.default_rng([seed, 0x5A7]).permutation(unlabelled)
        drawn = cycle[(epoch * count + np.arange(count)) % len(unlabelled)]
    else:
        drawn = np.zeros(0, dtype=np.int64)
    return rng.permutation(np.concatenate([labelled, drawn]).astype(np.int64))
