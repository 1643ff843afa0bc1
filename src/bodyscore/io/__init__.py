"""Readers (input → canonical :class:`~bodyscore.volume.Volume`) and the crop writer.

:func:`read_volume` dispatches on the path: ``.nii``/``.nii.gz`` → nibabel; ``.nrrd``/``.nhdr``/
``.mha``/``.mhd`` → SimpleITK (optional: ``pip install bodyscore[dicom]``); a folder → the DICOM CT
series in it; a ``.dcm`` file or any file with the DICOM preamble → that file's series within its
folder; a ``dicomweb://`` / ``dicomwebs://`` URL → that series fetched from a DICOMweb
server (:mod:`bodyscore.io.dicomweb`). Every reader returns a canonical volume (slice 0 most
inferior) whose ``source_slice_index`` maps each slice to the input's own slice order, which
:func:`write_cropped` uses to write a slice range back in the input's own format.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.io._common import input_kind, is_dicom_file
from bodyscore.io.nifti import NiftiSlabs, read_nifti, write_nifti
from bodyscore.volume import Volume

if TYPE_CHECKING:
    from bodyscore.io.crop_writer import write_cropped
    from bodyscore.io.dicom import SeriesInfo, list_dicom_series

#: Names imported on first use (PEP 562): scoring a NIfTI file needs neither the DICOM reader
#: nor the crop writer, and their imports are a tenth of a second per process (issue 18).
_LAZY = {
    "write_cropped": "bodyscore.io.crop_writer",
    "SeriesInfo": "bodyscore.io.dicom",
    "list_dicom_series": "bodyscore.io.dicom",
}

__all__ = [
    "NiftiSlabs",
    "SeriesInfo",
    "is_dicom_file",
    "list_dicom_series",
    "open_slabs",
    "read_volume",
    "volume_from_array",
    "write_cropped",
    "write_nifti",
]


def read_volume(path: str | os.PathLike[str], *, series_uid: str | None = None) -> Volume:
    """Read a CT image from a file or DICOM folder as a canonical volume.

    Parameters
    ----------
    path : str or os.PathLike
        NIfTI, NRRD/MetaImage file, DICOM file or DICOM folder, or a DICOMweb series URL
        ``dicomweb[s]://HOST:PORT/PATH?study=UID&series=UID`` (credentials from the
        ``BODYSCORE_DICOMWEB_*`` environment variables).
    series_uid : str, optional
        SeriesInstanceUID to read when a DICOM folder holds several CT series.

    Returns
    -------
    Volume
        array (z, y, x) in HU, slice 0 most inferior; ``meta`` with ``format``, ``modality``,
        ``series_instance_uid``, ``slice_axis``, ...; ``warnings`` for recoverable problems.

    Raises
    ------
    InputError
        Missing or unreadable input (subclasses: :class:`~bodyscore.errors.MultipleSeriesError`,
        :class:`~bodyscore.errors.UnsupportedModalityError`,
        :class:`~bodyscore.errors.DicomSeriesError`).
    """
    if isinstance(path, str) and path.lower().startswith(("dicomweb://", "dicomwebs://")):
        from bodyscore.io.dicomweb import read_dicomweb

        return read_dicomweb(path, series_uid=series_uid)
    path = Path(path)
    kind = input_kind(path)
    if kind == "nifti":
        return read_nifti(path)
    if kind == "itk":
        from bodyscore.io.itk import read_itk

        return read_itk(path)
    from bodyscore.io.dicom import read_dicom_series

    return read_dicom_series(path, series_uid=series_uid)


def open_slabs(path: str | os.PathLike[str]) -> NiftiSlabs | None:
    """A slab-by-slab reader of ``path`` when it can be scored while read, else ``None``.

    NIfTI files whose slice axis is the file's third axis stream
    (:class:`~bodyscore.io.nifti.NiftiSlabs`); other inputs are read whole with
    :func:`read_volume`.

    Raises
    ------
    InputError
        A missing path, or a NIfTI file whose header is unreadable or wrong.
    """
    if isinstance(path, str) and "://" in path:
        return None
    path = Path(path)
    if input_kind(path) != "nifti":
        return None
    slabs = NiftiSlabs(path)
    return slabs if slabs.streamable else None


def volume_from_array(
    array_zyx: np.ndarray, spacing_mm: Sequence[float], *, source: str = "<array>"
) -> Volume:
    """Wrap an array as a Volume with the default RAS affine ``diag(x, y, z spacing)``.

    Parameters
    ----------
    array_zyx : numpy.ndarray, shape (z, y, x)
        HU values; slice 0 is taken as the most inferior slice.
    spacing_mm : sequence of 3 float
        Voxel size (z, y, x) in mm.
    source : str
        Name used in messages.

    Returns
    -------
    Volume
        Canonical volume, ``meta['format'] == "array"``.
    """
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3:
        from bodyscore.errors import InputError

        raise InputError(f"{source}: spacing_mm must have 3 values (z, y, x), got {spacing}")
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    return Volume(
        array=np.asarray(array_zyx),
        spacing_mm=(spacing[0], spacing[1], spacing[2]),
        affine=affine,
        source=source,
        meta={"format": "array", "slice_axis": 2},
    )


def __getattr__(name: str) -> Any:
    """The :data:`_LAZY` names, imported on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
