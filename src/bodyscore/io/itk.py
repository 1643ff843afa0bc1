"""NRRD / MetaImage (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) reading with SimpleITK.

SimpleITK is an optional dependency (``pip install bodyscore[dicom]``) and is imported lazily.
ITK geometry is LPS: ``world_lps = origin + direction @ diag(spacing) @ index``; the NIfTI-style
RAS affine is ``diag(-1, -1, 1, 1) @ that``. Index axes (i, j, k) are the same as NIfTI's.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io._common import (
    ITK_SUFFIXES,
    check_voxel_count,
    file_meta,
    guard_reader,
    one_line,
    volume_from_ijk,
)
from bodyscore.volume import Volume

__all__ = ["ITK_SUFFIXES", "import_sitk", "itk_affine", "read_itk"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def import_sitk(source: str) -> ModuleType:
    """Import SimpleITK or raise an :class:`InputError` saying how to install it."""
    try:
        import SimpleITK as sitk  # noqa: N813
    except ImportError as exc:
        raise InputError(
            f"{source}: reading this format needs SimpleITK; pip install bodyscore[dicom]"
        ) from exc
    return sitk


def itk_affine(
    *, spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]
) -> np.ndarray:
    """RAS+ affine (4, 4) from ITK ``spacing``, ``origin`` (LPS mm), row-major ``direction``."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


_HEADER_BYTES = 65536
_DEFLATE_MAX_RATIO = 1100  # deflate cannot compress better than ~1032:1
_ENCODING_FACTOR = {  # bytes on disk needed per byte of voxel data, at least
    "raw": 1.0,
    "gzip": 1.0 / _DEFLATE_MAX_RATIO,
    "gz": 1.0 / _DEFLATE_MAX_RATIO,
    "hex": 2.0,
    "text": 1.0 / 8,  # a value takes at least 2 characters; 8 bytes per value at most
    "txt": 1.0 / 8,
    "ascii": 1.0 / 8,
}
_META_KEY = re.compile(rb"^\s*(\w+)\s*=\s*(.*?)\s*$")
_NRRD_KEY = re.compile(rb"^\s*([\w ]+?)\s*:=?\s*(.*?)\s*$")


def _read_header(path: Path) -> tuple[dict[str, str], int]:
    """Text header fields (lower-case keys) and the byte offset where attached data starts."""
    with path.open("rb") as fobj:
        head = fobj.read(_HEADER_BYTES)
    fields: dict[str, str] = {}
    is_nrrd = head.startswith(b"NRRD")
    offset = 0
    for line in head.splitlines(keepends=True):
        offset += len(line)
        stripped = line.strip()
        if is_nrrd and not stripped:
            break
        match = (_NRRD_KEY if is_nrrd else _META_KEY).match(stripped)
        if match is None:
            continue
        key = match.group(1).decode("latin-1").strip().lower()
        fields[key] = match.group(2).decode("latin-1")
        if not is_nrrd and key == "elementdatafile":
            break
    return fields, offset


def _check_file_pattern(path: Path, value: str) -> None:
    """Refuse a data-file *pattern* (``name %d min max step``) that ITK cannot iterate.

    A step of 0 (or a non-numeric one) makes MetaIO divide by zero and kill the process with
    SIGFPE (found by fuzzing), so it is checked before SimpleITK sees the file.
    """
    parts = value.split()
    if len(parts) <= 1 or parts[0].upper() == "LIST":
        return
    try:
        start, stop, step = (int(p) for p in parts[-3:])
    except ValueError:
        start, stop, step = 0, 0, 0
    if len(parts) != 4 or step == 0 or (stop - start) // step < 0 or not value.isprintable():
        raise InputError(
            f"{path}: data file field {value[:60]!r} is neither a file name nor a valid "
            "'pattern min max step'; the header is corrupt"
        )


def _data_source(path: Path, fields: dict[str, str], offset: int) -> tuple[Path, int, str] | None:
    """(data file, data start byte, encoding), or None when the layout is not a simple one."""
    if "elementdatafile" in fields:  # MetaImage
        name = fields["elementdatafile"]
        encoding = "gzip" if fields.get("compresseddata", "").lower() == "true" else "raw"
        if name.upper() == "LOCAL":
            return path, offset, encoding
        if " " in name.strip() or name.upper().startswith("LIST"):
            return None
        return path.parent / name, 0, encoding
    encoding = fields.get("encoding", "raw").lower()
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file is None:
        return path, offset, encoding
    if " " in data_file.strip() or data_file.upper().startswith("LIST"):
        return None
    return path.parent / data_file, 0, encoding


