"""Use case 3: data sanity checks from the slope of the score curve (thesis sec. 4.3.3).

A straight line fitted to the cleaned slice scores versus z (mm) has slope m_X. Compared with
the expected slope m̄s of the model's training volumes it tells whether

* the z-axis is reversed (m_X < 0: the image content runs head → feet while the geometry says
  feet → head),
* the z-spacing is plausible (eq. 4.19–4.20: r = |m_X| / m̄s, γ̂ = |1 − r| ≤ θ),
* and which z-spacing the content suggests (eq. 4.21: ẑ = m_X · dz / m̄s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bodyscore.errors import InputError
from bodyscore.postprocess import fit_slope

__all__ = ["DEFAULT_SLOPE_THRESHOLD", "SanityChecks", "check_sanity"]

#: Threshold θ on the expected relative error γ̂ (thesis sec. 4.3.3, bpreg: 0.28).
DEFAULT_SLOPE_THRESHOLD = 0.28


@dataclass(frozen=True)
class SanityChecks:
    """Outcome of the data sanity checks of one volume (thesis sec. 4.3.3).

    Attributes
    ----------
    reverse_z_ordering : bool
        True when the fitted slope is negative (False when it is undefined).
    observed_slope : float or None
        m_X, score units per mm; None with fewer than 2 valid cleaned scores.
    expected_slope : float
        m̄s, score units per mm.
    slope_ratio : float or None
        r = |m_X| / m̄s (eq. 4.19; absolute value as in bpreg).
    relative_error : float or None
        γ̂ = |1 − r| (eq. 4.20).
    valid_z_spacing : bool or None
        γ̂ ≤ θ; None when undefined.
    expected_z_spacing : float or None
        ẑ = m_X · dz / m̄s in mm (eq. 4.21, signed like bpreg: negative for reversed volumes).
    threshold : float
        θ used.
    """

    reverse_z_ordering: bool
    observed_slope: float | None
    expected_slope: float
    slope_ratio: float | None
    relative_error: float | None
    valid_z_spacing: bool | None
    expected_z_spacing: float | None
    threshold: float


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def check_sanity(
    cleaned: Sequence[float] | np.ndarray,
    *,
    z_mm: Sequence[float] | np.ndarray,
    z_spacing_mm: float,
    slope_mean: float,
    threshold: float = DEFAULT_SLOPE_THRESHOLD,
) -> SanityChecks:
    """Reverse z-ordering and z-spacing checks (thesis sec. 4.3.3, eq. 4.19–4.21).

    Parameters
    ----------
    cleaned : array_like, shape (n,)
        Cleaned slice scores (0–100 scale), NaN where missing.
    z_mm : array_like, shape (n,)
        Slice positions in mm along the axis the volume claims is feet → head.
    z_spacing_mm : float
        Nominal slice spacing dz in mm (from the header).
    slope_mean : float
        Expected slope m̄s in score units per mm (> 0).
    threshold : float
        θ: the z-spacing is valid when γ̂ ≤ θ (bpreg: invalid iff γ̂ > θ).

    Returns
    -------
    SanityChecks
    """
    if not (math.isfinite(slope_mean) and slope_mean > 0):
        raise InputError(f"slope_mean: must be a finite value > 0, got {slope_mean}")
    if not (math.isfinite(z_spacing_mm) and z_spacing_mm > 0):
        raise InputError(f"z_spacing_mm: must be a finite value > 0, got {z_spacing_mm}")
    slope, _ = fit_slope(cleaned, z_mm=z_mm)
    ratio = abs(slope) / slope_mean  # eq. 4.19
    error = abs(1.0 - ratio)  # eq. 4.20
    return SanityChecks(
        reverse_z_ordering=bool(slope < 0),
        observed_slope=_finite_or_none(slope),
        expected_slope=float(slope_mean),
        slope_ratio=_finite_or_none(ratio),
        relative_error=_finite_or_none(error),
        valid_z_spacing=bool(error <= threshold) if math.isfinite(error) else None,
        expected_z_spacing=_finite_or_none(slope * z_spacing_mm / slope_mean),  # eq. 4.21
        threshold=float(threshold),
    )
