"""NIfTI (``.nii``, ``.nii.gz``) reading and writing with nibabel.

The file is reoriented to the closest RAS+ layout (like ``nibabel.as_closest_canonical``) while
remembering which file axis is the slice axis and whether it was flipped, so every per-slice
output can be reported in the file's own slice order (``Volume.source_slice_index``).

Differences from bpreg: bpreg (``preprocess_nifti``) reads with ``nib.load(...).get_fdata()``
(float64, no size guard) and swaps axes without checking the affine, so a file stored with the
slice axis first or flipped is scored upside down (``notes/bpreg-reference.md``); here the affine
decides, NaN voxels are replaced, and 4-D / huge / truncated files give one-line errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import BodyscoreError, InputError
from bodyscore.io._common import (
    DEPENDENCY_ERRORS,
    NIFTI_SUFFIXES,
    atomic_file,
    check_voxel_count,
    file_meta,
    fill_non_finite,
    guard_reader,
    ijk_geometry,
    non_finite_warnings,
    one_line,
    to_hu_dtype,
    unexpected_error,
    volume_from_ijk,
)
from bodyscore.io._inflate import GzipStream
from bodyscore.volume import Volume, VolumeGeometry

__all__ = [
    "NIFTI_SUFFIXES",
    "NiftiSlabs",
    "import_nibabel_without_pydicom",
    "read_nifti",
    "write_nifti",
]

logger = logging.getLogger(__name__)

_DEFLATE_MAX_RATIO = 1100  # deflate cannot compress better than ~1032:1
_GZIP_SLACK = 2**20  # inflated bytes accepted after the image data (padding, odd writers)


def import_nibabel_without_pydicom() -> None:
    """Import nibabel without letting it import pydicom, for processes that own their imports.

    ``nibabel.nifti1`` imports pydicom (when installed) only to parse the DICOM extension of a
    NIfTI header (ecode 2); pydicom's import is about half of nibabel's (0.2 s of a 1 s CLI
    run, ``benchmarks/RESULTS.md``). Without pydicom nibabel keeps such an extension as raw bytes
    (its own fallback, ``Nifti1Extension``), which bodyscore never reads. pydicom stays
    importable afterwards (the DICOM readers import it themselves). Called by the CLI before
    it reads a NIfTI (cohort workers pay the import once per process, so they do not); a no-op
    once nibabel or pydicom is imported, so a library user's process is never changed behind
    their back.
    """
    if "nibabel" in sys.modules or "pydicom" in sys.modules:
        return
    sys.modules["pydicom"] = None  # type: ignore[assignment]  # makes `import pydicom` fail
    try:
        import nibabel  # noqa: F401
    finally:
        del sys.modules["pydicom"]


def _load_errors() -> tuple[type[BaseException], ...]:
    import nibabel as nib

    return (
        OSError,
        EOFError,
        ValueError,
        OverflowError,
        zlib.error,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    )


def _raw_pixdim(path: Path, header_class: Any) -> np.ndarray:
    """pixdim exactly as stored (nibabel replaces zeros by 1 when it loads a header)."""
    import nibabel as nib

    with nib.openers.ImageOpener(str(path)) as fobj:
        header = header_class.from_fileobj(fobj, check=False)
    return np.asarray(header["pixdim"], dtype=np.float64)


def _check_file_size(path: Path, needed_bytes: int) -> None:
    size = path.stat().st_size
    compressed = path.name.lower().endswith(".gz")
    limit = size * _DEFLATE_MAX_RATIO if compressed else size
    if needed_bytes > limit:
        raise InputError(
            f"{path}: header declares {needed_bytes} bytes of image data but the "
            f"{'compressed ' if compressed else ''}file has {size} bytes; the file is truncated "
            "or the header is corrupt"
        )


def _check_readable(path: Path) -> None:
    """Raise a clear :class:`InputError` when the file cannot be opened for lack of permission
    (nibabel reports it as a generic "Could not read file")."""
    try:
        with path.open("rb"):
            pass
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied; check the file's permissions") from exc
    except OSError:
        pass  # nib.load reports it


def _spatial_shape(shape: tuple[int, ...], source: str) -> tuple[tuple[int, int, int], list[str]]:
    """Return the 3-D shape to use and warnings (2-D → one slice; trailing singletons dropped)."""
    if len(shape) < 2:
        raise InputError(f"{source}: {len(shape)}-D image; expected a 3-D CT volume")
    if len(shape) == 2:
        return (shape[0], shape[1], 1), ["2-D image read as a single axial slice"]
    extra = shape[3:]
    if any(s != 1 for s in extra):
        raise InputError(
            f"{source}: {len(shape)}-D image of shape {shape} (several volumes/channels); "
            "extract one 3-D CT volume first"
        )
    return (shape[0], shape[1], shape[2]), []


@dataclass(frozen=True)
class _Layout:
    """What the header of a NIfTI file says about its voxel data (validated)."""

    path: Path
    file_shape: tuple[int, ...]
    shape3: tuple[int, int, int]  # (i, j, k)
    dtype: np.dtype[Any]
    offset: int
    slope: float
    inter: float
    affine: np.ndarray
    meta: dict[str, Any]
    warnings: list[str]

    @property
    def data_bytes(self) -> int:
        """Bytes of the header, extensions and image data."""
        return self.offset + int(np.prod(self.shape3, dtype=np.int64)) * self.dtype.itemsize

    @property
    def hu_ready(self) -> bool:
        """True when the stored voxels are already HU in int16 (native, no scaling)."""
        return self.dtype == np.dtype(np.int16) and (self.slope, self.inter) == (1.0, 0.0)


def _inspect(path: Path) -> _Layout:
    """Read and check the header (not the voxels) of a NIfTI file.

    Raises
    ------
    InputError
        Missing, unreadable or non-NIfTI file; 4-D data; non-scalar voxels; header sizes that
        the file cannot hold; zero/NaN spacing; more than 2**31 voxels.
    """
    import nibabel as nib

    source = str(path)
    errors = _load_errors()
    _check_readable(path)
    try:
        img: Any = nib.load(source)
    except FileNotFoundError as exc:
        raise InputError(f"{source}: file not found") from exc
    except PermissionError as exc:
        raise InputError(f"{source}: permission denied; check the file's permissions") from exc
    except errors as exc:
        raise InputError(
            f"{source}: not a readable NIfTI image ({one_line(exc)}); check the file"
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{source}: not a NIfTI image ({type(img).__name__})")
    header = img.header
    shape = tuple(int(s) for s in header.get_data_shape())
    if any(s < 0 for s in shape):
        raise InputError(f"{source}: header declares a negative dimension {shape}; fix the header")
    shape3, warnings = _spatial_shape(shape, source)
    check_voxel_count(shape, source)
    dtype = header.get_data_dtype()
    if (
        dtype.fields is not None
        or not (np.issubdtype(dtype, np.number) or dtype == np.bool_)
        or np.issubdtype(dtype, np.complexfloating)
    ):
        raise InputError(f"{source}: voxel type {dtype} is not a scalar intensity; expected CT HU")
    n_vox = int(np.prod(shape, dtype=np.int64))
    _check_file_size(path, int(header.get_data_offset()) + n_vox * dtype.itemsize)
    try:
        pixdim = _raw_pixdim(path, type(header))
    except errors as exc:
        raise InputError(f"{source}: cannot read the NIfTI header ({one_line(exc)})") from exc
    n_spatial = min(len(shape), 3)
    spatial_pixdim = pixdim[1 : 1 + n_spatial]
    if not np.all(np.isfinite(spatial_pixdim)) or np.any(spatial_pixdim == 0):
        raise InputError(
            f"{source}: voxel spacing (pixdim) {tuple(float(p) for p in spatial_pixdim)} has "
            "zero or NaN values; fix the header"
        )
    proxy: Any = img.dataobj  # its offset is where nibabel reads (vox_offset 0 → 352)
    meta = file_meta("nifti", source, stored_dtype=dtype, file_shape=shape)
    meta["description"] = header["descrip"].tobytes().decode("latin-1").strip("\0 ") or None
    return _Layout(
        path=path, file_shape=shape, shape3=shape3, dtype=dtype, offset=int(proxy.offset),
        slope=float(proxy.slope), inter=float(proxy.inter),
        affine=np.asarray(img.affine, dtype=np.float64), meta=meta, warnings=warnings,
    )


class _PlainStream:
    """The voxel bytes of an uncompressed ``.nii`` (same interface as :class:`GzipStream`)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = path.open("rb")

    def __enter__(self) -> _PlainStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def skip(self, n_bytes: int) -> None:
        self._file.seek(n_bytes, os.SEEK_CUR)

    def readinto(self, buffer: np.ndarray) -> None:
        view = buffer.reshape(-1).view(np.uint8)
        if self._file.readinto(view.data) != view.size:
            raise InputError(f"{self._path}: cannot read the voxel data (the file ends inside "
                             "the image data); the file is damaged or truncated")

    def finish(self) -> None:
        """Nothing to check after the data of an uncompressed file."""