def check_data_size(path: Path, *, n_bytes: int) -> None:
    """Refuse a header that declares more voxel data than the file(s) can hold.

    Runs before SimpleITK allocates the image, so that a corrupt size field (e.g.
    ``sizes: 40000 40000 900``) gives an error instead of a multi-gigabyte allocation. For
    compressed MetaImage data the zlib stream is also inflated to its end (1 MiB blocks), because
    ITK's MetaIO only prints "Uncompress failed" and returns garbage for a corrupt stream.

    Raises
    ------
    InputError
        Not enough data for the declared size, or a corrupt zlib stream.
    """
    fields, offset = _read_header(path)
    for key in ("elementdatafile", "data file", "datafile"):
        if key in fields:
            _check_file_pattern(path, fields[key])
    layout = _data_source(path, fields, offset)
    if layout is None:
        return
    data_file, start, encoding = layout
    factor = _ENCODING_FACTOR.get(encoding)
    if factor is None or not data_file.is_file():
        return  # bzip2 etc., or missing detached file: SimpleITK reports it
    available = max(0, data_file.stat().st_size - start)
    if n_bytes * factor > available:
        raise InputError(
            f"{path}: header declares {n_bytes} bytes of voxel data but the file holds "
            f"{available} ({encoding}); the file is truncated or the header is corrupt"
        )
    if "elementdatafile" in fields and encoding == "gzip":
        _check_zlib(path, data_file, start, n_bytes)


def _check_zlib(path: Path, data_file: Path, start: int, n_bytes: int) -> None:
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
    total = 0
    try:
        with data_file.open("rb") as fobj:
            fobj.seek(start)
            while block := fobj.read(2**20):
                total += len(inflater.decompress(block, max(1, n_bytes + 1 - total)))
                while inflater.unconsumed_tail and total <= n_bytes:
                    total += len(inflater.decompress(inflater.unconsumed_tail, 2**20))
                if total > n_bytes or inflater.eof:
                    break
    except zlib.error as exc:
        raise InputError(
            f"{path}: compressed voxel data is corrupt ({one_line(exc)}); the file is damaged"
        ) from exc
    if total < n_bytes:
        raise InputError(
            f"{path}: compressed voxel data inflates to {total} bytes, {n_bytes} expected; "
            "the file is damaged"
        )


def _component_bytes(sitk: ModuleType, pixel_id: int) -> int:
    """Bytes per component of a SimpleITK pixel type (1 when unknown: a lower bound)."""
    sizes = {
        "UInt8": 1, "Int8": 1, "UInt16": 2, "Int16": 2, "UInt32": 4, "Int32": 4,
        "UInt64": 8, "Int64": 8, "Float32": 4, "Float64": 8,
    }
    for name, size in sizes.items():
        for prefix in ("sitk", "sitkVector"):
            if getattr(sitk, prefix + name, None) == pixel_id:
                return size
    return 1


def _format_name(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}.get(suffix, "itk")


@guard_reader
def read_itk(path: str | os.PathLike[str]) -> Volume:
    """Read a NRRD or MetaImage file as a canonical CT volume.

    Parameters
    ----------
    path : str or os.PathLike
        ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` file holding HU.

    Returns
    -------
    Volume
        array (z, y, x) int16 for integer data that fits, else float32; slice 0 most inferior.

    Raises
    ------
    InputError
        SimpleITK missing, unreadable file, vector/4-D image, zero spacing, all NaN.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise InputError(f"{source}: file not found")
    sitk = import_sitk(source)
    reader = sitk.ImageFileReader()
    reader.SetFileName(source)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(
            f"{source}: not a readable image ({str(exc).strip().splitlines()[-1]})"
        ) from exc
    size = tuple(int(s) for s in reader.GetSize())
    check_voxel_count(size, source)
    header_spacing = tuple(float(s) for s in reader.GetSpacing())
    if not all(np.isfinite(s) and s != 0 for s in header_spacing):
        raise InputError(
            f"{source}: voxel spacing {header_spacing} has zero or NaN values; fix the header"
        )
    item = _component_bytes(sitk, reader.GetPixelID()) * max(1, reader.GetNumberOfComponents())
    check_data_size(path, n_bytes=int(np.prod(size, dtype=np.int64)) * item)
    if reader.GetNumberOfComponents() != 1:
        raise InputError(
            f"{source}: {reader.GetNumberOfComponents()} components per voxel; "
            "expected a scalar CT image"
        )
    warnings: list[str] = []
    if (len(size) == 4 and size[3] != 1) or len(size) > 4 or len(size) < 2:
        raise InputError(
            f"{source}: {len(size)}-D image of size {size}; extract one 3-D CT volume first"
        )
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(
            f"{source}: cannot read the voxel data ({one_line(exc).split(': ')[-1]}); "
            "the file is damaged"
        ) from exc
    dim = image.GetDimension()
    if dim == 4:
        image = image[:, :, :, 0]
    elif dim == 2:
        image = sitk.JoinSeries(image)
        warnings.append("2-D image read as a single axial slice")
    spacing = tuple(float(s) for s in image.GetSpacing())
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(
            f"{source}: voxel spacing {spacing} has zero or NaN values; fix the header"
        )
    affine = itk_affine(spacing=spacing, origin=image.GetOrigin(), direction=image.GetDirection())
    data_ijk = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)
    meta = file_meta(_format_name(path), source, stored_dtype=data_ijk.dtype, file_shape=size)
    return volume_from_ijk(data_ijk, affine, source=source, meta=meta, warnings=warnings)
