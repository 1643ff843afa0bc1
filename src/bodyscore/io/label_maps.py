"""Label maps (and further image channels) that follow a CT's known-region crop.

A segmentation is cropped on exactly the slices kept of its CT (thesis sec. 4.3.2, known
region cropping as pre-processing) or keeps its grid with every label outside the region set to
0 (post-processing of a network's output, sec. 5.2.2). The label map must lie on the CT's grid:
same number of voxels along each anatomical axis and the same voxel-to-world matrix after both
are brought to the closest RAS+ layout, so files stored in different axis orders (an LPS NRRD
next to a RAS NIfTI) still match while a resampled or shifted label map is refused.

Inputs: NIfTI and NRRD/MHA label maps (written back in their own format, header and dtype) and
DICOM SEG (read with highdicom through the CT series' SOP Instance UIDs, so the CT must be the
DICOM series the SEG refers to; written as a NIfTI label map of segment numbers on the CT grid).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import InputError, OutputError
from bodyscore.io._common import (
    NIFTI_SUFFIXES,
    atomic_file,
    full_suffix,
    input_kind,
    is_dicom_file,
    one_line,
    slice_axis_of,
)
from bodyscore.io.crop_writer import write_cropped
from bodyscore.io.itk import import_sitk, itk_affine

__all__ = ["Grid", "check_same_grid", "read_grid", "write_label_slices"]

logger = logging.getLogger(__name__)

#: Largest difference (fraction of the smallest voxel size) between two grids' matrices.
GRID_TOLERANCE = 0.05


@dataclass(frozen=True)
class Grid:
    """Voxel grid of a file in the file's own axis order.

    Attributes
    ----------
    source : str
        The file, for messages.
    shape : tuple of int
        Voxels along the file's axes (i, j, k).
    affine : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k) → RAS+ world mm.
    """

    source: str
    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def slice_axis(self) -> int:
        """File axis closest to the body axis (world superior)."""
        return slice_axis_of(self.affine)[0]

    @property
    def n_slices(self) -> int:
        """Voxels along :attr:`slice_axis`."""
        return int(self.shape[self.slice_axis])

    def canonical(self) -> tuple[tuple[int, ...], np.ndarray]:
        """Shape and affine of the grid in the closest RAS+ layout (``nibabel`` orientation)."""
        import nibabel as nib

        ornt = nib.orientations.io_orientation(self.affine)
        shape = [0, 0, 0]
        for axis, (target, _) in enumerate(ornt):
            shape[int(target)] = int(self.shape[axis])
        affine = self.affine @ nib.orientations.inv_ornt_aff(ornt, self.shape)
        return tuple(shape), affine

    def to_canonical(self, start: int, stop: int) -> tuple[int, int]:
        """Slice range ``[start, stop)`` of the file as a range of canonical (feet→head) slices."""
        if slice_axis_of(self.affine)[1]:
            return self.n_slices - stop, self.n_slices - start
        return start, stop

    def from_canonical(self, start: int, stop: int) -> tuple[int, int]:
        """Canonical slice range as a range of the file's own slices."""
        return self.to_canonical(start, stop)  # the flip is its own inverse


def _nifti_grid(path: Path) -> Grid:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI image ({one_line(exc)})") from exc
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise InputError(f"{path}: expected a 3-D image, got shape {shape}")
    return Grid(str(path), (shape[0], shape[1], shape[2]), np.asarray(img.affine, dtype=float))


def _itk_grid(path: Path) -> Grid:
    sitk = import_sitk(str(path))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable image ({one_line(exc)})") from exc
    if reader.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D image, got {reader.GetDimension()}-D")
    size = tuple(int(s) for s in reader.GetSize())
    affine = itk_affine(
        spacing=reader.GetSpacing(), origin=reader.GetOrigin(), direction=reader.GetDirection()
    )
    return Grid(str(path), (size[0], size[1], size[2]), affine)


def _dicom_grid(path: Path, series_uid: str | None) -> Grid:
    from bodyscore.io.dicom import locate_series

    layout = locate_series(path, series_uid=series_uid)
    first = layout.headers[0]
    shape = (int(first.Columns), int(first.Rows), len(layout.files))
    return Grid(layout.source, shape, np.asarray(layout.affine, dtype=float))


