"""Tests of bodyscore.preprocess against hand-worked cases and bpreg's numbers (§3.3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bodyscore.errors import InputError
from bodyscore.preprocess import (
    PreprocessingConfig,
    bilinear_resize,
    blur_sigma,
    is_empty_slice,
    iter_preprocessed_batches,
    pad_or_crop,
    preprocess_slices,
    resampled_size,
    scale_hu,
)
from bodyscore.volume import Volume


def _volume(array: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> Volume:
    return Volume(array=array, spacing_mm=spacing, affine=np.diag([*spacing[::-1], 1.0]))


# -- HU scaling ---------------------------------------------------------------------------------
def test_scale_hu_hand_worked_values():
    hu = np.array([-2000, -1000, 0, 250, 1500, 3000], dtype=np.int16)
    # (x + 1000) * 2 / 2500 - 1: -1000 → -1, 0 → -0.2, 250 → 0, 1500 → 1; clipped outside
    expected = np.array([-1.0, -1.0, -0.2, 0.0, 1.0, 1.0], dtype=np.float32)
    out = scale_hu(hu)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-7)


@given(st.floats(-5000, 5000, allow_nan=False))
def test_scale_hu_is_monotone_and_bounded(value):
    out = float(scale_hu(np.array([value]))[0])
    assert -1.0 <= out <= 1.0
    assert out <= float(scale_hu(np.array([value + 10.0]))[0])


# -- output size and sigma (bpreg-reference §3.3 step 4) ------------------------------------------
@pytest.mark.parametrize(
    ("n", "spacing", "size", "sigma"),
    [(512, 0.7, 102, 1.004), (512, 0.977, 143, 0.716), (512, 0.5, 73, 1.403),
     (512, 1.5, 219, 0.468), (128, 3.5, 128, 0.2), (128, 5.0, 183, 0.140)],
)
def test_resampled_size_and_sigma_match_bpreg(n, spacing, size, sigma):
    new = resampled_size(n, spacing_mm=spacing)
    assert new == size
    assert blur_sigma(n, new) == pytest.approx(sigma, abs=1e-3)
    assert blur_sigma(n, new) == pytest.approx(0.2 * n / new)


def test_resampled_size_rounds_half_up():
    # 7 px × 1.75 mm / 3.5 mm = 3.5 → 4 (int(x + 0.5)), not banker's rounding
    assert resampled_size(7, spacing_mm=1.75) == 4
    assert resampled_size(5, spacing_mm=1.75) == 3  # 2.5 → 3


# -- bilinear resize (cv2 INTER_LINEAR semantics) --------------------------------------------------
def test_bilinear_4x4_to_2x2_is_block_mean():
    # scale 2: source coordinate (d + 0.5) * 2 - 0.5 = 2d + 0.5 → average of pixels 2d, 2d + 1
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = np.array([[2.5, 4.5], [10.5, 12.5]], dtype=np.float32)
    np.testing.assert_allclose(bilinear_resize(image, (2, 2)), expected, atol=1e-6)


def test_bilinear_non_integer_and_upsampling_hand_worked():
    # 3 → 2: coords 0.25, 1.75 → [0*0.75 + 10*0.25, 10*0.25 + 20*0.75]
    row = np.array([[0.0, 10.0, 20.0]], dtype=np.float32)
    np.testing.assert_allclose(bilinear_resize(row, (1, 2)), [[2.5, 17.5]], atol=1e-6)
    # 2 → 4: coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    row = np.array([[0.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(bilinear_resize(row, (1, 4)), [[0.0, 1.0, 3.0, 4.0]], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.integers(2, 40), st.integers(2, 40),
       st.floats(-3, 3), st.floats(-3, 3), st.floats(-3, 3))
def test_bilinear_keeps_constants_and_stays_within_bounds(r, c, r2, c2, a, b, k):
    # bilinear interpolation is exact for images linear in the (unclamped) coordinates
    rows, cols = np.meshgrid(np.arange(r), np.arange(c), indexing="ij")
    const = np.full((r, c), k, dtype=np.float32)
    np.testing.assert_allclose(bilinear_resize(const, (r2, c2)), k, atol=1e-5)
    image = (a * rows + b * cols).astype(np.float32)
    out = bilinear_resize(image, (r2, c2))
    assert out.min() >= image.min() - 1e-4
    assert out.max() <= image.max() + 1e-4


@pytest.mark.parametrize("use_ipp", [False, True])
def test_bilinear_matches_opencv_when_installed(use_ipp):
    cv2 = pytest.importorskip("cv2")
    cv2.ipp.setUseIPP(use_ipp)
    rng = np.random.default_rng(0)
    try:
        for r, c, r2, c2 in [(512, 512, 102, 102), (100, 170, 37, 80), (128, 128, 146, 146)]:
            x = rng.uniform(-1, 1, (r, c)).astype(np.float32)
            ref = cv2.resize(x, (c2, r2), interpolation=cv2.INTER_LINEAR)
            # plain OpenCV is bit-exact; its Intel-IPP path (default in wheels) differs ≤ 5e-5
            np.testing.assert_allclose(bilinear_resize(x, (r2, c2)), ref,
                                       atol=1e-4 if use_ipp else 1e-7)
    finally:
        cv2.ipp.setUseIPP(True)


# -- pad / crop ------------------------------------------------------------------------------------
def test_pad_offsets_put_extra_pixel_at_the_end():
    image = np.zeros((1, 125, 130), dtype=np.float32)
    out = pad_or_crop(image, size=128)
    assert out.shape == (1, 128, 128)
    # rows: 125 → pad (1, 2) with -1; cols: 130 → crop from (130 - 128)//2 = 1
    assert np.all(out[0, 0] == -1)
    assert np.all(out[0, 126:] == -1)
    assert np.all(out[0, 1:126] == 0)
    cols = np.arange(131, dtype=np.float32)[None, None, :].repeat(128, axis=1)
    cropped = pad_or_crop(cols, size=128)
    assert cropped[0, 0, 0] == 1
    assert cropped[0, 0, -1] == 128


# -- whole pipeline --------------------------------------------------------------------------------
def test_preprocess_equals_scipy_reference_pipeline():
    rng = np.random.default_rng(1)
    hu = rng.integers(-1200, 1600, size=(3, 150, 170)).astype(np.int16)  # (z, y, x)
    ps_y, ps_x = 0.9, 0.7
    out = preprocess_slices(hu, pixel_spacing_mm=(ps_y, ps_x))
    assert out.shape == (3, 1, 128, 128)
    assert out.dtype == np.float32
    # reference written like bpreg: (x, y, z) array, gaussian_filter, per-slice resize
    x = np.clip(hu.transpose(2, 1, 0).astype(np.float32), -1000, 1500)
    x = (x + 1000) * 2 / 2500 - 1
    nx, ny = int(170 * ps_x / 3.5 + 0.5), int(150 * ps_y / 3.5 + 0.5)
    assert (nx, ny) == (34, 39)
    x = ndimage.gaussian_filter(x, sigma=(0.2 / (nx / 170), 0.2 / (ny / 150), 0), truncate=3)
    for k in range(3):
        slice_ = bilinear_resize(x[:, :, k], (nx, ny))
        expected = np.full((128, 128), -1, dtype=np.float32)
        r0, c0 = (128 - nx) // 2, (128 - ny) // 2
        expected[r0 : r0 + nx, c0 : c0 + ny] = slice_
        np.testing.assert_allclose(out[k, 0], expected, atol=1e-6)


def test_layout_rows_follow_x():
    hu = np.full((1, 128, 128), -1000, dtype=np.int16)  # 3.5 mm: no resize, no padding
    hu[0, :, 10] = 1500  # a line of constant x (column 10 of the (y, x) slice)
    out = preprocess_slices(hu, pixel_spacing_mm=(3.5, 3.5))
    assert np.all(out[0, 0, 10, :] > 0.5)  # → row 10 of the network input
    assert np.all(out[0, 0, 50, :] < -0.9)


def test_too_small_slices_raise_input_error():
    with pytest.raises(InputError, match="too small"):
        preprocess_slices(np.zeros((1, 4, 4)), pixel_spacing_mm=(0.5, 0.5))


def test_empty_slice_detection():
    hu = np.full((3, 100, 100), -1024, dtype=np.int16)
    hu[1, 40:60, 40:60] = 40
    batch = preprocess_slices(hu, pixel_spacing_mm=(1.3, 1.3))
    np.testing.assert_array_equal(is_empty_slice(batch), [True, False, True])


def test_iter_batches_covers_indices_in_chunks():
    rng = np.random.default_rng(2)
    array = rng.integers(-1000, 1000, size=(7, 60, 50)).astype(np.int16)
    volume = _volume(array, spacing=(2.0, 3.0, 3.0))
    chunks = list(iter_preprocessed_batches(volume, batch_size=3))
    assert [len(i) for i, _ in chunks] == [3, 3, 1]
    stacked = np.concatenate([b for _, b in chunks])
    np.testing.assert_array_equal(stacked, preprocess_slices(array, pixel_spacing_mm=(3.0, 3.0)))
    picked = list(iter_preprocessed_batches(volume, batch_size=4, slice_indices=[5, 1]))
    np.testing.assert_array_equal(picked[0][0], [5, 1])
    np.testing.assert_array_equal(picked[0][1], stacked[[5, 1]])


def test_config_round_trip_and_validation():
    cfg = PreprocessingConfig(target_spacing_mm=3.0, size=96)
    assert PreprocessingConfig.from_dict(cfg.to_dict()) == cfg
    assert PreprocessingConfig.from_dict(None) == PreprocessingConfig()
    with pytest.raises(ValueError, match="unknown"):
        PreprocessingConfig.from_dict({"bogus": 1})
    out = preprocess_slices(np.zeros((1, 50, 50)), pixel_spacing_mm=(3.0, 3.0), config=cfg)
    assert out.shape == (1, 1, 96, 96)


@settings(max_examples=25, deadline=None)
@given(st.integers(8, 300), st.integers(8, 300), st.floats(0.3, 6.0), st.floats(0.3, 6.0))
def test_output_shape_and_range_for_any_geometry(ny, nx, spacing_y, spacing_x):
    hu = np.random.default_rng(ny * 1000 + nx).integers(-2000, 3000, size=(2, ny, nx))
    try:
        out = preprocess_slices(hu, pixel_spacing_mm=(spacing_y, spacing_x))
    except InputError:
        assert min(resampled_size(nx, spacing_mm=spacing_x),
                   resampled_size(ny, spacing_mm=spacing_y)) < 2
        return
    assert out.shape == (2, 1, 128, 128)
    assert out.min() >= -1.0
    assert out.max() <= 1.0 + 1e-6
