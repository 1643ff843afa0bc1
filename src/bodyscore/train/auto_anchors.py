"""Automatic lung anchors: the lungs' caudal and cranial ends read from HU where unambiguous.

bpreg's landmarks ``lung_start`` (most caudal slice with lung) and ``lung_end`` (lung apex, the
most cranial slice with lung) are thesis table 4.3 landmarks; in CT they are visible as
air-filled parenchyma inside the thorax, so an unlabelled volume can get them without an
annotator (issue 17, item 2c). A false anchor is worse than none, so every doubt gives None.

Method (on a 3.5 mm in-plane grid, the training cache's, so that the numbers are the same for
native and cached slices; axis order (z, y, x), k = 0 most caudal):

1. body, per slice: tissue (HU ≥ ``air_hu`` = −500) components of at least a quarter of the
   largest one, holes filled; air outside it (connected to the image border) is never lung;
2. air inside the body is labelled in 3-D; a component is *lung* if it holds at least
   ``min_component_ml`` and at most ``max_dark_share`` of its voxels are below ``dark_hu`` (lung
   parenchyma scores −650 … −870 HU at 3.5 mm, bowel gas, sinuses and airway lumen lie near
   −1000), and its median HU is at least ``min_median_hu``;
3. per slice, the lung area counts 2-D pieces of lung components that are large
   (≥ ``large_piece_cm2``) or lateral (centroid ≥ ``lateral_mm`` from the body's left-right
   centre), so the midline trachea does not extend the lung upward;
4. the slices with at least ``min_area_cm2`` of lung form runs; the run with the largest lung
   area must reach ``min_core_area_cm2`` in one slice and span ``min_extent_mm``; its first and
   last slices are lung_start and lung_end;
5. an end is None if it is the volume's first / last slice, if another run of lung slices lies
   within ``isolation_mm`` beyond it (a gap of partial volume or a second candidate), or if the
   body shrinks below ``min_body_ratio`` of its area there (a body cut by missing data).

Measured with ``benchmarks/accuracy/lung_anchor_check.py`` (cache path; table in
``benchmarks/accuracy/lung_anchors.md``) on the 33 shared real volumes of ``ct/`` and
``ct-unlabelled/`` and on all 258 OpenKBP volumes (``--openkbp 258``): no anchor where the
annotation is null (0 of 280 lung_start, 0 of 23 lung_end); lung_end found in 9 of 10 annotated
volumes, errors 0 or −1 slice (≤ 1 mm); lung_start in 10 of 11, errors −17 … +9 mm, median
|error| 2.5 mm, mean +0.7 mm (thin costophrenic recesses fade at 3.5 mm, so the detection
tends to be a slice late). The −17 mm case is a weak label (``regions.json``, low confidence)
with the posterior recess visible 4 slices below it. 143 of 258 OpenKBP volumes get a lung_end,
none a lung_start. −500 HU rather than −400 keeps mottled colon content, as dense as lung at
3.5 mm, from joining the lung through the diaphragm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from bodyscore.errors import InputError
from bodyscore.preprocess import PreprocessingConfig, preprocess_slices

__all__ = [
    "DEFAULT_LUNG_DETECTION",
    "LungDetectionConfig",
    "LungExtent",
    "detect_lung_extent",
    "hu_from_cache",
    "lung_anchors_from_cache",
]


@dataclass(frozen=True)
class LungDetectionConfig:
    """Thresholds of :func:`detect_lung_extent` (defaults tuned for precision, see module).

    Attributes
    ----------
    working_spacing_mm : float
        In-plane pixel size the detection runs at (the cache's 3.5 mm).
    air_hu : float
        Voxels below are air or lung, at or above tissue.
    dark_hu : float
        Voxels below are "dark": free gas rather than aerated parenchyma.
    max_dark_share : float
        Largest share of dark voxels in a lung component.
    min_median_hu : float
        Smallest median HU of a lung component (airway and sinus air lie below).
    min_component_ml : float
        Smallest 3-D air component considered lung, mL.
    lateral_mm : float
        A 2-D lung piece counts if its centroid is at least this far from the body's
        left-right centre ...
    large_piece_cm2 : float
        ... or if it is at least this large, cm².
    min_area_cm2 : float
        Lung area for a slice to count as a lung slice, cm².
    min_core_area_cm2 : float
        Lung area some slice of the lung run must reach, cm².
    min_extent_mm : float
        Smallest lung run length along z, mm.
    isolation_mm : float
        No other lung slice may lie within this distance beyond an end ...
    min_body_ratio : float
        ... and the body area there must stay at least this share of the end slice's (a body
        cut by missing data or the scan's edge hides where the lung ends).
    """

    working_spacing_mm: float = 3.5
    air_hu: float = -500.0
    dark_hu: float = -950.0
    max_dark_share: float = 0.10
    min_median_hu: float = -890.0
    min_component_ml: float = 20.0
    lateral_mm: float = 20.0
    large_piece_cm2: float = 20.0
    min_area_cm2: float = 0.25
    min_core_area_cm2: float = 15.0
    min_extent_mm: float = 15.0
    isolation_mm: float = 15.0
    min_body_ratio: float = 0.5


DEFAULT_LUNG_DETECTION = LungDetectionConfig()


@dataclass(frozen=True)
class LungExtent:
    """The lungs' extent along the slice axis of one volume.

    Attributes
    ----------
    lung_start : float or None
        Canonical index (k = 0 most caudal) of the most caudal lung slice; None unless
        unambiguous.
    lung_end : float or None
        Canonical index of the most cranial lung slice (apex); None unless unambiguous.
    volume_ml : float
        Volume of the lung components, mL (0 when none).
    notes : tuple of str
        Why an end is None (one short phrase each).
    """

    lung_start: float | None
    lung_end: float | None
    volume_ml: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def anchors(self) -> dict[str, float]:
        """The unambiguous ends as ``{"lung_start": k, "lung_end": k}`` (absent when None)."""
        ends = {"lung_start": self.lung_start, "lung_end": self.lung_end}
        return {name: k for name, k in ends.items() if k is not None}


def _body_mask(tissue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice body (large tissue components, holes filled) and left-right centre (px)."""
    body = np.zeros_like(tissue)
    centre = np.full(len(tissue), np.nan)
    for k, plane in enumerate(tissue):
        labels, n = ndimage.label(plane)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= 0.25 * sizes.max()) + 1
        body[k] = ndimage.binary_fill_holes(np.isin(labels, keep))
        centre[k] = float(np.mean(np.nonzero(labels == int(np.argmax(sizes)) + 1)[1]))
    return body, centre