def read_grid(path: str | os.PathLike[str], *, series_uid: str | None = None) -> Grid:
    """Grid of a NIfTI / NRRD / MHA file or a DICOM CT series, from its header only.

    Raises
    ------
    InputError
        Missing or unreadable file, not 3-D.
    """
    path = Path(path)
    kind = input_kind(path)
    if kind == "nifti":
        return _nifti_grid(path)
    if kind == "itk":
        return _itk_grid(path)
    return _dicom_grid(path, series_uid)


def check_same_grid(reference: Grid, other: Grid) -> None:
    """Raise :class:`InputError` unless ``other`` lies on ``reference``'s voxel grid.

    Both grids are compared in their closest RAS+ layout: the same voxel counts and the same
    voxel-to-world matrix within :data:`GRID_TOLERANCE` of the smallest voxel size.
    """
    shape_a, affine_a = reference.canonical()
    shape_b, affine_b = other.canonical()
    if shape_a != shape_b:
        raise InputError(
            f"{other.source}: its grid {shape_b} (RAS voxels) differs from the CT's {shape_a} "
            f"({reference.source}); resample the label map onto the CT grid first"
        )
    voxel = float(np.min(np.linalg.norm(affine_a[:3, :3], axis=0)))
    difference = float(np.max(np.abs(affine_a - affine_b)))
    if difference > GRID_TOLERANCE * voxel:
        raise InputError(
            f"{other.source}: its voxel-to-world matrix differs from the CT's by up to "
            f"{difference:.3g} mm ({reference.source}); the label map is not on the CT grid, "
            "resample it onto the CT first"
        )


def _mask_nifti(source: Path, destination: Path, axis: int, start: int, stop: int) -> None:
    import nibabel as nib

    if full_suffix(destination) not in NIFTI_SUFFIXES:
        raise OutputError(f"{destination}: the label map is NIfTI; name the output .nii(.gz)")
    img: Any = nib.load(str(source))
    data = np.asarray(img.dataobj).copy()
    _zero_outside(data, axis, start, stop)
    masked = img.__class__(data, img.affine, img.header)
    with atomic_file(destination) as tmp:
        nib.save(masked, str(tmp))


def _mask_itk(source: Path, destination: Path, axis: int, start: int, stop: int) -> None:
    sitk = import_sitk(str(source))
    if destination.suffix.lower() not in (".nrrd", ".mha"):
        raise OutputError(f"{destination}: name the output .nrrd or .mha (single-file formats)")
    image = sitk.ReadImage(str(source))
    data = sitk.GetArrayFromImage(image)  # (k, j, i)
    _zero_outside(data, 2 - axis, start, stop)
    masked = sitk.GetImageFromArray(data)
    masked.CopyInformation(image)
    for key in image.GetMetaDataKeys():
        masked.SetMetaData(key, image.GetMetaData(key))
    with atomic_file(destination) as tmp:
        try:
            sitk.WriteImage(masked, str(tmp), useCompression=True)
        except RuntimeError as exc:
            raise OutputError(f"{destination}: cannot write output ({one_line(exc)})") from exc


def _zero_outside(data: np.ndarray, axis: int, start: int, stop: int) -> None:
    """Set every voxel outside slices ``[start, stop)`` along ``axis`` to 0, in place."""
    index: list[slice] = [slice(None)] * data.ndim
    index[axis] = slice(0, start)
    data[tuple(index)] = 0
    index[axis] = slice(stop, None)
    data[tuple(index)] = 0


def _is_dicom_seg(path: Path) -> bool:
    if path.is_dir() or not (path.suffix.lower() == ".dcm" or is_dicom_file(path)):
        return False
    import pydicom

    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # not DICOM after all: the format dispatch reports it
        return False
    return str(header.get("Modality", "")).upper() == "SEG"


