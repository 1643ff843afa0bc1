"""Synthetic CT volumes (thighs → vertex) with exactly known landmarks, for training and tests.

See ``docs/synth.md``. Public API: :class:`SynthConfig`, :class:`SyntheticCT`,
:func:`generate_volume`, :func:`generate_dataset`.
"""

from bodyscore.synth.anatomy import LANDMARK_NAMES, PUBLISHED_SCORES, BodyPlan
from bodyscore.synth.generate import SynthConfig, SyntheticCT, generate_dataset, generate_volume

__all__ = [
    "LANDMARK_NAMES",
    "PUBLISHED_SCORES",
    "BodyPlan",
    "SynthConfig",
    "SyntheticCT",
    "generate_dataset",
    "generate_volume",
]
