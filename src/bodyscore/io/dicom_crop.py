"""Crop a multi-frame CT series: write the selected frames as new multi-frame instances.

Single-frame series are cropped by copying the selected instance files unchanged
(:mod:`bodyscore.io.crop_writer`). A multi-frame instance (Enhanced / Legacy Converted Enhanced
CT) holds many slices, so its selected frames are written as a new instance of the same series:
the file's header with the kept items of the Per-frame Functional Groups Sequence, NumberOfFrames
updated, pixel data uncompressed (Explicit VR Little Endian) and a new SOPInstanceUID (its
content differs from the source instance's). Frames keep their order in the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io.dicom import SeriesLayout

__all__ = ["write_frame_subset"]


def write_frame_subset(layout: SeriesLayout, start: int, stop: int, folder: Path) -> list[Path]:
    """Write slices ``[start, stop)`` of a series into ``folder``.

    Parameters
    ----------
    layout : SeriesLayout
        The series (:func:`bodyscore.io.dicom.locate_series`), slices in the input's own order.
    start, stop : int
        Half-open slice range.
    folder : pathlib.Path
        Existing empty folder.

    Returns
    -------
    list of pathlib.Path
        The files written (single-frame instances copied unchanged).
    """
    import pydicom
    from pydicom.uid import generate_uid

    by_file: dict[Path, list[int | None]] = {}
    for k in range(start, stop):
        by_file.setdefault(layout.files[k], []).append(layout.frames[k])
    written = []
    for i, (file, frames) in enumerate(by_file.items()):
        target = folder / f"{i + 1:05d}_{file.name}"
        if frames == [None]:
            shutil.copy2(file, target)
            written.append(target)
            continue
        ds = pydicom.dcmread(file)
        keep = sorted(f for f in frames if f is not None)
        try:
            pixels = np.asarray(ds.pixel_array).reshape(-1, int(ds.Rows), int(ds.Columns))
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
            raise InputError(f"{file}: cannot decode the pixel data to crop it ({exc})") from exc
        items = ds.PerFrameFunctionalGroupsSequence
        ds.PerFrameFunctionalGroupsSequence = [items[f - 1] for f in keep]
        ds.set_pixel_data(
            np.ascontiguousarray(pixels[[f - 1 for f in keep]]),
            str(ds.PhotometricInterpretation),
            int(ds.BitsStored),
        )
        ds.NumberOfFrames = len(keep)
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written