@contextlib.contextmanager
def _voxel_stream(layout: _Layout) -> Iterator[_PlainStream | GzipStream]:
    """The file's voxel bytes from the first one on (inflated as they are read for ``.gz``)."""
    path = layout.path
    try:
        stream: _PlainStream | GzipStream = (
            GzipStream(path, limit_bytes=layout.data_bytes + _GZIP_SLACK,
                       expected_bytes=layout.data_bytes)
            if path.name.lower().endswith(".gz")
            else _PlainStream(path)
        )
    except OSError as exc:
        raise InputError(f"{path}: cannot read the voxel data ({one_line(exc)})") from exc
    with stream:
        stream.skip(layout.offset)
        yield stream


@guard_reader
def read_nifti(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI-1/2 file as a canonical CT volume.

    The voxel bytes are inflated straight into the array (ISA-L when python-isal is installed,
    else zlib), the whole gzip stream is read so that its CRC-32 and length are checked, and a
    file stored as int16 HU in RAS order is used without any copy.

    Parameters
    ----------
    path : str or os.PathLike
        ``.nii`` or ``.nii.gz`` file holding HU (after ``scl_slope``/``scl_inter``).

    Returns
    -------
    Volume
        array (z, y, x) int16 when the stored data and scaling are integral, else float32;
        slice 0 most inferior; ``meta['slice_axis']`` is the file axis used as slice axis.

    Raises
    ------
    InputError
        Missing, truncated or non-image file; 4-D data; zero/NaN spacing; all voxels NaN;
        more than 2**31 voxels.
    """
    layout = _inspect(Path(path))
    raw = np.empty(layout.shape3[::-1], dtype=layout.dtype)  # (k, j, i): the file's byte order
    with _voxel_stream(layout) as stream:
        stream.readinto(raw)
        stream.finish()
    return volume_from_ijk(
        raw.transpose(2, 1, 0), layout.affine, source=str(layout.path), meta=layout.meta,
        warnings=layout.warnings, hu=None if layout.hu_ready else (layout.slope, layout.inter),
    )


class NiftiSlabs:
    """A NIfTI file read as canonical slabs of axial slices, inflated while it is read.

    For scoring without holding the volume: header and geometry are known at once
    (:attr:`geometry`), the voxels come slab by slab from :meth:`slabs` and are never all in
    memory together. Works for files whose slice axis is the file's third axis (``k``), as
    nearly every CT NIfTI; :attr:`streamable` says whether this file is one of them (else read
    it with :func:`read_nifti`).

    Parameters
    ----------
    path : str or os.PathLike
        ``.nii`` or ``.nii.gz`` file.

    Raises
    ------
    InputError
        As :func:`read_nifti`, for problems of the header.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._layout = _guarded_inspect(path)
        layout = self._layout
        self._ijk = ijk_geometry(layout.shape3, layout.affine, source=str(layout.path),
                                 meta=layout.meta, warnings=layout.warnings)
        self._n_bad = 0

    @property
    def streamable(self) -> bool:
        """True when slabs of the file's ``k`` axis are slabs of canonical slices."""
        return self._ijk.slice_axis == 2 and bool(self._ijk.affine[2, 2] >= 0)

    @property
    def geometry(self) -> VolumeGeometry:
        """Geometry of the canonical volume; after :meth:`slabs`, with the reading warnings.

        Raises
        ------
        InputError
            After :meth:`slabs`: every voxel was NaN or infinite.
        """
        ijk, (i, j, k) = self._ijk, self._layout.shape3
        n_voxels = i * j * k
        warnings = non_finite_warnings(self._n_bad, n_voxels, str(self._layout.path))
        xyz = [0, 0, 0]
        for axis, size in enumerate((i, j, k)):
            xyz[int(ijk.ornt[axis, 0])] = size
        shape = (xyz[2], xyz[1], xyz[0])
        return VolumeGeometry(
            shape=shape, spacing_mm=ijk.spacing_mm, affine=ijk.affine,
            source=str(self._layout.path), z_positions_mm=ijk.z_positions_mm,
            source_slice_index=ijk.source_slice_index, meta=ijk.meta,
            warnings=(*ijk.warnings, *warnings),
        )

    def slabs(self, n_slices: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Canonical slabs of at most ``n_slices`` slices, in file order.

        Yields
        ------
        indices : numpy.ndarray, shape (m,), int64
            Canonical slice indices of the slab (increasing).
        slab : numpy.ndarray, shape (m, y, x)
            HU, int16 when stored and scaled integrally within int16, else float32 (NaN/inf
            replaced by -1024); the values :func:`read_nifti` gives for these slices.

        Raises
        ------
        InputError
            Truncated or corrupt data, wrong CRC-32 (at the end); not :attr:`streamable`.
        """
        import nibabel as nib

        layout, ijk = self._layout, self._ijk
        if not self.streamable:
            raise InputError(f"{layout.path}: slice axis is not the file's third axis; "
                             "read it whole with read_nifti")
        i, j, k = layout.shape3
        self._n_bad = 0
        with _voxel_stream(layout) as stream:
            for k0 in range(0, k, max(1, n_slices)):
                k1 = min(k, k0 + n_slices)
                raw = np.empty((k1 - k0, j, i), dtype=layout.dtype)
                try:
                    stream.readinto(raw)
                    zyx = nib.orientations.apply_orientation(raw.transpose(2, 1, 0), ijk.ornt)
                    slab = self._to_hu(zyx.transpose(2, 1, 0))
                except BodyscoreError:
                    raise
                except DEPENDENCY_ERRORS as exc:
                    raise unexpected_error(layout.path, exc) from exc
                first = k - k1 if ijk.flipped else k0
                yield np.arange(first, first + k1 - k0, dtype=np.int64), slab
            stream.finish()

    def _to_hu(self, zyx: np.ndarray) -> np.ndarray:
        layout = self._layout
        if layout.hu_ready:
            return np.ascontiguousarray(zyx)
        slab = to_hu_dtype(zyx, slope=layout.slope, intercept=layout.inter)
        self._n_bad += fill_non_finite(slab)
        return slab


@guard_reader
def _guarded_inspect(path: str | os.PathLike[str]) -> _Layout:
    return _inspect(Path(path))


def write_nifti(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write the volume (as it is, usually canonical) as NIfTI, atomically.

    Parameters
    ----------
    volume : Volume
        Written as ``Nifti1Image(volume.array.T, volume.affine)``: int16 when the array is an
        integer type that fits, else float32.
    path : str or os.PathLike
        ``.nii`` or ``.nii.gz``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputError
        The folder is not writable or the disk is full.
    """
    import nibabel as nib

    path = Path(path)
    array = volume.array
    info = np.iinfo(np.int16)
    fits_int16 = np.issubdtype(array.dtype, np.integer) and (
        array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max)
    )
    data = array.astype(np.int16 if fits_int16 else np.float32, copy=False).T
    img = nib.Nifti1Image(data, volume.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    with atomic_file(path) as tmp:
        nib.save(img, str(tmp))
    logger.debug("wrote %s", path)
    return path