def _lung_components(hu: np.ndarray, air: np.ndarray, voxel_ml: float,
                     config: LungDetectionConfig) -> np.ndarray:
    """3-D mask of the air components classified as lung."""
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros_like(air)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    dark = np.bincount(flat, weights=(hu.ravel() < config.dark_hu), minlength=n + 1)
    share = dark / np.maximum(counts, 1)
    lung = (counts * voxel_ml >= config.min_component_ml) & (share <= config.max_dark_share)
    lung[0] = False
    candidates = np.flatnonzero(lung)
    if candidates.size:
        medians = np.asarray(ndimage.median(hu, labels, index=candidates))
        lung[candidates] = medians >= config.min_median_hu
    return np.asarray(lung[labels])


def _lung_area_per_slice(lung: np.ndarray, centre: np.ndarray, pixel_mm: float,
                         config: LungDetectionConfig) -> np.ndarray:
    """Area (cm²) of the large or lateral 2-D lung pieces of every slice."""
    pixel_cm2 = pixel_mm * pixel_mm / 100.0
    area = np.zeros(len(lung))
    for k in np.flatnonzero(lung.any(axis=(1, 2))):
        labels, n = ndimage.label(lung[k])
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:] * pixel_cm2
        columns = ndimage.mean(np.broadcast_to(np.arange(lung.shape[2]), lung[k].shape),
                               labels, index=np.arange(1, n + 1))
        lateral = np.abs(np.asarray(columns) - centre[k]) * pixel_mm >= config.lateral_mm
        area[k] = float(sizes[(sizes >= config.large_piece_cm2) | lateral].sum())
    return area