def _seg_on_ct(seg_path: Path, ct: Path, series_uid: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM SEG as a label array (i, j, k) of segment numbers on its CT series' grid."""
    from bodyscore.io.dicom import locate_series

    try:
        import highdicom as hd
    except ImportError as exc:
        raise InputError(f"{seg_path}: reading DICOM SEG needs highdicom; pip install "
                         "bodyscore[dicom]") from exc
    if input_kind(ct) != "dicom":
        raise InputError(
            f"{seg_path}: a DICOM SEG refers to the instances of its CT series; give that DICOM "
            f"series as the CT (got {ct})"
        )
    layout = locate_series(ct, series_uid=series_uid)
    uids = [str(h.SOPInstanceUID) for h in layout.headers]
    try:
        seg = hd.seg.segread(str(seg_path))
    except Exception as exc:
        raise InputError(f"{seg_path}: not a readable DICOM SEG ({one_line(exc)})") from exc
    referenced = {str(sop) for _, _, sop in seg.get_source_image_uids()}
    if not referenced & {uid for uid in uids if uid}:
        raise InputError(
            f"{seg_path}: does not refer to the CT series {layout.source} (none of its "
            "instances); give the DICOM series the SEG was made on"
        )
    try:
        frames = seg.get_pixels_by_source_instance(
            uids, combine_segments=True, assert_missing_frames_are_empty=True
        )
    except Exception as exc:
        raise InputError(
            f"{seg_path}: cannot place the SEG on the CT series {layout.source} "
            f"({one_line(exc)}); the SEG must refer to this series, without overlapping segments"
        ) from exc
    first = layout.headers[0]
    if frames.shape[1:] != (int(first.Rows), int(first.Columns)):
        raise InputError(
            f"{seg_path}: its frames are {frames.shape[1]}x{frames.shape[2]} pixels, the CT's "
            f"{first.Rows}x{first.Columns} ({layout.source}); the SEG is not on the CT grid"
        )
    return np.ascontiguousarray(frames.transpose(2, 1, 0)), np.asarray(layout.affine, dtype=float)


def _write_seg(
    seg_path: Path,
    destination: Path,
    *,
    ct: Path,
    series_uid: str | None,
    start: int,
    stop: int,
    mask_outside: bool,
) -> None:
    import nibabel as nib

    if full_suffix(destination) not in NIFTI_SUFFIXES:
        raise OutputError(
            f"{destination}: a DICOM SEG is written as a NIfTI label map; name it .nii(.gz)"
        )
    data, affine = _seg_on_ct(seg_path, ct, series_uid)
    img: Any = nib.Nifti1Image(data, affine)
    if mask_outside:
        _zero_outside(data, 2, start, stop)
    else:
        img = img.slicer[:, :, start:stop]
    with atomic_file(destination) as tmp:
        nib.save(img, str(tmp))


def write_label_slices(
    labels: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    ct: str | os.PathLike[str],
    start: int,
    stop: int,
    mask_outside: bool = False,
    series_uid: str | None = None,
) -> Path:
    """Crop a label map to its CT's slices ``[start, stop)``, or zero it outside them.

    Parameters
    ----------
    labels : str or os.PathLike
        NIfTI / NRRD / MHA label map on the CT grid, or a DICOM SEG file of the CT series.
    destination : str or os.PathLike
        Output file: the label map's own format (a DICOM SEG is written as NIfTI).
    ct : str or os.PathLike
        The CT the slice range refers to (file or DICOM folder).
    start, stop : int
        Half-open range of the CT's own slices (``write_cropped``'s convention).
    mask_outside : bool
        Keep the grid and set labels outside the range to 0 (post-processing) instead of
        cropping (pre-processing).
    series_uid : str, optional
        CT series in a DICOM folder with several.

    Returns
    -------
    pathlib.Path
        ``destination``.

    Raises
    ------
    InputError
        Unreadable label map, or not on the CT grid.
    OutputError
        Destination is an input, of another format, or not writable.
    """
    labels, destination, ct = Path(labels), Path(destination), Path(ct)
    for source in (labels, ct):
        if source.exists() and destination.exists() and source.samefile(destination):
            raise OutputError(f"{destination}: would overwrite an input; choose another path")
    if _is_dicom_seg(labels):
        _write_seg(labels, destination, ct=ct, series_uid=series_uid, start=start, stop=stop,
                   mask_outside=mask_outside)
        return destination
    ct_grid = read_grid(ct, series_uid=series_uid)
    label_grid = read_grid(labels)
    check_same_grid(ct_grid, label_grid)
    lo, hi = label_grid.from_canonical(*ct_grid.to_canonical(start, stop))
    if not mask_outside:
        return write_cropped(labels, destination, start=lo, stop=hi)
    if input_kind(labels) == "nifti":
        _mask_nifti(labels, destination, label_grid.slice_axis, lo, hi)
    elif input_kind(labels) == "itk":
        _mask_itk(labels, destination, label_grid.slice_axis, lo, hi)
    else:
        raise InputError(f"{labels}: a DICOM label input must be a SEG file")
    logger.info("labels of %s outside slices [%d, %d) set to 0 in %s", labels, lo, hi,
                destination)
    return destination
