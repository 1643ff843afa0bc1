"""Slice preprocessing: HU scaling, in-plane resampling to 3.5 mm and 128 × 128 pad/crop.

Thesis sec. 4.1.1 ("Data Preprocessing"): intensities are clipped to [-1000, 1500] HU and scaled
to [-1, 1]; every axial slice is resampled in-plane to 3.5 mm pixels after a Gaussian
anti-aliasing blur with σ' = a / a' · 0.8 (a = 0.25 the reference down-scaling factor, a' the
actual one); the result is centre-padded with -1 (air) or centre-cropped to 128 × 128 pixels.

The numbers follow bpreg 1.1.0 exactly (``notes/bpreg-reference.md`` §3.3) so that a bpreg
model gives the same raw scores:

* scaling ``(clip(x, -1000, 1500) + 1000) * 2 / 2500 - 1`` in float32;
* new size ``int(n * spacing / 3.5 + 0.5)`` per in-plane axis, down-scaling factor
  ``df = n' / n``, blur σ = 0.8 · 0.25 / df pixels, ``truncate=3``, mode ``reflect``, no blur
  along z (the rows axis is blurred first, as scipy does on bpreg's (x, y, z) array);
* bilinear resize with OpenCV ``INTER_LINEAR`` semantics (half-pixel centres, source index
  ``(dst + 0.5) · n / n' - 0.5`` clamped to the edge, float32 weights), implemented here in
  numpy (no OpenCV dependency);
* pad with -1, ``(128 - n) // 2`` pixels before; crop starting at ``(n - 128) // 2``.

Slice layout as bpreg's NIfTI path: image **rows = x** (voxel axis i), **columns = y** (j). A
:class:`~bodyscore.volume.Volume` stores (z, y, x), so a preprocessed slice is built from
``array[k].T``; parity with bpreg therefore holds for RAS-oriented volumes.

Differs from bpreg: slices are processed in chunks (bounded memory, no float copy of the whole
volume) straight from the stored int16 (the clip converts to float32 in the same pass and the
HU → [-1, 1] map, affine, is applied to the small resampled slices: the same numbers within
float32 rounding, ~1e-7), blur and resize are one matrix per axis (two matrix products per
chunk, no scipy: :func:`resampling_matrix`; within 2.4e-7 of bpreg's order of operations), and
degenerate sizes raise :class:`~bodyscore.errors.InputError` instead of returning NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.filters import extend_index, gaussian_kernel1d
from bodyscore.volume import Volume

__all__ = [
    "DEFAULT_PREPROCESSING",
    "EMPTY_SLICE_ATOL",
    "PreprocessingConfig",
    "bilinear_resize",
    "blur_sigma",
    "is_empty_slice",
    "iter_preprocessed_batches",
    "pad_or_crop",
    "preprocess_slices",
    "resampled_size",
    "resampling_matrix",
    "scale_hu",
]

#: Largest deviation from -1 (in scaled units, ≈ 0.0125 HU) tolerated in an "empty" slice.
EMPTY_SLICE_ATOL = 1e-5


@dataclass(frozen=True)
class PreprocessingConfig:
    """The numbers of the slice preprocessing (stored in a model package's ``config.json``).

    Attributes
    ----------
    target_spacing_mm : float
        In-plane pixel size after resampling, mm (bpreg: 3.5).
    size : int
        Output slice size in pixels, square (bpreg: 128).
    min_hu, max_hu : float
        Clipping window in HU, mapped linearly to [-1, 1] (bpreg: -1000, 1500).
    sigma_reference : float
        Blur σ (pixels) at the reference down-scaling factor (thesis: 0.8).
    reference_downscaling_factor : float
        Reference down-scaling factor a (thesis: 0.25); σ' = a / a' · sigma_reference.
    truncate : float
        Gaussian kernel radius in σ (bpreg: 3).
    """

    target_spacing_mm: float = 3.5
    size: int = 128
    min_hu: float = -1000.0
    max_hu: float = 1500.0
    sigma_reference: float = 0.8
    reference_downscaling_factor: float = 0.25
    truncate: float = 3.0

    def __post_init__(self) -> None:
        if not (self.target_spacing_mm > 0 and self.size > 1 and self.max_hu > self.min_hu):
            raise ValueError(f"invalid preprocessing configuration {self}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``preprocessing`` key of ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PreprocessingConfig:
        """Build from a ``config.json`` ``preprocessing`` mapping; missing keys take defaults."""
        if not data:
            return cls()
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}")
        values = dict(data)
        if "size" in values:
            values["size"] = int(values["size"])
        return cls(**values)


DEFAULT_PREPROCESSING = PreprocessingConfig()


def scale_hu(
    array: np.ndarray, *, min_hu: float = -1000.0, max_hu: float = 1500.0
) -> np.ndarray:
    """Clip HU to ``[min_hu, max_hu]`` and map linearly to [-1, 1] (float32).

    Parameters
    ----------
    array : numpy.ndarray
        Values in HU, any shape and numeric dtype.

    Returns
    -------
    numpy.ndarray
        float32, same shape: ``(clip(x) - min_hu) * 2 / (max_hu - min_hu) - 1`` computed in the
        order bpreg uses (thesis sec. 4.1.1).
    """
    x = np.empty(np.shape(array), dtype=np.float32)  # C-contiguous whatever the input strides
    x[...] = array
    np.clip(x, np.float32(min_hu), np.float32(max_hu), out=x)
    x -= np.float32(min_hu)
    x *= np.float32(2)
    x /= np.float32(max_hu - min_hu)
    x -= np.float32(1)
    return x


def resampled_size(n: int, *, spacing_mm: float, target_spacing_mm: float = 3.5) -> int:
    """Number of pixels after resampling ``n`` pixels of ``spacing_mm`` to ``target_spacing_mm``.

    bpreg: ``int(n / (target / spacing) + 0.5)``, i.e. ``n · spacing / target`` rounded half up
    (512 px at 0.7 mm → 102).
    """
    return int(n / (target_spacing_mm / spacing_mm) + 0.5)


def blur_sigma(n: int, n_new: int, config: PreprocessingConfig = DEFAULT_PREPROCESSING) -> float:
    """Anti-aliasing σ in input pixels: ``a / a' · 0.8`` with ``a' = n_new / n`` (thesis 4.1.1)."""
    return config.sigma_reference * config.reference_downscaling_factor / (n_new / n)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and float32 weights of OpenCV INTER_LINEAR along one axis."""
    scale = n_in / n_out
    fx = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(fx).astype(np.int64)
    frac = fx - i0.astype(np.float32)
    low = i0 < 0
    frac[low] = 0.0
    i0[low] = 0
    high = i0 >= n_in - 1
    frac[high] = 0.0
    i0[high] = n_in - 1
    i1 = np.minimum(i0 + 1, n_in - 1)
    w0 = (np.float32(1) - frac).astype(np.float32)
    return i0, i1, w0, frac.astype(np.float32)


def bilinear_resize(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes with OpenCV ``INTER_LINEAR`` semantics (no anti-aliasing).

    Output pixel ``d`` samples source coordinate ``(d + 0.5) · n_in / n_out - 0.5`` (half-pixel
    centres), clamped to the first/last pixel; the columns are interpolated first, then the rows,
    with float32 weights, as ``cv2.resize`` does.

    Parameters
    ----------
    images : numpy.ndarray, shape (..., rows, cols), float32
    shape : tuple of int
        ``(rows_out, cols_out)``.

    Returns
    -------
    numpy.ndarray, shape (..., rows_out, cols_out), float32
    """
    images = np.asarray(images, dtype=np.float32)
    rows_out, cols_out = shape
    rows_in, cols_in = images.shape[-2:]
    if (rows_out, cols_out) == (rows_in, cols_in):
        return images.copy()
    # columns first, then rows, as cv2
    out = _interpolate_axis(images, images.ndim - 1, _linear_taps(cols_in, cols_out))
    return _interpolate_axis(out, images.ndim - 2, _linear_taps(rows_in, rows_out))


_Taps = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _interpolate_axis(images: np.ndarray, axis: int, taps: _Taps) -> np.ndarray:
    """Linear interpolation along one axis with precomputed taps (float32 arithmetic)."""
    i0, i1, w0, w1 = taps
    shape = [1] * images.ndim
    shape[axis] = -1
    out = np.take(images, i0, axis=axis) * w0.reshape(shape)
    out += np.take(images, i1, axis=axis) * w1.reshape(shape)
    return out


def pad_or_crop(images: np.ndarray, *, size: int = 128, fill: float = -1.0) -> np.ndarray:
    """Centre-pad (with ``fill``) or centre-crop the last two axes to ``size × size``.

    Padding puts ``(size - n) // 2`` pixels before and the rest after; cropping starts at
    ``(n - size) // 2`` (bpreg ``padding`` / ``A.CenterCrop``).
    """
    out = images
    pads: list[tuple[int, int]] = [(0, 0)] * (images.ndim - 2)
    slices: list[slice] = [slice(None)] * (images.ndim - 2)
    for n in images.shape[-2:]:
        if n < size:
            pads.append(((size - n) // 2, (size - n + 1) // 2))
            slices.append(slice(None))
        else:
            pads.append((0, 0))
            start = (n - size) // 2
            slices.append(slice(start, start + size))
    out = out[tuple(slices)]
    if any(p != (0, 0) for p in pads):
        out = np.pad(out, pads, mode="constant", constant_values=np.float32(fill))
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess_slices(
    array_zyx: np.ndarray,
    *,
    pixel_spacing_mm: tuple[float, float],
    target_spacing_mm: float = 3.5,
    size: int = 128,
    min_hu: float = -1000.0,
    max_hu: float = 1500.0,
    config: PreprocessingConfig | None = None,
) -> np.ndarray:
    """Preprocess axial slices for the network (thesis sec. 4.1.1, bpreg ``Nifti2Npy``).

    Parameters
    ----------
    array_zyx : numpy.ndarray, shape (n, y, x)
        Slices in HU (any numeric dtype); only this chunk is converted to float32.
    pixel_spacing_mm : tuple of float
        In-plane pixel size ``(y, x)`` in mm.
    target_spacing_mm, size, min_hu, max_hu : float, int
        Ignored when ``config`` is given (which then supplies every number).

    Returns
    -------
    numpy.ndarray, shape (n, 1, size, size), float32
        Values in [-1, 1]; rows follow x, columns follow y (bpreg layout); -1 is air/padding.

    Raises
    ------
    InputError
        If a resampled in-plane size is below 2 pixels (bpreg returns NaN there).
    """
    if config is None:
        config = PreprocessingConfig(
            target_spacing_mm=target_spacing_mm, size=size, min_hu=min_hu, max_hu=max_hu
        )
    array_zyx = np.asarray(array_zyx)
    if array_zyx.ndim != 3:
        raise InputError(f"<array>: expected slices of shape (n, y, x), got {array_zyx.shape}")
    spacing_y, spacing_x = (float(s) for s in pixel_spacing_mm)
    n_cols, n_rows = array_zyx.shape[1:]  # bpreg columns (y), rows (x)
    target = config.target_spacing_mm
    rows_new = resampled_size(n_rows, spacing_mm=spacing_x, target_spacing_mm=target)
    cols_new = resampled_size(n_cols, spacing_mm=spacing_y, target_spacing_mm=target)
    if rows_new < 2 or cols_new < 2:
        raise InputError(
            f"<array>: an in-plane size of {n_cols}x{n_rows} px (y, x) at "
            f"{spacing_y:g}x{spacing_x:g} mm resamples to {cols_new}x{rows_new} px at "
            f"{target} mm; the slices are too small to score"
        )
    if array_zyx.shape[0] == 0:
        return np.empty((0, 1, config.size, config.size), dtype=np.float32)
    resized = _to_unit_range(_resample_clipped(array_zyx, (rows_new, cols_new), config), config)
    return pad_or_crop(resized.transpose(0, 2, 1), size=config.size)[:, None]


def _to_unit_range(x: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """Clipped HU → [-1, 1] in place, the steps of :func:`scale_hu` after the clip."""
    x -= np.float32(config.min_hu)
    x *= np.float32(2)
    x /= np.float32(config.max_hu - config.min_hu)
    x -= np.float32(1)
    return x


def _resample_clipped(
    array_zyx: np.ndarray, shape_xy: tuple[int, int], config: PreprocessingConfig
) -> np.ndarray:
    """Clip HU, blur (anti-aliasing) and resize every slice, straight from the stored dtype.

    Works in the input's (k, y, x) layout (x contiguous) and returns (k, y', x') float32 in
    clipped HU. The HU → [-1, 1] map is affine and the blur and interpolation weights sum to
    1, so it commutes with them: applying it to the small result (:func:`_to_unit_range`)
    instead of every input pixel gives the same numbers within float32 rounding. The clip comes
    first, converting int16 to float32 in the same pass.

    bpreg blurs the whole slice (scipy.ndimage.gaussian_filter, mode ``reflect``) and then
    resizes it (cv2.resize INTER_LINEAR). Both are linear and act on one axis at a time, so
    along each axis they are one (n' × n) operator, interpolation ∘ blur
    (:func:`resampling_matrix`), and a slab of slices is resampled by two matrix products,
    ``M_y · X · M_xᵀ``: bpreg's numbers within float32 rounding (~1e-6 of the [-1, 1] range),
    several times faster than blurring every input pixel, and without scipy.
    """
    rows_new, cols_new = shape_xy
    n_cols, n_rows = array_zyx.shape[1:]
    slices = np.empty(array_zyx.shape, dtype=np.float32)  # C-contiguous whatever the input
    np.clip(array_zyx, np.float32(config.min_hu), np.float32(config.max_hu), out=slices,
            casting="unsafe")
    along_x = resampling_matrix(n_rows, rows_new, blur_sigma(n_rows, rows_new, config),
                                config.truncate)
    along_y = resampling_matrix(n_cols, cols_new, blur_sigma(n_cols, cols_new, config),
                                config.truncate)
    return np.matmul(along_y, slices @ along_x.T)


@functools.lru_cache(maxsize=64)
def resampling_matrix(n_in: int, n_out: int, sigma: float, truncate: float) -> np.ndarray:
    """Gaussian anti-aliasing blur then linear resize along one axis, as one matrix.

    ``M = I · B``: ``B`` the Gaussian of σ ``sigma`` pixels with radius
    ``int(truncate · σ + 0.5)`` and mode ``reflect`` (the kernel and edge rule of
    ``scipy.ndimage.gaussian_filter1d``, :mod:`bodyscore.filters`; no blur when σ ≤ 1e-15),
    ``I`` the OpenCV INTER_LINEAR taps (:func:`_linear_taps`); built in float64.

    Parameters
    ----------
    n_in, n_out : int
        Pixels along the axis before and after resampling.
    sigma, truncate : float
        Blur σ in input pixels (:func:`blur_sigma`) and kernel radius in σ.

    Returns
    -------
    numpy.ndarray of float32, shape (n_out, n_in), read-only
        ``out = M @ signal``; each row sums to 1 and has at most 2 radius + 2 non-zero entries.
    """
    blur = np.eye(n_in)
    if sigma > 1e-15:
        kernel = gaussian_kernel1d(sigma, truncate)
        offsets = np.arange(kernel.size) - kernel.size // 2
        blur = np.zeros((n_in, n_in))
        source = extend_index(np.arange(n_in)[:, None] + offsets[None, :], n_in, "reflect")
        np.add.at(blur, (np.repeat(np.arange(n_in), offsets.size), source.ravel()),
                  np.tile(kernel, n_in))
    i0, i1, w0, w1 = _linear_taps(n_in, n_out)
    interpolate = np.zeros((n_out, n_in))
    np.add.at(interpolate, (np.arange(n_out), i0), w0.astype(np.float64))
    np.add.at(interpolate, (np.arange(n_out), i1), w1.astype(np.float64))
    operator = (interpolate @ blur).astype(np.float32)
    operator.setflags(write=False)
    return operator


def is_empty_slice(batch: np.ndarray, *, atol: float = EMPTY_SLICE_ATOL) -> np.ndarray:
    """True for preprocessed slices that are air only (every pixel at -1).

    The network's score s0 of such slices is meaningless (thesis sec. 4.3, step 1).

    Parameters
    ----------
    batch : numpy.ndarray, shape (n, 1, h, w) or (n, h, w)
        Preprocessed slices in [-1, 1].
    atol : float
        Tolerated distance from -1 (float32 rounding of the blur and interpolation weights).

    Returns
    -------
    numpy.ndarray, shape (n,), bool
    """
    flat = np.asarray(batch).reshape(len(batch), -1)
    return np.asarray(np.all(flat <= -1.0 + atol, axis=1))


def iter_preprocessed_batches(
    volume: Volume,
    *,
    batch_size: int = 64,
    slice_indices: Sequence[int] | np.ndarray | None = None,
    config: PreprocessingConfig = DEFAULT_PREPROCESSING,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Preprocess a volume chunk by chunk (bounded memory).

    Parameters
    ----------
    volume : Volume
        The CT; its array order (z, y, x) is used as is (pass a canonical volume).
    batch_size : int
        Slices per chunk; only one chunk is converted to float32 at a time.
    slice_indices : sequence of int, optional
        Slices to process (indices into ``volume.array``, any order); default all.
    config : PreprocessingConfig
        Preprocessing numbers (a model package's ``preprocessing``).

    Yields
    ------
    indices : numpy.ndarray, shape (m,), int64
        The slice indices of the chunk.
    batch : numpy.ndarray, shape (m, 1, size, size), float32
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    indices = (
        np.arange(volume.n_slices, dtype=np.int64)
        if slice_indices is None
        else np.asarray(slice_indices, dtype=np.int64).reshape(-1)
    )
    if indices.size and (indices.min() < 0 or indices.max() >= volume.n_slices):
        raise IndexError(f"slice indices out of range 0..{volume.n_slices - 1}")
    spacing = (volume.spacing_mm[1], volume.spacing_mm[2])
    for start in range(0, indices.size, batch_size):
        chunk = indices[start : start + batch_size]
        contiguous = slice_indices is None  # a view, no copy of the input slices
        slices = volume.array[start : start + chunk.size] if contiguous else volume.array[chunk]
        yield chunk, preprocess_slices(slices, pixel_spacing_mm=spacing, config=config)

