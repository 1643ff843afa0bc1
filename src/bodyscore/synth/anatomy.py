"""Body plan of a synthetic patient: landmark heights and habitus, sampled from one RNG.

The landmark heights follow the published body part regression scale (bpreg public model,
``lookuptable_train_val`` "transformed" means; thesis table 4.3 names, sec. 4.3.1): a landmark
with published score ``s`` sits at ``z = s · MM_PER_SCORE · scale`` mm above ``pelvis_start``
(which is world z = 0), plus a small per-landmark jitter, with ``scale = height_cm / 172``.
On the published scale an average adult has about 0.12 score units per mm (``slope_mean`` of
``inference-settings.json``), i.e. pelvis_start → eyes_end ≈ 840 mm.

Organs and bones are placed *around* these heights by :mod:`bodyscore.synth.phantom`, so every
landmark's definition (``landmarks.json`` ``_conventions``) holds exactly in the rendered volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = [
    "LANDMARK_NAMES",
    "MM_PER_SCORE",
    "PUBLISHED_SCORES",
    "REFERENCE_HEIGHT_CM",
    "VERTEBRAE",
    "BodyPlan",
    "sample_body_plan",
]

#: Published mean scores (bpreg public model, ``lookuptable_train_val`` transformed means).
PUBLISHED_SCORES: Mapping[str, float] = MappingProxyType(
    {
        "pelvis_start": 0.0,
        "femur_end": 13.616,
        "pelvis_end": 28.824,
        "kidney": 37.597,
        "lung_start": 44.143,
        "liver_end": 54.479,
        "lung_end": 75.389,
        "teeth": 86.908,
        "nose": 92.567,
        "eyes_end": 100.0,
        "head_end": 107.756,
        "L5": 25.532,
        "L4": 29.414,
        "L3": 33.817,
        "L2": 37.763,
        "L1": 41.478,
        "Th12": 44.952,
        "Th11": 47.725,
        "Th10": 51.069,
        "Th9": 53.994,
        "Th8": 56.856,
        "Th7": 59.851,
        "Th6": 63.177,
        "Th5": 65.964,
        "Th4": 68.499,
        "Th3": 70.973,
        "Th2": 73.401,
        "Th1": 75.794,
        "C7": 77.937,
        "C6": 79.497,
        "C5": 81.826,
        "C4": 83.817,
        "C3": 85.647,
        "C2": 87.206,
        "C1": 89.234,
    }
)

#: The 35 landmark names (thesis table 4.3, bpreg spelling with ``_``), in bpreg's order.
LANDMARK_NAMES: tuple[str, ...] = tuple(PUBLISHED_SCORES)

#: Vertebrae from caudal to cranial (5 lumbar, 12 thoracic, 7 cervical).
VERTEBRAE: tuple[str, ...] = (
    *(f"L{i}" for i in range(5, 0, -1)),
    *(f"Th{i}" for i in range(12, 0, -1)),
    *(f"C{i}" for i in range(7, 0, -1)),
)

REFERENCE_HEIGHT_CM = 172.0
#: mm per score unit for a body of :data:`REFERENCE_HEIGHT_CM` (1 / 0.1194, bpreg slope_mean).
MM_PER_SCORE = 8.4
_MIN_GAP_MM = 2.0  # smallest distance kept between landmarks consecutive on the published scale
_JITTER_SCORE_SD = 0.35  # per-landmark jitter (score units) ...
_JITTER_FRACTION_OF_SD = 0.25  # ... plus this fraction of the published inter-patient SD
_PUBLISHED_SD: Mapping[str, float] = MappingProxyType(
    {
        "pelvis_start": 1.98,
        "femur_end": 1.20,
        "pelvis_end": 1.88,
        "kidney": 4.12,
        "lung_start": 4.39,
        "liver_end": 3.99,
        "lung_end": 1.48,
        "teeth": 3.25,
        "nose": 5.36,
        "eyes_end": 3.79,
        "head_end": 1.79,
    }
)


@dataclass(frozen=True)
class BodyPlan:
    """Where everything is in one synthetic patient (world mm, RAS+; ``pelvis_start`` at z = 0).

    Attributes
    ----------
    landmarks_mm : mapping str -> float
        World z (mm) of the 35 landmarks, strictly increasing in published-score order.
    height_cm : float
        Body height; ``scale = height_cm / REFERENCE_HEIGHT_CM`` multiplies all lengths.
    girth : float
        Left-right width factor of the trunk (≈ 0.8 slim … 1.3 obese).
    depth : float
        Antero-posterior factor of the trunk.
    fat_mm : float
        Subcutaneous fat thickness at the waist in mm.
    arms_up : bool
        Arms raised beside the head (else down beside the trunk).
    contrast : bool
        IV contrast (portal-venous-like: vessels, kidneys, liver, spleen brighter).
    bone_density : float
        Age-like factor on cancellous/cortical bone HU (0.55 osteoporotic … 1.15 young).
    """

    landmarks_mm: Mapping[str, float]
    height_cm: float
    girth: float
    depth: float
    fat_mm: float
    arms_up: bool
    contrast: bool
    bone_density: float

    @property
    def scale(self) -> float:
        """Length factor relative to the reference body (height_cm / 172)."""
        return self.height_cm / REFERENCE_HEIGHT_CM

    @property
    def thigh_start_mm(self) -> float:
        """Lowest z of a full synthetic scan (mid-thigh), mm."""
        return -220.0 * self.scale

    @property
    def vertex_mm(self) -> float:
        """z of the vertex (= head_end), mm."""
        return float(self.landmarks_mm["head_end"])

    def vertebra_extent_mm(self, name: str) -> tuple[float, float]:
        """(bottom, top) z in mm of a vertebral body including half of each adjacent disc."""
        i = VERTEBRAE.index(name)
        z = self.landmarks_mm
        centre = z[name]
        below = z[VERTEBRAE[i - 1]] if i > 0 else centre - (z[VERTEBRAE[1]] - centre)
        if i + 1 < len(VERTEBRAE):
            above = z[VERTEBRAE[i + 1]]
        else:
            above = centre + (centre - z[VERTEBRAE[i - 1]])
        return (0.5 * (below + centre), 0.5 * (centre + above))


def _ordered_landmarks(rng: np.random.Generator, scale: float) -> dict[str, float]:
    names = sorted(PUBLISHED_SCORES, key=lambda n: PUBLISHED_SCORES[n])
    z: dict[str, float] = {}
    previous = -np.inf
    for name in names:
        sd = _JITTER_SCORE_SD + _JITTER_FRACTION_OF_SD * _PUBLISHED_SD.get(name, 1.0)
        score = PUBLISHED_SCORES[name] + (rng.normal(0.0, sd) if name != "pelvis_start" else 0.0)
        value = max(score * MM_PER_SCORE * scale, previous + _MIN_GAP_MM)
        z[name] = float(value)
        previous = value
    return {name: z[name] for name in LANDMARK_NAMES}


def sample_body_plan(
    rng: np.random.Generator,
    *,
    height_range_cm: tuple[float, float] = (150.0, 195.0),
    arms_up_probability: float = 0.3,
    contrast_probability: float = 0.5,
) -> BodyPlan:
    """Sample a random habitus and its landmark heights.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (consumed in a fixed order, so a seed gives one patient).
    height_range_cm : (float, float)
        Uniform range of body height in cm.
    arms_up_probability, contrast_probability : float
        Probabilities of raised arms and of IV contrast.

    Returns
    -------
    BodyPlan
        Landmark z's in mm with ``pelvis_start`` = 0, ordered as on the published scale
        (pelvis_start < femur_end < L5 < pelvis_end < L4 < … < C1 < nose < eyes_end < head_end).
    """
    height = float(rng.uniform(*height_range_cm))
    scale = height / REFERENCE_HEIGHT_CM
    landmarks = _ordered_landmarks(rng, scale)
    return BodyPlan(
        landmarks_mm=MappingProxyType(landmarks),
        height_cm=height,
        girth=float(rng.uniform(0.82, 1.25)),
        depth=float(rng.uniform(0.85, 1.2)),
        fat_mm=float(rng.uniform(6.0, 40.0)),
        arms_up=bool(rng.random() < arms_up_probability),
        contrast=bool(rng.random() < contrast_probability),
        bone_density=float(rng.uniform(0.55, 1.15)),
    )
