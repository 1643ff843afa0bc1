"""Gaussian filtering with ``scipy.ndimage`` semantics, in numpy (no scipy on the scoring path).

Scoring a CT needs two small Gaussian filters: the anti-aliasing blur of the slice
preprocessing (thesis sec. 4.1.1) and the smoothing of the score curve (sec. 4.3, step 3).
Importing ``scipy.ndimage`` costs about 0.3 s per process on the 2-core machine, more than
reading a 120-slice CT (issue 18), so the kernel and the edge rules of
``scipy.ndimage.gaussian_filter1d`` are written out here; ``tests/test_filters.py`` checks them
against scipy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["extend_index", "gaussian_filter1d", "gaussian_kernel1d"]

_MODES = ("reflect", "nearest")


def gaussian_kernel1d(sigma: float, truncate: float) -> np.ndarray:
    """Normalised Gaussian weights at offsets ``-r..r``, ``r = int(truncate · σ + 0.5)``.

    Parameters
    ----------
    sigma : float
        Standard deviation in samples, > 0.
    truncate : float
        Kernel radius in σ (scipy's default: 4).

    Returns
    -------
    numpy.ndarray of float64, shape (2r + 1,)
        Sums to 1 (scipy's ``_gaussian_kernel1d`` of order 0).
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def extend_index(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map indices outside ``0..n-1`` back inside, as ``scipy.ndimage`` extends an axis.

    Parameters
    ----------
    index : numpy.ndarray of int
        Any indices (e.g. ``i + offset`` of a filter tap).
    n : int
        Length of the axis, >= 1.
    mode : {"reflect", "nearest"}
        ``reflect``: d c b a | a b c d | d c b a (the edge sample repeated; numpy's
        ``symmetric``), periodic with period 2n; ``nearest``: a a a | a b c d | d d d.

    Returns
    -------
    numpy.ndarray of int, same shape as ``index``
    """
    if mode == "nearest":
        return np.clip(index, 0, n - 1)
    if mode != "reflect":
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    period = np.mod(index, 2 * n)
    return np.where(period < n, period, 2 * n - 1 - period)


def gaussian_filter1d(values: np.ndarray, sigma: float, *, mode: str = "reflect",
                      truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter of a 1-D curve (``scipy.ndimage.gaussian_filter1d``, order 0).

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        Finite samples (n >= 1).
    sigma : float
        Standard deviation in samples, > 0.
    mode : {"reflect", "nearest"}
        Edge rule (:func:`extend_index`).
    truncate : float
        Kernel radius in σ.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        Accumulated in float64 as scipy does; equal to scipy's result within rounding (~1e-15
        relative).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    kernel = gaussian_kernel1d(sigma, truncate)
    radius = kernel.size // 2
    taps = np.arange(x.size)[:, None] + np.arange(-radius, radius + 1)[None, :]
    return np.asarray(x[extend_index(taps, x.size, mode)] @ kernel)
