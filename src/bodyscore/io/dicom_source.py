"""The source CT instances that a DICOM SEG or SR of a scored series references.

Imaging Data Commons and PACS hold series that viewers show but that, copied into a derived
object as they are, make it invalid. :func:`read_source_series` reads the instances of a series
that :func:`bodyscore.io.dicom.read_dicom_series` accepted (so their geometry is one consistent
stack) and repairs, **in memory only**, what a SEG/SR copies or references:

- SOPClassUID/SOPInstanceUID empty in the data set: taken from the file meta information
  (MediaStorageSOPClassUID/MediaStorageSOPInstanceUID), which viewers use too (the reader
  already warns about it).
- StudyInstanceUID/SeriesInstanceUID/FrameOfReferenceUID empty in every instance: a UID derived
  deterministically from the instances' SOP Instance UIDs (the same series always gets the same
  one), so that the SEG/SR are filed together.
- Several FrameOfReferenceUIDs in one series (e.g. LIDC-IDRI gives every slice its own): the
  geometry is one stack, so the series is treated as one frame of reference, that of the first
  slice in the input's slice order.
- Patient and General Study attributes that would be invalid in the SEG/SR: an empty Type 1C
  DeidentificationMethod (with no DeidentificationMethodCodeSequence) is dropped together with
  the PatientIdentityRemoved flag that requires it; empty sequences of those modules are dropped.
  Missing Type 2 attributes are added empty.

Each repair is stated in :attr:`SourceSeries.notes` (the ``bodyscore dicom`` command adds them to
the JSON's warnings). A SEG/SR is refused, with the reason, only where no valid object can be
written: an instance without any SOPInstanceUID, or instances of different studies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io._common import one_line

__all__ = ["SourceSeries", "read_source_series"]

#: Type 2 patient/study attributes highdicom copies from the source images.
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)

#: Sequences of the Patient / General Study modules that are invalid when present but empty.
_PATIENT_STUDY_SEQUENCES = (
    "DeidentificationMethodCodeSequence",
    "ReferencedStudySequence",
    "ProcedureCodeSequence",
    "ReferencedPatientSequence",
    "OtherPatientIDsSequence",
    "IssuerOfPatientIDQualifiersSequence",
    "PhysiciansOfRecordIdentificationSequence",
    "ReferringPhysicianIdentificationSequence",
)


@dataclass(frozen=True)
class SourceSeries:
    """Source instances of a scored series, ready to be referenced by a SEG/SR.

    Attributes
    ----------
    images : tuple of pydicom.Dataset
        One data set (with pixel data) per instance, in the order of first use by the slices.
    slices : tuple of (int, int or None)
        Per slice of the result (input's own order): index into ``images`` and frame number
        (1-based) for a multi-frame instance, None for a single-frame one.
    notes : tuple of str
        The repairs made (see the module docstring), for the result's warnings.
    """

    images: tuple[Any, ...]
    slices: tuple[tuple[int, int | None], ...]
    notes: tuple[str, ...]

    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return len(self.slices)

    @property
    def is_multiframe(self) -> bool:
        """True when the slices are frames of multi-frame instances."""
        return any(frame is not None for _, frame in self.slices)

    def image(self, k: int) -> Any:
        """The instance holding slice ``k``."""
        return self.images[self.slices[k][0]]

    def frame(self, k: int) -> int | None:
        """Frame number (1-based) of slice ``k`` in its instance; None for a single-frame one."""
        return self.slices[k][1]

    def _header(self, k: int) -> Any:
        from bodyscore.io.dicom import frame_attributes

        ds, frame = self.image(k), self.frame(k)
        return ds if frame is None else frame_attributes(ds, frame)

    def position_mm(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient (mm, LPS) of slice ``k`` (of its frame for a multi-frame one)."""
        x, y, z = (float(v) for v in self._header(k).ImagePositionPatient)
        return x, y, z

    def hu(self, k: int) -> np.ndarray:
        """Slice ``k`` in HU, shape (rows, cols) float32 (rescale of its frame, PS3.3 C.7.6.16)."""
        ds, frame = self.image(k), self.frame(k)
        pixels = np.asarray(ds.pixel_array)
        header = self._header(k)
        if frame is not None and pixels.ndim == 3:
            pixels = pixels[frame - 1]
        slope = float(header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
        return pixels.astype(np.float32) * slope + intercept


def read_source_series(
    files: Sequence[str | os.PathLike[str]],
    sop_instance_uids: Sequence[str],
    frame_numbers: Sequence[int | None] = (),
) -> SourceSeries:
    """Read and prepare the source instances of a scored series.

    Parameters
    ----------
    files : sequence of path-like
        File of each slice (``Volume.meta['files']``; a multi-frame file once per frame).
    sop_instance_uids : sequence of str
        SOPInstanceUID of each slice (``Volume.meta['sop_instance_uids']``), same order.
    frame_numbers : sequence of int or None, optional
        Frame number of each slice (``Volume.meta['frame_numbers']``); empty: single-frame.

    Returns
    -------
    SourceSeries

    Raises
    ------
    InputError
        No slices, files and UIDs of different lengths, an unreadable file, an instance without
        any SOPInstanceUID, or instances of different studies.
    """
    import pydicom

    frames = tuple(frame_numbers) or (None,) * len(files)
    if not files or not (len(files) == len(sop_instance_uids) == len(frames)):
        raise InputError(
            f"source series: {len(files)} files, {len(sop_instance_uids)} SOPInstanceUIDs and "
            f"{len(frame_numbers)} frame numbers; a SEG/SR needs one of each per slice"
        )
    notes: list[str] = []
    index: dict[str, int] = {}
    images: list[Any] = []
    slices: list[tuple[int, int | None]] = []
    for path, uid, frame in zip(files, sop_instance_uids, frames, strict=True):
        key = os.fspath(path)
        if key not in index:
            try:
                ds = pydicom.dcmread(path)
            except (OSError, ValueError, EOFError) as exc:
                raise InputError(
                    f"{path}: cannot read this source instance ({one_line(exc)})"
                ) from exc
            _identify(ds, path)  # the reader warned about UIDs taken from the file meta
            index[key] = len(images)
            images.append(ds)
        if str(images[index[key]].SOPInstanceUID) != uid:
            raise InputError(
                f"{path}: SOPInstanceUID {images[index[key]].SOPInstanceUID} differs from the "
                f"scored slice's {uid}; score the same files again"
            )
        slices.append((index[key], frame))
    first = images[slices[0][0]]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        notes.extend(_one_uid(images, first, keyword))
    for ds in images:
        notes.extend(_clean_patient_study(ds))
    return SourceSeries(tuple(images), tuple(slices), tuple(dict.fromkeys(notes)))


def _identify(ds: Any, path: str | os.PathLike[str]) -> None:
    """Fill empty SOPClassUID/SOPInstanceUID from the file meta information."""
    from bodyscore.io.dicom import sop_uids

    sop_class, sop_instance = sop_uids(ds)
    if not sop_instance or not sop_class:
        raise InputError(
            f"{path}: no SOPClassUID/SOPInstanceUID in the data set nor in the file meta "
            "information; a SEG/SR cannot reference this instance (give it a UID)"
        )
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance


def _one_uid(images: Sequence[Any], first: Any, keyword: str) -> list[str]:
    """Make ``keyword`` one value across ``images``; return the notes on what was chosen."""
    from pydicom.uid import generate_uid

    values = [str(ds.get(keyword) or "") for ds in images]
    distinct = set(values) - {""}
    if len(distinct) == 1 and "" not in values:
        return []
    if keyword == "StudyInstanceUID" and len(distinct) > 1:
        raise InputError(
            f"source series: its instances belong to {len(distinct)} studies "
            "(StudyInstanceUID differs); a SEG/SR belongs to one study (fix the DICOM headers)"
        )
    if not distinct:
        uids = sorted(str(ds.SOPInstanceUID) for ds in images)
        chosen = str(generate_uid(entropy_srcs=[keyword, *uids]))
        note = (
            f"SEG/SR: the source series has no {keyword}; used {chosen}, derived from its SOP "
            "Instance UIDs (a PACS files the SEG/SR under it)"
        )
    elif len(distinct) == 1:
        chosen = distinct.pop()
        note = (
            f"SEG/SR: {values.count('')} source instances lack the series' {keyword}; "
            f"used {chosen}"
        )
    else:  # several frames of reference (only) : the reader proved one geometric stack
        chosen = str(first.get(keyword))
        note = (
            f"SEG/SR: the {len(images)} source instances carry {len(distinct)} different "
            f"{keyword}s but their geometry is one stack; treated as one frame of reference, "
            f"that of the first slice ({chosen})"
        )
    for ds in images:
        setattr(ds, keyword, chosen)
    return [note]


def _clean_patient_study(ds: Any) -> list[str]:
    """Drop Patient/Study attributes a SEG/SR must not copy as they are; add empty Type 2 ones."""
    notes = []
    if not str(ds.get("DeidentificationMethod", "") or "").strip() and not ds.get(
        "DeidentificationMethodCodeSequence"
    ) and ("DeidentificationMethod" in ds or str(ds.get("PatientIdentityRemoved", "")) == "YES"):
        for keyword in ("DeidentificationMethod", "PatientIdentityRemoved"):
            if keyword in ds:
                del ds[keyword]
        notes.append(
            "SEG/SR: the source's DeidentificationMethod is empty (Type 1C when "
            "PatientIdentityRemoved is YES); neither it nor PatientIdentityRemoved is copied"
        )
    for keyword in _PATIENT_STUDY_SEQUENCES:
        if keyword in ds and not ds[keyword].value:
            del ds[keyword]
    for keyword in TYPE2_PATIENT_STUDY:  # anonymised files often drop these; empty is valid
        if keyword not in ds:
            setattr(ds, keyword, "")
    return notes
