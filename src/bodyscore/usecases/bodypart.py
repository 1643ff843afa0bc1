"""Use case 1: estimate the examined body part (thesis sec. 4.3.1, table 4.6, eq. 4.18, fig. 4.9).

Two outputs from the cleaned slice scores and the slice score reference table (0–100 scale):

* :func:`body_part_examined` — the body part examined dictionary: region → slice indices.
* :func:`body_part_examined_tag` — one tag per volume, like DICOM BodyPartExamined, from the
  decision tree of fig. 4.9.

Boundaries and rules are bpreg 1.1.0's (``notes/bpreg-reference.md`` §3.7); every score bound is
the reference-table mean of a landmark, looked up by name, so another model's table just works.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "BODY_REGION_BOUNDARIES",
    "DISTINCT_BODY_PARTS",
    "MIN_VOTE_SHARE",
    "SHORT_VOLUME_MM",
    "TAG_LANDMARKS",
    "TAG_MIN_PRESENT_LANDMARKS",
    "body_part_examined",
    "body_part_examined_tag",
    "landmark_means",
    "missing_landmarks",
    "tag_min_present",
]

logger = logging.getLogger(__name__)

#: Table 4.6: region → (start landmark, end landmark); None = unbounded. A slice belongs to a
#: region when ``start <= s < end`` (only end: ``s < end``; only start: ``s > start``), bpreg's
#: semantics (the thesis' eq. 4.18 writes strict bounds).
BODY_REGION_BOUNDARIES: Mapping[str, tuple[str | None, str | None]] = MappingProxyType(
    {
        "legs": (None, "pelvis_start"),
        "pelvis": ("pelvis_start", "pelvis_end"),
        "abdomen": ("L5", "Th8"),
        "chest": ("Th12", "Th1"),
        "shoulder-neck": ("Th3", "C2"),
        "head": ("C5", None),
    }
)

#: Fig. 4.9: landmarks whose presence declares a tag body part (bpreg ``BODY_PARTS_INCLUDED``).
TAG_LANDMARKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "PELVIS": ("pelvis_start", "femur_end", "pelvis_end"),
        "ABDOMEN": ("L5", "L4", "L3", "L2", "L1", "Th12", "Th11", "Th10", "Th9"),
        "CHEST": (
            "Th12",
            "Th11",
            "Th10",
            "Th9",
            "Th8",
            "Th7",
            "Th6",
            "Th5",
            "Th4",
            "Th3",
            "Th2",
            "Th1",
        ),
        "NECK": ("Th3", "Th2", "Th1", "C7", "C6", "C5", "C4", "C3", "C2"),
        "HEAD": ("C3", "C2", "C1", "eyes_end"),
    }
)

#: Fig. 4.9: how many of :data:`TAG_LANDMARKS` must be present (bpreg ``MIN_PRESENT_LANDMARKS``).
TAG_MIN_PRESENT_LANDMARKS: Mapping[str, int] = MappingProxyType(
    {"PELVIS": 2, "ABDOMEN": 7, "CHEST": 9, "NECK": 6, "HEAD": 3}
)

#: Fig. 4.9, short volumes: part → (lower, upper) landmark; a slice belongs to the part when
#: ``lower < s < upper`` (strict, bpreg ``DISTINCT_BODY_PARTS``).
DISTINCT_BODY_PARTS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "PELVIS": ("pelvis_start", "pelvis_end"),
        "ABDOMEN": ("pelvis_end", "Th9"),
        "CHEST": ("Th9", "Th2"),
        "NECK": ("Th2", "C3"),
        "HEAD": ("C3", "head_end"),
    }
)

#: Fig. 4.9: volumes shorter than this (z-range in mm) get the per-slice majority tag.
SHORT_VOLUME_MM = 100.0

#: Share of the valid slices the majority vote's winner needs (ours; bpreg: any). bpreg tags a
#: knee-to-ankle CT PELVIS when its top 13 of 350 slices score just above pelvis_start; the
#: legs themselves cannot be voted for (they are out of the tag's scope, thesis sec. 4.3.1).
#: A hip crop that is 30 % pelvis and 70 % thigh keeps PELVIS.
MIN_VOTE_SHARE = 0.1

#: Tag returned when nothing can be said.
NO_TAG = "NONE"


def landmark_means(lookup_table: Mapping[str, Any]) -> dict[str, float]:
    """Landmark name → mean score from a reference table.

    Accepts :class:`~bodyscore.settings.LandmarkStats` values, ``{"mean": ..., "std": ...}``
    mappings (the JSON form) or plain numbers. Entries without a finite mean are left out.
    """
    means: dict[str, float] = {}
    for name, entry in lookup_table.items():
        value = entry.get("mean") if isinstance(entry, Mapping) else getattr(entry, "mean", entry)
        try:
            mean = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(mean):
            means[str(name)] = mean
    return means


def _needed_landmarks() -> list[str]:
    names: list[str] = []
    groups: Iterable[Iterable[str | None]] = [
        *BODY_REGION_BOUNDARIES.values(),
        *TAG_LANDMARKS.values(),
        *DISTINCT_BODY_PARTS.values(),
    ]
    for group in groups:
        for name in group:
            if name is not None and name not in names:
                names.append(name)
    return names


def missing_landmarks(lookup_table: Mapping[str, Any]) -> tuple[str, ...]:
    """Landmarks the dictionary and tag rules use that ``lookup_table`` lacks (in rule order).

    Regions and tag rules that need them are skipped; callers report this as a warning.
    """
    means = landmark_means(lookup_table)
    return tuple(name for name in _needed_landmarks() if name not in means)


def _as_scores(cleaned: Sequence[float | None] | np.ndarray) -> np.ndarray:
    values = np.array(
        [np.nan if v is None else v for v in np.asarray(cleaned, dtype=object).ravel()],
        dtype=np.float64,
    )
    values[~np.isfinite(values)] = np.nan
    return values


def body_part_examined(
    cleaned: Sequence[float | None] | np.ndarray, *, lookup_table: Mapping[str, Any]
) -> dict[str, list[int]]:
    """Body part examined dictionary d (thesis sec. 4.3.1, table 4.6, eq. 4.18).

    Parameters
    ----------
    cleaned : array_like, shape (n,)
        Cleaned slice scores; NaN/None slices belong to no region.
    lookup_table : mapping
        Slice score reference table on the 0–100 scale (landmark → mean score).

    Returns
    -------
    dict of str to list of int
        Every region of :data:`BODY_REGION_BOUNDARIES`, in that order, with the indices of the
        slices whose score lies in ``[start, end)`` (``s < end`` for legs, ``s > start`` for
        head). Regions overlap. A region whose landmark is missing from the table is empty
        (logged as a warning; see :func:`missing_landmarks`).
    """
    values = _as_scores(cleaned)
    means = landmark_means(lookup_table)
    result: dict[str, list[int]] = {}
    with np.errstate(invalid="ignore"):
        for region, (start, end) in BODY_REGION_BOUNDARIES.items():
            missing = [n for n in (start, end) if n is not None and n not in means]
            if missing:
                logger.warning("region %s skipped: reference table lacks %s", region, missing)
                result[region] = []
                continue
            inside = ~np.isnan(values)
            if start is not None and end is not None:
                inside &= (values >= means[start]) & (values < means[end])
            elif end is not None:
                inside &= values < means[end]
            elif start is not None:
                inside &= values > means[start]
            result[region] = [int(i) for i in np.flatnonzero(inside)]
    return result


def _present(values: np.ndarray, mean: float) -> bool:
    """A landmark is present when some score lies below and some above its mean (fig. 4.9)."""
    return bool(np.any(values < mean) and np.any(values > mean))


def _join(parts: Sequence[str]) -> str | None:
    """bpreg's concatenation of the visible parts (fig. 4.9; gaps are filled)."""
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if "HEAD" in parts:
        if "PELVIS" in parts:
            return "HEAD-NECK-CHEST-ABDOMEN-PELVIS"
        if "ABDOMEN" in parts:
            return "HEAD-NECK-CHEST-ABDOMEN"
        if "CHEST" in parts:
            return "HEAD-NECK-CHEST"
        return "HEAD-NECK"
    if "NECK" in parts:
        if "PELVIS" in parts:
            return "NECK-CHEST-ABDOMEN-PELVIS"
        if "ABDOMEN" in parts:
            return "NECK-CHEST-ABDOMEN"
        return "NECK-CHEST"
    if "CHEST" in parts:
        return "CHEST-ABDOMEN-PELVIS" if "PELVIS" in parts else "CHEST-ABDOMEN"
    return "ABDOMEN-PELVIS"