def _runs(present: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index of every run of True."""
    edges = np.diff(np.concatenate([[0], present.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(),
                    (np.flatnonzero(edges == -1) - 1).tolist(), strict=True))


def _unclear_end(k: int, step: int, runs: list[tuple[int, int]], body_area: np.ndarray, *,
                 window: int, config: LungDetectionConfig) -> str | None:
    """Why the lung end at slice k (looking beyond it in direction ``step``) is unclear."""
    beyond = k + step * np.arange(1, window + 1)
    beyond = beyond[(beyond >= 0) & (beyond < len(body_area))]
    if beyond.size == 0:
        return "lung reaches the volume's end"
    if any(first <= b <= last for first, last in runs for b in beyond.tolist()):
        return "lung pieces beyond the end"
    if body_area[beyond].min() < config.min_body_ratio * body_area[k]:
        return "body cut beyond the end"
    return None


def _ends_from_area(area: np.ndarray, body_area: np.ndarray, z_spacing_mm: float,
                    config: LungDetectionConfig
                    ) -> tuple[float | None, float | None, tuple[str, ...]]:
    runs = _runs(area >= config.min_area_cm2)
    if not runs:
        return None, None, ("no lung",)
    first, last = max(runs, key=lambda r: float(area[r[0]:r[1] + 1].sum()))
    if area[first:last + 1].max() < config.min_core_area_cm2:
        return None, None, ("too little lung",)
    if (last - first + 1) * z_spacing_mm < config.min_extent_mm:
        return None, None, ("lung run too short",)
    window = max(1, round(config.isolation_mm / z_spacing_mm))
    others = [r for r in runs if r != (first, last)]
    below = _unclear_end(first, -1, others, body_area, window=window, config=config)
    above = _unclear_end(last, +1, others, body_area, window=window, config=config)
    notes = [f"{end}: {why}" for end, why in (("lung_start", below), ("lung_end", above)) if why]
    return (None if below else float(first)), (None if above else float(last)), tuple(notes)


def _to_working_grid(hu: np.ndarray, pixel_spacing_mm: tuple[float, float],
                     config: LungDetectionConfig) -> tuple[np.ndarray, float]:
    """HU resampled in-plane to the working spacing, (z, y, x), clipped to [-1000, 1500].

    Spacings within 5 % of the working one are kept as they are. Returns the slices and their
    pixel size in mm.
    """
    target = config.working_spacing_mm
    if all(abs(s - target) <= 0.05 * target for s in pixel_spacing_mm):
        return (np.clip(np.asarray(hu, dtype=np.float32), -1000.0, 1500.0),
                float(np.mean(pixel_spacing_mm)))
    size = max(int(n * s / target + 0.5) for n, s in zip(hu.shape[1:], pixel_spacing_mm,
                                                          strict=True)) + 2
    prep = PreprocessingConfig(target_spacing_mm=target, size=size)
    scaled = preprocess_slices(hu, pixel_spacing_mm=pixel_spacing_mm, config=prep)[:, 0]
    return hu_from_cache(scaled, preprocessing=prep), target


def detect_lung_extent(
    hu: np.ndarray,
    *,
    pixel_spacing_mm: tuple[float, float],
    z_spacing_mm: float,
    config: LungDetectionConfig = DEFAULT_LUNG_DETECTION,
) -> LungExtent:
    """Find the most caudal and the most cranial lung slice where the image is unambiguous.

    Parameters
    ----------
    hu : numpy.ndarray, shape (n, H, W)
        Axial slices in HU, axis order (z, y, x), canonical (k = 0 most caudal); x must be the
        patient's left-right axis (the lateral test uses it).
    pixel_spacing_mm : (float, float)
        In-plane pixel size (y, x), mm; other spacings are resampled to 3.5 mm first.
    z_spacing_mm : float
        Slice step, mm.
    config : LungDetectionConfig
        Thresholds.

    Returns
    -------
    LungExtent
        ``lung_start`` / ``lung_end`` as canonical slice indices, or None (with a note) where
        the lung reaches the volume's end, there is too little lung, or another lung candidate
        lies just beyond the end.

    Raises
    ------
    InputError
        If the array is not 3-D or a spacing is not positive.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3 or hu.shape[0] == 0:
        raise InputError(f"<array>: expected slices of shape (n, H, W), got {hu.shape}")
    if not (z_spacing_mm > 0 and all(s > 0 for s in pixel_spacing_mm)):
        raise InputError(f"<array>: spacings must be positive, got {pixel_spacing_mm} and "
                         f"{z_spacing_mm} mm")
    grid, pixel_mm = _to_working_grid(
        hu, (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])), config)
    tissue = grid >= config.air_hu
    body, centre = _body_mask(tissue)
    voxel_ml = pixel_mm * pixel_mm * z_spacing_mm / 1000.0
    lung = _lung_components(grid, body & ~tissue, voxel_ml, config)
    area = _lung_area_per_slice(lung, centre, pixel_mm, config)
    body_cm2 = body.sum(axis=(1, 2)) * pixel_mm * pixel_mm / 100.0
    start, end, notes = _ends_from_area(area, body_cm2, z_spacing_mm, config)
    return LungExtent(lung_start=start, lung_end=end,
                      volume_ml=float(lung.sum() * voxel_ml), notes=notes)


