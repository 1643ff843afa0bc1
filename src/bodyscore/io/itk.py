"""NRRD / MetaImage (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) reading with SimpleITK.

SimpleITK is an optional dependency (``pip install bodyscore[dicom]``) and is imported lazily.
ITK geometry is LPS: ``world_lps = origin + direction @ diag(spacing) @ index``; the NIfTI-style
RAS affine is ``diag(-1, -1, 1, 1) @ that``. Index axes (i, j, k) are the same as NIfTI's.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io._common import ITK_SUFFIXES, check_voxel_count, volume_from_ijk
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


def _format_name(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}.get(suffix, "itk")


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
        raise InputError(f"{source}: cannot read the voxel data; the file is damaged") from exc
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
    meta = {
        "format": _format_name(path),
        "modality": None,
        "series_instance_uid": None,
        "study_instance_uid": None,
        "sop_instance_uids": (),
        "files": (source,),
        "body_part_examined": None,
        "manufacturer": None,
        "patient_position": None,
        "gantry_tilt_deg": None,
        "stored_dtype": str(data_ijk.dtype),
        "file_shape": size,
    }
    return volume_from_ijk(data_ijk, affine, source=source, meta=meta, warnings=warnings)
