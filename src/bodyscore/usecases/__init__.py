"""The three use cases of slice scores (thesis sec. 4.3).

* :mod:`~bodyscore.usecases.bodypart` — body part examined dictionary and tag (sec. 4.3.1).
* :mod:`~bodyscore.usecases.crop` — known region cropping (sec. 4.3.2).
* :mod:`~bodyscore.usecases.sanity` — z-ordering and z-spacing checks (sec. 4.3.3).
"""

from bodyscore.usecases.bodypart import body_part_examined, body_part_examined_tag
from bodyscore.usecases.crop import (
    CropBounds,
    SliceRange,
    bounds_from_landmarks,
    bounds_from_results,
    bounds_from_scores,
    slices_in_bounds,
)
from bodyscore.usecases.sanity import SanityChecks, check_sanity

__all__ = [
    "CropBounds",
    "SanityChecks",
    "SliceRange",
    "body_part_examined",
    "body_part_examined_tag",
    "bounds_from_landmarks",
    "bounds_from_results",
    "bounds_from_scores",
    "check_sanity",
    "slices_in_bounds",
]
