"""bodyscore.filters against scipy.ndimage (the semantics they copy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from bodyscore.filters import extend_index, gaussian_filter1d, gaussian_kernel1d
from bodyscore.preprocess import resampling_matrix

curves = arrays(np.float64, st.integers(1, 60),
                elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))


@settings(max_examples=200, deadline=None)
@given(values=curves, sigma=st.floats(0.05, 40.0), mode=st.sampled_from(["reflect", "nearest"]),
       truncate=st.sampled_from([3.0, 4.0]))
def test_gaussian_filter1d_equals_scipy(values: np.ndarray, sigma: float, mode: str,
                                        truncate: float) -> None:
    # kernels far longer than the curve too: scipy extends the axis periodically then
    expected = ndimage.gaussian_filter1d(values, sigma, mode=mode, truncate=truncate)
    np.testing.assert_allclose(gaussian_filter1d(values, sigma, mode=mode, truncate=truncate),
                               expected, rtol=1e-12, atol=1e-9)


def test_kernel_and_edges_hand_worked() -> None:
    kernel = gaussian_kernel1d(1.0, 2.0)   # radius int(2.5) = 2
    assert kernel.shape == (5,)
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[1] / kernel[2] == pytest.approx(np.exp(-0.5))
    index = np.arange(-5, 9)
    # reflect, n = 4: ... d | d c b a | a b c d | d c b a | a ...
    np.testing.assert_array_equal(extend_index(index, 4, "reflect"),
                                  [3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0])
    np.testing.assert_array_equal(extend_index(index, 4, "nearest"),
                                  [0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3])
    with pytest.raises(ValueError, match="mode"):
        extend_index(index, 4, "wrap")


@pytest.mark.parametrize(("n_in", "n_out"), [(512, 72), (170, 34), (100, 100), (40, 90), (7, 2)])
def test_resampling_matrix_is_blur_then_linear_resize(n_in: int, n_out: int) -> None:
    """The matrix interpolation ∘ blur equals scipy's blur followed by the resize."""
    from bodyscore.preprocess import bilinear_resize

    sigma = 0.2 * n_in / n_out
    rng = np.random.default_rng(n_in)
    signal = rng.uniform(-1000, 1500, (3, n_in)).astype(np.float32)
    blurred = ndimage.gaussian_filter1d(signal, sigma, axis=1, mode="reflect", truncate=3.0)
    expected = bilinear_resize(blurred[:, None, :], (1, n_out))[:, 0]
    operator = resampling_matrix(n_in, n_out, sigma, 3.0)
    assert operator.shape == (n_out, n_in)
    np.testing.assert_allclose(operator.sum(axis=1), 1.0, atol=1e-6)
    radius = int(3.0 * sigma + 0.5)
    assert np.count_nonzero(operator, axis=1).max() <= 2 * radius + 2   # a band
    np.testing.assert_allclose(signal @ operator.T, expected, atol=2e-3)   # HU: float32 only
