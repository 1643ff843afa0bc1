"""Helpers shared by the readers: reorientation to RAS+, HU dtype choice, size guards, atomic paths.

Every reader turns its file into ``data_ijk`` (voxel axes i, j, k in the file's own order) plus a
NIfTI-style RAS+ affine and hands both to :func:`volume_from_ijk`, which reorients the voxel axes
to the closest RAS+ layout (like ``nibabel.as_closest_canonical``), remembers which file axis is
the slice axis and whether it was flipped, and returns a canonical
:class:`~bodyscore.volume.Volume`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from bodyscore.errors import BodyscoreError, InputError, OutputError
from bodyscore.export.atomic import atomic_path, describe_os_error
from bodyscore.volume import Volume

__all__ = [
    "AIR_HU",
    "MAX_VOXELS",
    "IjkGeometry",
    "atomic_dir",
    "atomic_file",
    "check_voxel_count",
    "describe_os_error",
    "fill_non_finite",
    "full_suffix",
    "guard_reader",
    "ijk_geometry",
    "input_kind",
    "is_dicom_file",
    "non_finite_warnings",
    "one_line",
    "replace_non_finite",
    "slice_axis_of",
    "to_hu_dtype",
    "unexpected_error",
    "volume_from_ijk",
]

MAX_VOXELS = 2**31
"""Largest voxel count accepted (int16: 4 GiB); more is refused before anything is allocated."""

AIR_HU = -1024
"""Value written where the input has NaN/inf voxels."""

_INT16 = np.iinfo(np.int16)


def check_voxel_count(shape: tuple[int, ...], source: str) -> None:
    """Raise :class:`InputError` when ``shape`` holds more than :data:`MAX_VOXELS` voxels."""
    n = 1
    for s in shape:
        n *= int(s)
    if n > MAX_VOXELS:
        raise InputError(
            f"{source}: header declares {n} voxels (shape {tuple(shape)}), more than the "
            f"{MAX_VOXELS} bodyscore accepts; the header is probably corrupt"
        )


_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Exceptions a dependency (nibabel, pydicom, SimpleITK, zlib) may raise on malformed bytes:
#: any ``Exception`` (pydicom alone has several that derive from ``Exception`` directly).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (Exception,)

UNEXPECTED_MARK = "unexpected error while reading"
"""Text of the safety-net message; the fuzzing harness treats it as a finding to fix."""


def guard_reader(
    func: Callable[Concatenate[Any, _P], _R],
) -> Callable[Concatenate[Any, _P], _R]:
    """Safety net for a reader ``func(path, ...)``: a dependency's exception becomes one line.

    Known problems are reported by the readers themselves with specific messages; anything a
    dependency still raises on malformed bytes becomes an :class:`InputError`
    ``"<path>: unexpected error while reading (<type>: <message>); ..."`` chained to the original,
    instead of a traceback that would stop a batch.
    """

    @functools.wraps(func)
    def reader(path: Any, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(path, *args, **kwargs)
        except BodyscoreError:
            raise
        except DEPENDENCY_ERRORS as exc:
            raise unexpected_error(path, exc) from exc

    return reader


def unexpected_error(path: Any, exc: BaseException) -> InputError:
    """The safety net's one-line :class:`InputError` for a dependency's exception."""
    return InputError(
        f"{path}: {UNEXPECTED_MARK} ({type(exc).__name__}: {one_line(exc)[:300]}); "
        "the file is damaged or unsupported"
    )


def one_line(exc: BaseException) -> str:
    """The exception's text on one line (dependencies' messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


SHEAR_TOLERANCE_DEG = 1.0
"""Largest deviation from 90 degrees between voxel axes accepted without a warning."""


def shear_deg(affine: np.ndarray) -> float:
    """Largest deviation (degrees) from 90 degrees between two columns of ``affine[:3, :3]``."""
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = cols / np.linalg.norm(cols, axis=0)
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, 1)]
    return float(np.degrees(np.arcsin(min(1.0, float(cosines.max())))))


