"""Correspondence term: the same contour boundary gets the same score in every patient.

The thesis's *independence condition* (sec. 4.1.3, table 5.10): a body part score must depend
on the anatomy only, so an anatomical boundary (the caudal end of the brainstem, the cranial end
of the parotid glands, ...) should score the same in every patient. The OpenKBP head-and-neck
CTs (``shared/data/ct-unlabelled/openkbp/structures.json``) give, per volume, the inclusive slice
extent ``k_min..k_max`` of the expert radiotherapy contours; their reliable ends are weak
correspondences between patients. This module

* reads those ends as boundaries (:func:`read_structure_boundaries`), keeping only
  :data:`CORRESPONDENCE_BOUNDARIES` by default and dropping ends cut by the volume;
* measures how consistent boundaries are across patients (:func:`boundary_distance_spread`);
* draws a training batch of (volume, slice, boundary) triples (:func:`sample_correspondence_batch`);
* gives the loss: the mean within-boundary score variance (:func:`correspondence_loss`).

The evaluation counterpart (std of the score at each boundary over held-out patients, table
5.10) is :func:`bodyscore.evaluate.independence.boundary_score_spread`.

Slice indices are the stored NIfTI index k (RAS+ canonical, k = 0 most caudal), which is the
canonical index of the training cache. torch is imported inside :func:`correspondence_loss` only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALL_BOUNDARIES",
    "CORRESPONDENCE_BOUNDARIES",
    "CorrespondenceBatch",
    "DistanceSpread",
    "boundary_distance_spread",
    "correspondence_loss",
    "read_slice_geometry",
    "read_structure_boundaries",
    "sample_correspondence_batch",
]

#: Structure → boundary-name prefix; the two parotids are combined into one boundary pair.
_STRUCTURE_PREFIX: Mapping[str, str] = {
    "Brainstem": "Brainstem",
    "SpinalCord": "SpinalCord",
    "Mandible": "Mandible",
    "Larynx": "Larynx",
    "Esophagus": "Esophagus",
    "LeftParotid": "Parotids",
    "RightParotid": "Parotids",
}

#: Every boundary :func:`read_structure_boundaries` can derive (``<prefix>_caudal`` = the
#: contour's most caudal slice k_min, ``<prefix>_cranial`` = its most cranial slice k_max).
ALL_BOUNDARIES: tuple[str, ...] = tuple(
    f"{prefix}_{end}" for prefix in dict.fromkeys(_STRUCTURE_PREFIX.values())
    for end in ("caudal", "cranial")
)

#: The boundaries used by default: anatomically defined ends that agree across patients.
#:
#: Measured on the 258 OpenKBP volumes (``structures.json``, z spacing from the NIfTI headers,
#: :func:`boundary_distance_spread` over ``names=ALL_BOUNDARIES``; robust SD = IQR / 1.349 of
#: the distance in mm between two boundaries over patients, "far" = share of patients more than
#: 20 mm from the median distance):
#:
#: * ``Parotids_cranial`` / ``Parotids_caudal`` — mean of the left and right gland's end. The
#:   left-right difference of an end (contouring noise only: the glands are symmetric) has SD
#:   5.2 mm (cranial, 223 patients) and 8.4 mm (caudal, 245); caudal-cranial robust SD 8.9 mm,
#:   4 % far (231 patients).
#: * ``Brainstem_caudal`` (the spinal cord contour starts there: ``SpinalCord_cranial`` is
#:   2.5 mm lower with robust SD 0.0 mm, 226 patients) — robust SD 8.9 mm (2 % far) to
#:   ``Parotids_cranial``, 9.6 mm (6 %) to ``Parotids_caudal``.
#: * ``Mandible_cranial`` (condyles) and ``Mandible_caudal`` (chin): bone, looser — robust SD
#:   11.4–12.8 mm (7–14 % far) to the parotid ends; to ``Brainstem_caudal`` 11.4 mm (8 %,
#:   cranial) and 14.8 mm (15 %, caudal: the chin moves with the head tilt). The first to drop
#:   in an ablation.
#:
#: Left out: ``Brainstem_cranial`` (cut by the volume's top in 105 of 229 patients; where present
#: 14–15 % far from the brainstem's caudal end and the parotids: conventions differ),
#: ``Larynx_*`` (the README warns that larynx conventions differ; robust SD 12–19 mm and 9–25 %
#: far to every head boundary), ``SpinalCord_*`` and ``Esophagus_*`` (ends cut by the contoured
#: range, robust SD up to 30–40 mm; ``SpinalCord_cranial`` duplicates ``Brainstem_caudal``).
#: They can still be read with ``names=ALL_BOUNDARIES``.
CORRESPONDENCE_BOUNDARIES: tuple[str, ...] = (
    "Brainstem_caudal",
    "Mandible_caudal",
    "Mandible_cranial",
    "Parotids_caudal",
    "Parotids_cranial",
)

_FAR_MM = 20.0


def read_slice_geometry(path: str | Path) -> dict[str, tuple[int, float]]:
    """Number of slices and slice spacing of every volume of a ``structures.json``.

    Reads only the NIfTI headers (the ``file`` of each entry, relative to the JSON's folder).

    Parameters
    ----------
    path : path
        The ``structures.json`` file.

    Returns
    -------
    dict of str to (int, float)
        Volume id → (n slices along k, z spacing in mm).

    Raises
    ------
    InputError
        If the JSON or a volume's header cannot be read, or a volume is not RAS+ canonical.
    """
    import nibabel as nib

    path = Path(path)
    geometry: dict[str, tuple[int, float]] = {}
    for volume_id, entry in _load_entries(path).items():
        image_path = path.parent / str(entry.get("file", f"{volume_id}.nii.gz"))
        try:
            image: Any = nib.load(str(image_path))
            axcodes = nib.aff2axcodes(image.affine)
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise InputError(f"{image_path}: cannot read the NIfTI header ({exc})") from exc
        if tuple(axcodes) != ("R", "A", "S") or len(image.shape) < 3:
            raise InputError(f"{image_path}: expected a RAS+ canonical 3-D volume, "
                             f"got axes {''.join(axcodes)} shape {image.shape}")
        geometry[volume_id] = (int(image.shape[2]), float(image.header.get_zooms()[2]))
    return geometry


def _load_entries(path: Path) -> dict[str, Mapping[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the structures JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: expected a JSON object of volume entries")
    entries: dict[str, Mapping[str, Any]] = {}
    for volume_id, entry in data.items():
        if str(volume_id).startswith("_"):
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("structures", {}), Mapping):
            raise InputError(f"{path}: entry {volume_id!r} has no 'structures' object")
        entries[str(volume_id)] = entry
    return entries


def _extent(raw: Any, where: str) -> tuple[int, int]:
    try:
        k_min, k_max = int(raw["k_min"]), int(raw["k_max"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: expected integer 'k_min' and 'k_max'") from exc
    if k_max < k_min:
        raise InputError(f"{where}: k_max {k_max} < k_min {k_min}")
    return k_min, k_max


def _volume_boundaries(structures: Mapping[str, Any], n_slices: int,
                       where: str) -> dict[str, float]:
    """All uncut boundaries of one volume; a combined boundary needs every present side uncut."""
    ends: dict[str, list[float | None]] = {}
    for structure, raw in structures.items():
        prefix = _STRUCTURE_PREFIX.get(structure)
        if prefix is None:
            continue
        k_min, k_max = _extent(raw, f"{where}.{structure}")
        # an end at the first/last slice (or beyond it) is cut by the volume, not anatomical
        for end, k in (("caudal", k_min), ("cranial", k_max)):
            ends.setdefault(f"{prefix}_{end}", []).append(
                float(k) if 0 < k < n_slices - 1 else None)
    result: dict[str, float] = {}
    for name, values in ends.items():
        uncut = [v for v in values if v is not None]
        if uncut and len(uncut) == len(values):
            result[name] = float(np.mean(uncut))
    return result


def read_structure_boundaries(
    path: str | Path,
    *,
    n_slices: Mapping[str, int] | None = None,
    names: Iterable[str] = CORRESPONDENCE_BOUNDARIES,
) -> dict[str, dict[str, float]]:
    """Contour boundaries of every volume of an OpenKBP ``structures.json``.

    A boundary is one end of an expert contour's slice extent: ``<structure>_caudal`` = k_min,
    ``<structure>_cranial`` = k_max (inclusive). An end at k ≤ 0 or k ≥ n − 1 is cut by the
    volume (or lies in the removed empty slices below or above the stored ones) and is dropped.
    ``Parotids_*`` is the mean of the left and right gland's end, dropped if either present
    gland's end is cut.

    Parameters
    ----------
    path : path
        The ``structures.json`` (format: its ``_conventions`` entry).
    n_slices : mapping of str to int, optional
        Volume id → number of slices; default: read from the NIfTI headers
        (:func:`read_slice_geometry`). Volumes missing from the mapping are skipped.
    names : iterable of str
        Boundaries to keep (default :data:`CORRESPONDENCE_BOUNDARIES`; any of
        :data:`ALL_BOUNDARIES`).

    Returns
    -------
    dict of str to dict of str to float
        Volume id → {boundary name → canonical slice index (k = 0 most caudal)}; volumes with
        no kept boundary are left out.

    Raises
    ------
    InputError
        If the file, an entry or a header is malformed, or a name is unknown.
    """
    path = Path(path)
    wanted = tuple(names)
    unknown = sorted(set(wanted) - set(ALL_BOUNDARIES))
    if unknown:
        raise InputError(f"{path}: unknown boundary names {unknown}; known: {ALL_BOUNDARIES}")
    counts = ({vid: n for vid, (n, _) in read_slice_geometry(path).items()}
              if n_slices is None else n_slices)
    result: dict[str, dict[str, float]] = {}
    for volume_id, entry in _load_entries(path).items():
        if volume_id not in counts:
            continue
        found = _volume_boundaries(entry.get("structures", {}), int(counts[volume_id]),
                                   f"{path}: {volume_id}")
        kept = {name: found[name] for name in wanted if name in found}
        if kept:
            result[volume_id] = kept
    return result


@dataclass(frozen=True)
class DistanceSpread:
    """How the distance between two boundaries varies over patients.

    Attributes
    ----------
    n : int
        Patients with both boundaries.
    median_mm : float
        Median distance (second minus first boundary, mm, positive = second more cranial).
    robust_sd_mm : float
        Interquartile range / 1.349 of the distance (the SD for normally distributed data).
    far_share : float
        Share of patients whose distance is more than 20 mm from the median.
    """

    n: int
    median_mm: float
    robust_sd_mm: float
    far_share: float


def boundary_distance_spread(
    boundaries: Mapping[str, Mapping[str, float]],
    z_spacing_mm: Mapping[str, float],
    *,
    min_volumes: int = 20,
) -> dict[tuple[str, str], DistanceSpread]:
    """Spread over patients of the distance between every pair of boundaries (mm).

    Two boundaries whose mutual distance varies wildly cannot both be anatomical
    correspondences; a small spread between neighbours (e.g. left and right parotid) bounds the
    contouring noise. Used to choose :data:`CORRESPONDENCE_BOUNDARIES`.

    Parameters
    ----------
    boundaries : mapping
        Volume id → {boundary → slice index} (:func:`read_structure_boundaries`).
    z_spacing_mm : mapping of str to float
        Volume id → slice spacing in mm; volumes without one are skipped.
    min_volumes : int
        Pairs seen together in fewer volumes are left out.

    Returns
    -------
    dict of (str, str) to DistanceSpread
        Keyed by the boundary names in sorted order.
    """
    names = sorted({name for b in boundaries.values() for name in b})
    result: dict[tuple[str, str], DistanceSpread] = {}
    for first, second in combinations(names, 2):
        d = np.array([(b[second] - b[first]) * z_spacing_mm[vid]
                      for vid, b in boundaries.items()
                      if first in b and second in b and vid in z_spacing_mm])
        if d.size < max(min_volumes, 2):
            continue
        q25, median, q75 = np.percentile(d, [25, 50, 75])
        result[(first, second)] = DistanceSpread(
            n=int(d.size), median_mm=float(median), robust_sd_mm=float((q75 - q25) / 1.349),
            far_share=float(np.mean(np.abs(d - median) > _FAR_MM)))
    return result


@dataclass(frozen=True)
class CorrespondenceBatch:
    """One correspondence batch: P (volume, slice) pairs grouped by boundary.

    Attributes
    ----------
    positions : numpy.ndarray, shape (P,), int64
        Dataset positions of the volumes.
    slice_indices : numpy.ndarray, shape (P,), int64
        Canonical slice index of the boundary in that volume (nearest integer).
    boundary_ids : numpy.ndarray, shape (P,), int64
        Index into ``boundary_names`` (stable for the same input boundaries).
    boundary_names : tuple of str
        Every boundary eligible for sampling (present in ≥ 2 volumes), sorted.
    """

    positions: np.ndarray
    slice_indices: np.ndarray
    boundary_ids: np.ndarray
    boundary_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.positions.size)


def sample_correspondence_batch(
    boundaries: Mapping[int, Mapping[str, float]],
    rng: np.random.Generator,
    *,
    n_boundaries: int = 2,
    n_patients: int = 4,
) -> CorrespondenceBatch:
    """Draw boundaries and, per boundary, volumes that have it.

    Parameters
    ----------
    boundaries : mapping of int to mapping of str to float
        Dataset position of a training volume → {boundary → canonical slice index}.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same batch.
    n_boundaries : int
        Boundaries per batch (fewer if fewer are eligible), drawn without replacement among
        those present in at least 2 volumes.
    n_patients : int
        Volumes per boundary (≥ 2; fewer if fewer have the boundary), without replacement.

    Returns
    -------
    CorrespondenceBatch
        Ordered boundary by boundary; empty arrays when no boundary is eligible.
    """
    if n_boundaries < 1 or n_patients < 2:
        raise ValueError(f"need n_boundaries >= 1 and n_patients >= 2, got {n_boundaries}, "
                         f"{n_patients}")
    holders: dict[str, list[tuple[int, float]]] = {}
    for position in sorted(boundaries):
        for name, k in sorted(boundaries[position].items()):
            if math.isfinite(k):
                holders.setdefault(name, []).append((int(position), float(k)))
    names = tuple(sorted(name for name, found in holders.items() if len(found) >= 2))
    positions: list[int] = []
    indices: list[int] = []
    ids: list[int] = []
    if names:
        chosen = rng.choice(len(names), size=min(n_boundaries, len(names)), replace=False)
        for boundary_id in chosen.tolist():
            found = holders[names[boundary_id]]
            for j in rng.choice(len(found), size=min(n_patients, len(found)),
                                replace=False).tolist():
                positions.append(found[j][0])
                indices.append(round(found[j][1]))
                ids.append(boundary_id)
    return CorrespondenceBatch(
        positions=np.asarray(positions, dtype=np.int64),
        slice_indices=np.asarray(indices, dtype=np.int64),
        boundary_ids=np.asarray(ids, dtype=np.int64),
        boundary_names=names,
    )


def correspondence_loss(scores: torch.Tensor, boundary_ids: torch.Tensor) -> torch.Tensor:
    """Mean within-boundary score variance (ours; the independence condition, sec. 4.1.3).

    L = 1/|G| Σ_g 1/n_g Σ_{i ∈ g} (s_i − s̄_g)², over the boundary groups g with n_g ≥ 2 members
    (population variance, so a group of two at scores a, b contributes ((a − b) / 2)²).

    Parameters
    ----------
    scores : torch.Tensor, shape (P,)
        Raw scores of the batch's slices.
    boundary_ids : torch.Tensor, shape (P,), integer
        Group of each slice (e.g. :attr:`CorrespondenceBatch.boundary_ids`).

    Returns
    -------
    torch.Tensor, shape ()
        The loss; a zero that is still connected to ``scores`` (zero gradient) when no group
        has two members.
    """
    import torch

    if scores.ndim != 1 or boundary_ids.shape != scores.shape:
        raise ValueError(f"scores and boundary_ids must both have shape (P,), got "
                         f"{tuple(scores.shape)} and {tuple(boundary_ids.shape)}")
    zero = scores.sum() * 0.0
    if scores.numel() == 0:
        return zero
    _, group, counts = torch.unique(boundary_ids.to(scores.device), return_inverse=True,
                                    return_counts=True)
    counts_f = counts.to(scores.dtype)
    means = torch.zeros_like(counts_f).index_add(0, group, scores) / counts_f
    squared = (scores - means[group]) ** 2
    variances = torch.zeros_like(counts_f).index_add(0, group, squared) / counts_f
    valid = counts >= 2
    if not bool(valid.any()):
        return zero
    return variances[valid].mean()