def hu_from_cache(slices: np.ndarray, *, preprocessing: PreprocessingConfig) -> np.ndarray:
    """Undo the cache's scaling and slice layout: [-1, 1] (rows = x) → HU, (n, y, x) float32.

    Inverse of :func:`bodyscore.preprocess.scale_hu` (HU clipped to the preprocessing window)
    and of the bpreg layout of :func:`bodyscore.preprocess.preprocess_slices` (rows follow x,
    columns y).
    """
    x = np.asarray(slices, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise InputError(f"<cache>: expected slices (n, H, W) or (n, 1, H, W), got {x.shape}")
    scale = (preprocessing.max_hu - preprocessing.min_hu) / 2.0
    hu = (x + np.float32(1.0)) * np.float32(scale) + np.float32(preprocessing.min_hu)
    return np.ascontiguousarray(hu.transpose(0, 2, 1))


def lung_anchors_from_cache(
    slices: np.ndarray,
    *,
    preprocessing: PreprocessingConfig,
    z_spacing_mm: float,
    config: LungDetectionConfig = DEFAULT_LUNG_DETECTION,
) -> dict[str, float]:
    """Unambiguous lung anchors of one cached volume (:mod:`bodyscore.train.data` cache).

    Parameters
    ----------
    slices : numpy.ndarray, shape (n, H, W) or (n, 1, H, W)
        Preprocessed slices in [-1, 1] (float16 or float32), canonical order, bpreg layout.
    preprocessing : PreprocessingConfig
        The cache's preprocessing (HU window, in-plane spacing).
    z_spacing_mm : float
        Slice step, mm.
    config : LungDetectionConfig
        Thresholds.

    Returns
    -------
    dict of str to float
        ``lung_start`` and/or ``lung_end`` (canonical slice index) where unambiguous; empty
        when neither is.
    """
    hu = hu_from_cache(slices, preprocessing=preprocessing)
    spacing = preprocessing.target_spacing_mm
    return detect_lung_extent(hu, pixel_spacing_mm=(spacing, spacing),
                              z_spacing_mm=z_spacing_mm, config=config).anchors()