def slice_axis_of(affine: np.ndarray) -> tuple[int, bool]:
    """Return the voxel axis closest to world superior (RAS z) and whether it points inferior.

    Parameters
    ----------
    affine : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k) → RAS+ mm.

    Returns
    -------
    axis : int
        0, 1 or 2: the voxel axis that becomes the canonical slice axis.
    flipped : bool
        True when the index along that axis grows towards the feet.
    """
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return axis, bool(ornt[axis, 1] < 0)


def to_hu_dtype(raw: np.ndarray, *, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Apply ``raw * slope + intercept`` and return int16 when that stays integral, else float32.

    int16 is returned when ``raw`` is an integer array, ``slope`` and ``intercept`` are whole
    numbers and the result fits int16; otherwise float32 (never float64, to keep big volumes
    small). The result is C-contiguous and never shares memory with ``raw``.
    """
    slope = float(slope)
    intercept = float(intercept)
    integral = (
        (np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_)
        and slope.is_integer()
        and intercept.is_integer()
    )
    if integral and raw.size:
        lo, hi = int(raw.min()), int(raw.max())
        ends = sorted((lo * int(slope) + int(intercept), hi * int(slope) + int(intercept)))
        if _INT16.min <= ends[0] and ends[1] <= _INT16.max:
            if slope == 1 and intercept == 0:
                return np.array(raw, dtype=np.int16, order="C", copy=True)
            out = np.array(raw, dtype=np.int32, order="C", copy=True)
            out *= int(slope)
            out += int(intercept)
            return out.astype(np.int16)
    out32 = np.array(raw, dtype=np.float32, order="C", copy=True)
    if slope != 1.0:
        out32 *= np.float32(slope)
    if intercept != 0.0:
        out32 += np.float32(intercept)
    return out32


def fill_non_finite(array: np.ndarray) -> int:
    """Replace NaN/inf voxels of a float array by :data:`AIR_HU` in place; return their count."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    bad = ~np.isfinite(array)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        array[bad] = AIR_HU
    return n_bad


def non_finite_warnings(n_bad: int, n_voxels: int, source: str) -> list[str]:
    """The warning for ``n_bad`` replaced voxels of ``n_voxels``; an error when all were.

    Raises
    ------
    InputError
        When every voxel was non-finite.
    """
    if n_bad == 0:
        return []
    if n_bad == n_voxels:
        raise InputError(f"{source}: every voxel is NaN or infinite; the image holds no data")
    return [f"{n_bad} non-finite voxels (NaN/inf) replaced by {AIR_HU} HU"]


def replace_non_finite(array: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    """Replace NaN/inf voxels by :data:`AIR_HU` in place; return the array and warnings.

    Raises
    ------
    InputError
        When every voxel is non-finite.
    """
    return array, non_finite_warnings(fill_non_finite(array), array.size, source)


@dataclass(frozen=True)
class IjkGeometry:
    """Where the voxel axes (i, j, k) of a file go in the canonical (z, y, x) layout.

    Attributes
    ----------
    ornt : numpy.ndarray, shape (3, 2)
        nibabel orientation (target axis, flip) of each voxel axis, to the closest RAS+ layout.
    affine : numpy.ndarray, shape (4, 4)
        The RAS+-reoriented voxel → world matrix.
    spacing_mm : tuple of float
        (z, y, x) voxel size in mm (z: nominal step).
    z_positions_mm : numpy.ndarray, shape (n,)
        Slice positions in mm, increasing.
    source_slice_index : numpy.ndarray, shape (n,)
        Index in the file's slice order of each canonical slice.
    slice_axis : int
        The file axis (0, 1 or 2) that becomes the slice axis.
    flipped : bool
        True when the file's slice index grows towards the feet.
    meta : mapping
        The reader's meta with ``slice_axis`` added.
    warnings : tuple of str
        The reader's warnings plus geometry warnings (shear).
    """

    ornt: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    z_positions_mm: np.ndarray
    source_slice_index: np.ndarray
    slice_axis: int
    flipped: bool
    meta: Mapping[str, Any]
    warnings: tuple[str, ...]


def ijk_geometry(
    shape_ijk: tuple[int, ...],
    affine: np.ndarray,
    *,
    source: str,
    meta: Mapping[str, Any],
    warnings: list[str],
    stack_positions_mm: np.ndarray | None = None,
) -> IjkGeometry:
    """The canonical geometry of a voxel grid of ``shape_ijk`` (no voxel data needed).

    Parameters as :func:`volume_from_ijk`, which applies the result to the voxels.

    Raises
    ------
    InputError
        Singular, non-finite or degenerate voxel-to-world matrix.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(
            f"{source}: the voxel-to-world matrix is singular or not finite (zero or NaN "
            "spacing/direction); fix the header"
        )
    shear = shear_deg(affine)
    if shear > SHEAR_TOLERANCE_DEG and meta.get("format") != "dicom":  # DICOM reports its tilt
        warnings = [
            *warnings,
            f"voxel axes are not orthogonal (sheared by {shear:.1f}°); read as the closest "
            "orthogonal grid without resampling",
        ]
    ornt = nib.orientations.io_orientation(affine)
    if np.isnan(ornt).any():
        raise InputError(
            f"{source}: the voxel-to-world matrix is degenerate (two voxel axes point the same "
            "way); fix the header"
        )
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    flipped = bool(ornt[axis, 1] < 0)
    n_in = int(shape_ijk[axis])
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape_ijk)

    col = new_affine[:3, :3]
    spacing_xyz = np.sqrt((col**2).sum(axis=0))
    k_unit = new_affine[:3, 2] / spacing_xyz[2]
    if stack_positions_mm is not None and axis == 2 and len(stack_positions_mm) == n_in:
        positions = np.asarray(stack_positions_mm, dtype=np.float64)
        z = -positions[::-1] if flipped else positions
        spacing_z = float(np.median(np.diff(z))) if n_in > 1 else float(spacing_xyz[2])
    else:
        z = float(new_affine[:3, 3] @ k_unit) + np.arange(n_in) * spacing_xyz[2]
        spacing_z = float(spacing_xyz[2])
    order = np.arange(n_in, dtype=np.int64)
    if flipped:
        order = order[::-1].copy()
    return IjkGeometry(
        ornt=ornt,
        affine=new_affine,
        spacing_mm=(spacing_z, float(spacing_xyz[1]), float(spacing_xyz[0])),
        z_positions_mm=z,
        source_slice_index=order,
        slice_axis=axis,
        flipped=flipped,
        meta={**meta, "slice_axis": axis},
        warnings=tuple(warnings),
    )


def volume_from_ijk(
    data_ijk: np.ndarray,
    affine: np.ndarray,
    *,
    source: str,
    meta: Mapping[str, Any],
    warnings: list[str],
    stack_positions_mm: np.ndarray | None = None,
    hu: tuple[float, float] | None = (1.0, 0.0),
) -> Volume:
    """Reorient a voxel array to the closest RAS+ layout and wrap it as a canonical Volume.

    Parameters
    ----------
    data_ijk : numpy.ndarray, shape (i, j, k)
        Stored voxel values in the file's own axis order (NIfTI convention: ``data[i, j, k]``).
    affine : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k) → RAS+ world mm.
    source : str
        Used in messages and as :attr:`Volume.source`.
    meta : mapping
        Header information; ``slice_axis`` (the file axis that becomes the slice axis) is added.
    warnings : list of str
        Reader warnings so far.
    stack_positions_mm : numpy.ndarray, shape (k,), optional
        Real positions (mm, increasing with k) of the file's k-slices along the stacking
        direction (DICOM: may be non-uniform). Used only when k is the slice axis; otherwise
        positions are the projections of the affine's slice column.
    hu : (slope, intercept) or None
        Rescale applied by :func:`to_hu_dtype`; ``None`` when ``data_ijk`` already holds HU in
        its final dtype (then a C-contiguous canonical array is used without a copy).

    Returns
    -------
    Volume
        Canonical (slice 0 most inferior), array (z, y, x) int16 or float32.
    """
    import nibabel as nib

    geometry = ijk_geometry(data_ijk.shape, affine, source=source, meta=meta, warnings=warnings,
                            stack_positions_mm=stack_positions_mm)
    zyx = nib.orientations.apply_orientation(data_ijk, geometry.ornt).transpose(2, 1, 0)
    if hu is None:
        array = np.ascontiguousarray(zyx)
    else:
        array = to_hu_dtype(zyx, slope=hu[0], intercept=hu[1])
    array, extra = replace_non_finite(array, source)
    volume = Volume(
        array=array,
        spacing_mm=geometry.spacing_mm,
        affine=geometry.affine,
        source=source,
        z_positions_mm=geometry.z_positions_mm,
        source_slice_index=geometry.source_slice_index,
        meta=geometry.meta,
        warnings=(*geometry.warnings, *extra),
    )
    return volume.canonical()


# -- format detection ----------------------------------------------------------------------------
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when the file has the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with Path(path).open("rb") as fobj:
            fobj.seek(128)
            return fobj.read(4) == b"DICM"
    except OSError:
        return False


def input_kind(path: Path) -> str:
    """``"nifti"``, ``"itk"`` or ``"dicom"`` for an existing input path.

    Raises
    ------
    InputError
        The path does not exist or is not a supported format.
    """
    if not path.exists():
        if path.is_symlink():
            raise InputError(
                f"{path}: broken symbolic link or symbolic link loop; point it to a real file"
            )
        raise InputError(f"{path}: file or folder not found")
    if path.is_dir():
        return "dicom"
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in ITK_SUFFIXES:
        return "itk"
    if suffix == ".dcm" or is_dicom_file(path):
        return "dicom"
    raise InputError(
        f"{path}: unsupported input format; expected .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, "
        "a DICOM file or a DICOM folder"
    )


# -- header description -------------------------------------------------------------------------
def file_meta(fmt: str, source: str, *, stored_dtype: Any, file_shape: Any) -> dict[str, Any]:
    """``Volume.meta`` of a single-file image (NIfTI, NRRD/MHA): no DICOM attributes."""
    return {
        "format": fmt,
        "modality": None,
        "series_instance_uid": None,
        "study_instance_uid": None,
        "sop_instance_uids": (),
        "files": (source,),
        "body_part_examined": None,
        "manufacturer": None,
        "patient_position": None,
        "gantry_tilt_deg": None,
        "stored_dtype": str(stored_dtype),
        "file_shape": file_shape,
    }


# -- atomic writing -------------------------------------------------------------------------------
# describe_os_error is shared with bodyscore.export.atomic (one wording for write failures)
def full_suffix(path: Path) -> str:
    """``.nii.gz`` for ``a.nii.gz``, ``.nrrd`` for ``a.nrrd`` (lower case)."""
    name = path.name.lower()
    for double in (".nii.gz", ".nii.zst"):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def atomic_file(target: Path) -> contextlib.AbstractContextManager[Path]:
    """Atomic write of ``target`` through a temporary file that keeps the target's suffix, so
    that format-by-extension writers (nibabel, SimpleITK) pick the right format
    (:func:`bodyscore.export.atomic.atomic_path`)."""
    return atomic_path(target, suffix=full_suffix(target))


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it to ``target`` on success.

    ``target`` must not exist or be an empty folder.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(
            f"{target}: already exists and is not an empty folder; choose a new folder or remove it"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({describe_os_error(exc)})") from exc
    try:
        yield tmp
        if target.is_dir():
            target.rmdir()
        tmp.replace(target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({describe_os_error(exc)})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
