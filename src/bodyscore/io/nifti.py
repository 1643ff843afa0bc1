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

import logging
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io._common import (
    NIFTI_SUFFIXES,
    atomic_file,
    check_voxel_count,
    file_meta,
    guard_reader,
    one_line,
    volume_from_ijk,
)
from bodyscore.volume import Volume

__all__ = ["NIFTI_SUFFIXES", "read_nifti", "write_nifti"]

logger = logging.getLogger(__name__)

_DEFLATE_MAX_RATIO = 1100  # deflate cannot compress better than ~1032:1
_GZIP_BLOCK = 2**20


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


def _gunzip_verified(path: Path, *, expected_bytes: int) -> bytearray:
    """Decompress a ``.nii.gz`` file in one pass, checking its CRC-32 and length trailer.

    nibabel stops reading after the image data, so a corrupt trailer (or data that inflates
    without error but is wrong) would pass unnoticed; decompressing once here both checks the
    whole stream and feeds nibabel (no second pass). Output is capped at ``expected_bytes``
    (+1 MiB for extensions): a stream inflating to more than its header declares is refused
    before it can take gigabytes.
    """
    limit = expected_bytes + _GZIP_BLOCK
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    buffer = bytearray()
    try:
        with path.open("rb") as fobj:
            while chunk := fobj.read(_GZIP_BLOCK):
                data = chunk
                while data and not inflater.eof:
                    buffer += inflater.decompress(data, limit + 1 - len(buffer))
                    if len(buffer) > limit:
                        raise InputError(
                            f"{path}: the gzip stream holds more data than the header declares "
                            f"({expected_bytes} bytes); the file is damaged"
                        )
                    data = inflater.unconsumed_tail
                if inflater.eof:
                    break
    except (OSError, zlib.error) as exc:
        raise InputError(
            f"{path}: the gzip stream is corrupt ({one_line(exc)}); the file is damaged, "
            "download or export it again"
        ) from exc
    if not inflater.eof:
        raise InputError(
            f"{path}: the gzip stream ends early; the file is truncated or damaged, "
            "download or export it again"
        )
    return buffer


def _from_verified_gzip(img: Any, path: Path, expected_bytes: int) -> Any:
    """The same image, re-read from the one-pass, CRC-checked decompression of its file."""
    buffer = _gunzip_verified(path, expected_bytes=expected_bytes)
    try:
        return type(img).from_bytes(buffer)
    except _load_errors() as exc:
        raise InputError(f"{path}: the file is truncated or damaged ({one_line(exc)})") from exc


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


@guard_reader
def read_nifti(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI-1/2 file as a canonical CT volume.

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
    import nibabel as nib

    path = Path(path)
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
    if path.name.lower().endswith(".gz"):
        img = _from_verified_gzip(img, path, int(header.get_data_offset()) + n_vox * dtype.itemsize)
    proxy: Any = img.dataobj
    try:
        raw = np.asanyarray(proxy.get_unscaled()).reshape(shape3)
    except errors as exc:
        raise InputError(
            f"{source}: cannot read the voxel data ({one_line(exc)}); the file is damaged"
        ) from exc
    slope = float(proxy.slope)
    inter = float(proxy.inter)
    meta = file_meta("nifti", source, stored_dtype=dtype, file_shape=shape)
    meta["description"] = header["descrip"].tobytes().decode("latin-1").strip("\0 ") or None
    return volume_from_ijk(
        raw, img.affine, source=source, meta=meta, warnings=warnings, hu=(slope, inter)
    )


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