def tag_min_present(overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """bpreg's minimum landmark counts (:data:`TAG_MIN_PRESENT_LANDMARKS`) with ``overrides``.

    Raises
    ------
    ValueError
        When an override names an unknown part or asks for more landmarks than the part has.
    """
    counts = dict(TAG_MIN_PRESENT_LANDMARKS)
    for part, count in (overrides or {}).items():
        if part not in TAG_LANDMARKS or not 1 <= int(count) <= len(TAG_LANDMARKS[part]):
            raise ValueError(
                f"tag minimum {part}={count}: the part must be one of {sorted(TAG_LANDMARKS)} "
                f"and the count between 1 and its number of landmarks"
            )
        counts[part] = int(count)
    return counts


def _tag_from_landmarks(values: np.ndarray, means: Mapping[str, float],
                        min_present: Mapping[str, int]) -> str | None:
    valid = values[~np.isnan(values)]
    visible = []
    for part, names in TAG_LANDMARKS.items():
        present = sum(_present(valid, means[n]) for n in names if n in means)
        if present >= min_present[part]:
            visible.append(part)
    return _join(visible)


def _tag_by_majority(values: np.ndarray, means: Mapping[str, float]) -> str:
    bounds = {
        part: (means[lo], means[hi])
        for part, (lo, hi) in DISTINCT_BODY_PARTS.items()
        if lo in means and hi in means
    }
    if not bounds:
        return NO_TAG
    valid = values[~np.isnan(values)]
    votes: Counter[str] = Counter()
    for value in valid:
        part = next((p for p, (lo, hi) in bounds.items() if lo < value < hi), None)
        if part is not None:
            votes[part] += 1
    if not votes:
        return NO_TAG
    part, count = votes.most_common(1)[0]
    return part if count >= MIN_VOTE_SHARE * valid.size else NO_TAG


def body_part_examined_tag(
    cleaned: Sequence[float | None] | np.ndarray,
    *,
    lookup_table: Mapping[str, Any],
    z_extent_mm: float,
    valid_z_spacing: bool | None,
    min_present_landmarks: Mapping[str, int] | None = None,
) -> str:
    """Body part examined tag t of one volume (thesis sec. 4.3.1, decision tree fig. 4.9).

    1. ``valid_z_spacing`` is False → ``"NONE"`` (None, i.e. undefined, continues as in bpreg).
    2. Each tag part of :data:`TAG_LANDMARKS` is visible when at least
       :data:`TAG_MIN_PRESENT_LANDMARKS` (or ``min_present_landmarks``) of its landmarks are
       present (some score below and some above the landmark's mean); visible parts are joined
       head to pelvis into one of the contiguous names (``"HEAD-NECK-CHEST"``, ...; gaps are
       filled, as in bpreg).
    3. If ``z_extent_mm`` < 100 mm or no part is visible: every slice votes for the part of
       :data:`DISTINCT_BODY_PARTS` containing its score (strict bounds); the most frequent part
       wins (ties: first met in slice order); ``"NONE"`` when no slice votes. Ours: also
       ``"NONE"`` when the winner holds less than :data:`MIN_VOTE_SHARE` of the valid slices.

    Parameters
    ----------
    cleaned : array_like, shape (n,)
        Cleaned slice scores; NaN/None are ignored.
    lookup_table : mapping
        Slice score reference table on the 0–100 scale.
    z_extent_mm : float
        Covered z-range in mm (bpreg: number of slices × z-spacing).
    valid_z_spacing : bool or None
        Result of the z-spacing sanity check (sec. 4.3.3).
    min_present_landmarks : mapping of str to int, optional
        Per-part overrides of bpreg's minimum counts (the thesis calls them "manually
        defined"). bpreg's ABDOMEN needs 7 of L5…Th9, so an abdomen-pelvis CT that ends at
        T12, like TotalSegmentator's example, has at most 6 and is tagged PELVIS even with
        perfect scores; bodyscore's default model asks for 5 (the lumbar spine).

    Returns
    -------
    str
        ``"PELVIS"``, ``"ABDOMEN"``, ``"CHEST"``, ``"NECK"``, ``"HEAD"``, a hyphen-joined name,
        or ``"NONE"``. Landmarks absent from the table never count as present (logged).
    """
    if valid_z_spacing is False:
        return NO_TAG
    values = _as_scores(cleaned)
    means = landmark_means(lookup_table)
    missing = missing_landmarks(lookup_table)
    if missing:
        logger.warning(
            "body part tag: reference table lacks %s; rules using them skipped", list(missing)
        )
    tag = _tag_from_landmarks(values, means, tag_min_present(min_present_landmarks))
    if tag is None or not z_extent_mm >= SHORT_VOLUME_MM:
        return _tag_by_majority(values, means)
    return tag
