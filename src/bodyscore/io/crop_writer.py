"""Write a slice range of an input in the input's own format and orientation.

Used to crop a scan to a body region (thesis sec. 4.3.2, use case "known region"): the slice
range comes from ``Volume.source_slice_index`` so it is in the input's own slice order, and the
output keeps the input's header, dtype, orientation and (for DICOM) the instance files unchanged.
Differences from bpreg: bpreg has no crop writer (its ``crop`` helpers return numpy arrays).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from bodyscore.errors import InputError, OutputError
from bodyscore.io._common import (
    NIFTI_SUFFIXES,
    atomic_dir,
    atomic_file,
    full_suffix,
    input_kind,
    slice_axis_of,
)
from bodyscore.io.dicom import locate_series
from bodyscore.io.itk import import_sitk, itk_affine

__all__ = ["write_cropped"]

logger = logging.getLogger(__name__)

_SINGLE_FILE_ITK = (".nrrd", ".mha")


def _check_range(source: Path, n: int, start: int, stop: int) -> None:
    if not (0 <= start < stop <= n):
        raise OutputError(
            f"{source}: slice range [{start}, {stop}) is outside the input's {n} slices; "
            "choose 0 <= start < stop <= n"
        )


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def _crop_nifti(source: Path, destination: Path, start: int, stop: int) -> None:
    import nibabel as nib

    if full_suffix(destination) not in NIFTI_SUFFIXES:
        raise OutputError(f"{destination}: the input is NIfTI; name the output .nii or .nii.gz")
    try:
        img: Any = nib.load(str(source))
    except Exception as exc:
        raise InputError(f"{source}: not a readable NIfTI image ({exc})") from exc
    shape = img.shape
    if len(shape) == 2:
        _check_range(source, 1, start, stop)
        cropped = img
    else:
        axis, _ = slice_axis_of(img.affine)
        _check_range(source, int(shape[axis]), start, stop)
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, stop)
        cropped = img.slicer[tuple(index)]
    with atomic_file(destination) as tmp:
        nib.save(cropped, str(tmp))


def _crop_itk(source: Path, destination: Path, start: int, stop: int) -> None:
    sitk = import_sitk(str(source))
    if destination.suffix.lower() not in _SINGLE_FILE_ITK:
        raise OutputError(f"{destination}: name the output .nrrd or .mha (single-file formats)")
    try:
        image = sitk.ReadImage(str(source))
    except RuntimeError as exc:
        raise InputError(f"{source}: not a readable image") from exc
    if image.GetDimension() != 3:
        raise OutputError(f"{source}: only 3-D images can be cropped, got {image.GetDimension()}-D")
    affine = itk_affine(
        spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection()
    )
    axis, _ = slice_axis_of(affine)
    _check_range(source, int(image.GetSize()[axis]), start, stop)
    index: list[slice] = [slice(None)] * 3
    index[axis] = slice(start, stop)
    cropped = image[tuple(index)]
    for key in image.GetMetaDataKeys():
        if not cropped.HasMetaDataKey(key):
            cropped.SetMetaData(key, image.GetMetaData(key))
    with atomic_file(destination) as tmp:
        try:
            sitk.WriteImage(cropped, str(tmp), useCompression=True)
        except RuntimeError as exc:
            raise OutputError(f"{destination}: cannot write output ({exc})") from exc


def _crop_dicom(
    source: Path, destination: Path, start: int, stop: int, series_uid: str | None
) -> None:
    layout = locate_series(source, series_uid=series_uid)
    axis, _ = slice_axis_of(layout.affine)
    if axis != 2:
        raise OutputError(
            f"{layout.source}: slices are not stacked along the body axis (sagittal/coronal "
            "series); cannot crop by copying files"
        )
    folder = source if source.is_dir() else source.parent
    if _same_path(folder, destination):
        raise OutputError(f"{destination}: is the input folder; choose another output folder")
    _check_range(source, len(layout.files), start, stop)
    selected = layout.files[start:stop]
    names = [f.name for f in selected]
    unique = len(set(names)) == len(names)
    if any(frame is not None for frame in layout.frames):  # multi-frame: new instances
        from bodyscore.io.dicom_crop import write_frame_subset

        with atomic_dir(destination) as tmp:
            write_frame_subset(layout, start, stop, tmp)
        return
    with atomic_dir(destination) as tmp:
        for i, file in enumerate(selected):
            name = file.name if unique else f"{start + i:05d}_{file.name}"
            shutil.copy2(file, tmp / name)


def write_cropped(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    start: int,
    stop: int,
    series_uid: str | None = None,
) -> Path:
    """Write input slices ``[start, stop)`` in the input's own format, orientation and header.

    Parameters
    ----------
    source : str or os.PathLike
        The input that was scored: NIfTI, NRRD/MHA or a DICOM folder / file.
    destination : str or os.PathLike
        Output file (NIfTI: ``.nii``/``.nii.gz``; NRRD/MHA: ``.nrrd``/``.mha``) or, for DICOM, a
        new (or empty) folder receiving copies of the selected instance files.
    start, stop : int
        Half-open slice range in the input's own slice order (values of
        ``Volume.source_slice_index``; DICOM: files sorted by IPP along the slice normal).
    series_uid : str, optional
        DICOM series to crop when the folder holds several.

    Returns
    -------
    pathlib.Path
        ``destination``.

    Raises
    ------
    OutputError
        Destination is the input, not writable, of another format, or the range is invalid.
    InputError
        The source cannot be read.
    """
    source = Path(source)
    destination = Path(destination)
    if _same_path(source, destination):
        raise OutputError(f"{destination}: would overwrite the input; choose another output path")
    kind = input_kind(source)
    if kind == "nifti":
        _crop_nifti(source, destination, start, stop)
    elif kind == "itk":
        _crop_itk(source, destination, start, stop)
    else:
        _crop_dicom(source, destination, start, stop, series_uid)
    logger.info("wrote slices [%d, %d) of %s to %s", start, stop, source, destination)
    return destination
