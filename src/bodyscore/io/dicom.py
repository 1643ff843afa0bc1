"""DICOM CT series: find and group files, sort by position, build geometry, read HU.

Slice order is ``dot(IPP, row × col)`` ascending, where ``row``/``col`` are the
ImageOrientationPatient direction cosines and IPP is ImagePositionPatient — not InstanceNumber or
file names (InstanceNumber may grow either way, e.g. the PET/CT slab and the feet-first LIDC
series). This ascending-projection order is the "input's own slice order" that
``Volume.source_slice_index`` and the crop writer refer to; it is the order Imaging Data Commons
uses for bpreg results (``notes/bpreg-reference.md`` sec. 4). bpreg itself only reads NIfTI
(converted with dcm2niix), so it has no equivalent.

Gantry tilt: the slices are not resampled. The affine's k column and ``z_positions_mm`` follow the
stacking direction (the IPP differences, i.e. along the table), and the tilt angle between that
direction and the slice normal is reported in ``meta['gantry_tilt_deg']`` with a warning.

Multi-frame CT (Enhanced CT Image Storage, Legacy Converted Enhanced CT Image Storage; one or
several files per series): every frame is one slice. Its geometry and rescale come from the
frame's item of the Per-frame Functional Groups Sequence, else from the Shared Functional Groups
Sequence (PS3.3 C.7.6.16: Plane Position, Plane Orientation, Pixel Measures, Pixel Value
Transformation, CT Image Frame Type); frames are then sorted with the single-frame images like any
slice, and ``meta['frame_numbers']`` gives each slice's frame number (1-based; None for a
single-frame image). Anonymised files whose data set has empty SOPClassUID/SOPInstanceUID are
identified by the file meta information (MediaStorageSOPClassUID/MediaStorageSOPInstanceUID), as
viewers do, with a warning.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import (
    DicomSeriesError,
    InputError,
    MultipleSeriesError,
    UnsupportedModalityError,
)
from bodyscore.io._common import (
    check_voxel_count,
    describe_os_error,
    guard_reader,
    is_dicom_file,
    one_line,
    to_hu_dtype,
    volume_from_ijk,
)
from bodyscore.volume import Volume

__all__ = [
    "SeriesInfo",
    "SeriesLayout",
    "frame_attributes",
    "is_dicom_file",
    "list_dicom_series",
    "locate_series",
    "read_dicom_series",
    "sop_uids",
]

logger = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
TILT_TOLERANCE_DEG = 0.5
DUPLICATE_TOLERANCE_MM = 0.01
UNIFORM_RTOL = 0.01
_DEFER_BYTES = 2**20
_PARSE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError,
    OverflowError, EOFError, OSError,
)


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    modality : str
        Modality (``"CT"``, ``"PT"``, ``"SEG"``, ...).
    n_files : int
        Number of instance files.
    description : str
        SeriesDescription (empty when absent).
    body_part_examined : str
        BodyPartExamined (empty when absent).
    manufacturer : str
        Manufacturer (empty when absent).
    """

    uid: str
    modality: str
    n_files: int
    description: str
    body_part_examined: str
    manufacturer: str

    def summary(self) -> str:
        """One line: ``"<uid> (<modality>, <n> files, <description>)"``."""
        text = f"{self.modality}, {self.n_files} files"
        if self.description:
            text += f", {self.description}"
        return f"{self.uid} ({text})"


@dataclass(frozen=True)
class SeriesLayout:
    """A CT series assembled from headers only, in the input's own slice order.

    Attributes
    ----------
    source : str
        ``"<folder> [series <uid>]"``, used in messages.
    files : tuple of pathlib.Path
        File of each slice, slices sorted by position along the slice normal (ascending);
        duplicates dropped. A multi-frame file appears once per frame.
    headers : tuple of pydicom.Dataset
        Header (no pixel data) of each slice, same order; for a frame of a multi-frame file a
        view holding the file's top-level attributes and the frame's functional group values.
    frames : tuple of int or None
        Frame number (1-based) of each slice in its multi-frame file; None for single-frame
        images.
    affine : numpy.ndarray, shape (4, 4)
        Voxel (i = column, j = row, k = file index) → RAS+ mm; k column = median stacking step.
    positions_mm : numpy.ndarray, shape (k,)
        Slice positions along the stacking direction, increasing.
    tilt_deg : float
        Angle between the stacking direction and the slice normal (0 for a regular stack).
    warnings : tuple of str
        Problems found in the headers.
    """

    source: str
    files: tuple[Path, ...]
    headers: tuple[Any, ...]
    frames: tuple[int | None, ...]
    affine: np.ndarray
    positions_mm: np.ndarray
    tilt_deg: float
    warnings: tuple[str, ...]


# -- finding files --------------------------------------------------------------------------------
def _walk_files(folder: Path, *, recursive: bool) -> Iterator[Path]:
    """Files under ``folder``, sorted, following symlinks but never visiting a folder twice."""
    if not recursive:
        yield from sorted(p for p in folder.iterdir() if p.is_file())
        return
    seen: set[tuple[int, int]] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        stat = Path(root).stat()
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            dirs[:] = []
            continue
        seen.add(key)
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be opened for reading (e.g. permission denied), or None."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return None  # broken link or vanished file: nothing to report
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # symbolic link loop: not a file
        return describe_os_error(exc)


_USED_KEYWORDS = (
    "SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "Modality", "ImageType",
    "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns",
    "NumberOfFrames", "InstanceNumber", "RescaleSlope", "RescaleIntercept", "SliceThickness",
    "SpacingBetweenSlices", "GantryDetectorTilt", "SeriesDescription", "BodyPartExamined",
    "Manufacturer", "PatientPosition", "ConvolutionKernel", "SamplesPerPixel", "BitsAllocated",
    "SOPClassUID", "FrameOfReferenceUID",
)

#: Functional group macros (PS3.3 C.7.6.16.2) → the attributes read from them; a frame's value is
#: taken from its Per-frame Functional Groups item, else from the Shared Functional Groups item.
_FRAME_MACROS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PlanePositionSequence", ("ImagePositionPatient",)),
    ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
    ("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")),
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
    ("CTAcquisitionDetailsSequence", ("GantryDetectorTilt",)),
    ("CTImageFrameTypeSequence", ("FrameType",)),
)
_FUNCTIONAL_GROUPS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")


def _convert_elements(ds: Any) -> None:
    """Convert the elements bodyscore reads now (pydicom parses lazily), so that a malformed
    value fails here, where the file can be skipped; other elements are left unparsed."""
    for keyword in _USED_KEYWORDS:
        if keyword in ds:
            ds[keyword]


def _read_headers(
    folder: Path, *, recursive: bool = True, skipped: list[str] | None = None
) -> list[tuple[Path, Any]]:
    """(path, header) of every DICOM image file; other files and DICOMDIR are skipped quietly.

    Files that exist but cannot be opened (permission denied, I/O error) are skipped too, and a
    line naming each is appended to ``skipped`` so that the caller can warn about it.
    """
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError

    found: list[tuple[Path, Any]] = []
    for path in _walk_files(folder, recursive=recursive):
        if path.name.upper() == "DICOMDIR":
            continue
        if not is_dicom_file(path):
            reason = _unreadable(path) if skipped is not None else None
            if reason is not None and skipped is not None:
                skipped.append(f"{path}: {reason}")
            continue
        try:
            # defer_size: a huge (e.g. byte-swapped) value length is skipped, not allocated
            ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=_DEFER_BYTES)
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError) as exc:
            logger.debug("skipping %s: %s", path, exc)
            continue
        try:
            _convert_elements(ds)
            sop_class = str(
                getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
            )
        except (*_PARSE_ERRORS, BytesLengthException) as exc:
            logger.debug("skipping %s: malformed header (%s)", path, one_line(exc))
            continue
        if sop_class == DICOMDIR_SOP_CLASS or "SeriesInstanceUID" not in ds:
            continue
        found.append((path, ds))
    return found


def _group(found: Sequence[tuple[Path, Any]]) -> dict[str, list[tuple[Path, Any]]]:
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for path, ds in found:
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    return groups


def _info(uid: str, members: Sequence[tuple[Path, Any]]) -> SeriesInfo:
    ds = members[0][1]
    return SeriesInfo(
        uid=uid,
        modality=str(ds.get("Modality", "") or ""),
        n_files=len(members),
        description=str(ds.get("SeriesDescription", "") or ""),
        body_part_examined=str(ds.get("BodyPartExamined", "") or ""),
        manufacturer=str(ds.get("Manufacturer", "") or ""),
    )


def list_dicom_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """List every DICOM series (any modality) under ``folder``, recursively.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder to search; non-DICOM files and DICOMDIR are skipped.

    Returns
    -------
    list of SeriesInfo
        Sorted by modality (CT first), then description and UID.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    groups = _group(_read_headers(folder))
    infos = [_info(uid, members) for uid, members in groups.items()]
    return sorted(infos, key=lambda s: (s.modality != "CT", s.modality, s.description, s.uid))


def _choose_series(
    folder: Path, groups: dict[str, list[tuple[Path, Any]]], series_uid: str | None
) -> tuple[str, list[tuple[Path, Any]]]:
    if not groups:
        raise InputError(f"{folder}: no DICOM image files found; check the folder")
    infos = {uid: _info(uid, members) for uid, members in groups.items()}
    if series_uid is not None:
        if series_uid not in groups:
            available = "; ".join(i.summary() for i in infos.values())
            raise InputError(
                f"{folder}: series {series_uid} not found; available series: {available}"
            )
        info = infos[series_uid]
        if info.modality != "CT":
            raise UnsupportedModalityError(
                f"{folder}: series {series_uid} has modality {info.modality or 'unknown'}; "
                "bodyscore scores CT only"
            )
        return series_uid, groups[series_uid]
    ct = [i for i in infos.values() if i.modality == "CT"]
    if not ct:
        modalities = ", ".join(sorted({i.modality or "unknown" for i in infos.values()}))
        raise UnsupportedModalityError(
            f"{folder}: no CT series (modality {modalities}); bodyscore scores CT only"
        )
    if len(ct) > 1:
        listing = tuple((i.uid, i.summary()) for i in sorted(ct, key=lambda i: i.uid))
        raise MultipleSeriesError(
            f"{folder}: {len(ct)} CT series found ({'; '.join(s for _, s in listing)}); "
            "choose one with --series UID",
            series=listing,
        )
    return ct[0].uid, groups[ct[0].uid]


# -- geometry -------------------------------------------------------------------------------------
def _vector(ds: Any, keyword: str, n: int, source: str) -> np.ndarray:
    value = ds.get(keyword)
    try:
        vec = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomSeriesError(
            f"{source}: {keyword} missing or not numeric; cannot place slices"
        ) from exc
    if vec.shape != (n,) or not np.all(np.isfinite(vec)):
        raise DicomSeriesError(f"{source}: {keyword} must have {n} finite values, got {value}")
    return vec


def sop_uids(ds: Any) -> tuple[str, str]:
    """(SOPClassUID, SOPInstanceUID) of a data set; the file meta information's
    MediaStorageSOPClassUID/MediaStorageSOPInstanceUID where the data set's are empty or absent
    (anonymised files that viewers still show)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or "") or str(
        getattr(meta, "MediaStorageSOPClassUID", "") or ""
    )
    sop_instance = str(ds.get("SOPInstanceUID", "") or "") or str(
        getattr(meta, "MediaStorageSOPInstanceUID", "") or ""
    )
    return sop_class, sop_instance


@dataclass(frozen=True)
class _Slice:
    """One slice: a single-frame image, or one frame (1-based ``frame``) of a multi-frame one."""

    path: Path
    header: Any
    frame: int | None = None


def _frame_value(items: Sequence[Any], macro: str, keyword: str) -> Any:
    """The data element ``keyword`` of functional group ``macro`` in the first item that has it."""
    for item in items:
        group = item.get(macro) if item is not None else None
        if group and keyword in group[0]:
            return group[0][keyword]
    return None


def frame_attributes(ds: Any, frame_number: int) -> Any:
    """The geometry and rescale attributes of one frame of a multi-frame image.

    Parameters
    ----------
    ds : pydicom.Dataset
        Enhanced or Legacy Converted Enhanced CT image.
    frame_number : int
        1-based frame number.

    Returns
    -------
    pydicom.Dataset
        ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness,
        SpacingBetweenSlices, RescaleSlope, RescaleIntercept, GantryDetectorTilt and ImageType
        (from FrameType), each from the frame's Per-frame Functional Groups item, else from the
        Shared Functional Groups item; absent where neither holds it.
    """
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    item = per_frame[frame_number - 1] if 0 < frame_number <= len(per_frame) else None
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    out = Dataset()
    for macro, keywords in _FRAME_MACROS:
        for keyword in keywords:
            element = _frame_value((item, shared), macro, keyword)
            if element is not None:
                target = "ImageType" if keyword == "FrameType" else keyword
                out[target] = DataElement(target, element.VR, element.value)
    return out


def _frame_views(path: Path, ds: Any) -> list[_Slice]:
    """Split a multi-frame image into one header view per frame; a single-frame image is one slice.

    A view holds the file's top-level attributes (functional groups and pixel data left out) and
    the frame's :func:`frame_attributes`.
    """
    from pydicom import Dataset

    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames <= 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [_Slice(path, ds)]
    n_items = len(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if n_items != n_frames:
        raise DicomSeriesError(
            f"{path}: multi-frame image with NumberOfFrames {n_frames} but {n_items} "
            "items in PerFrameFunctionalGroupsSequence; cannot place its frames"
        )
    top = [e for e in ds if e.keyword not in (*_FUNCTIONAL_GROUPS, "PixelData")]
    views = []
    for number in range(1, n_frames + 1):
        view = Dataset()
        view.file_meta = ds.file_meta
        for element in top:
            view.add(element)
        for element in frame_attributes(ds, number):
            view[element.keyword] = element
        views.append(_Slice(path, view, number))
    return views


def _drop_localizers(slices: list[_Slice], source: str, warnings: list[str]) -> list[_Slice]:
    images = [
        s for s in slices
        if "LOCALIZER" not in [str(t).upper() for t in (s.header.get("ImageType") or [])]
    ]
    if len(images) < len(slices):
        warnings.append(f"{len(slices) - len(images)} localizer images ignored")
    if not images:
        raise DicomSeriesError(f"{source}: the series holds only localizer images")
    return images


def _check_consistent(slices: list[_Slice], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (IOP (6,), PixelSpacing (2,)); raise when slices disagree on size/orientation."""
    first = slices[0].header
    iop = _vector(first, "ImageOrientationPatient", 6, source)
    spacing = _vector(first, "PixelSpacing", 2, source)
    size = (int(first.get("Rows", 0)), int(first.get("Columns", 0)))
    for item in slices:
        ds, name = item.header, item.path.name
        if item.frame is not None:
            name = f"{name} frame {item.frame}"
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != size:
            raise DicomSeriesError(
                f"{source}: mixed image sizes in one series ({name} is "
                f"{ds.get('Rows')}x{ds.get('Columns')}, others {size[0]}x{size[1]}); "
                "split the series"
            )
        if not np.allclose(_vector(ds, "ImageOrientationPatient", 6, source), iop, atol=1e-4):
            raise DicomSeriesError(
                f"{source}: mixed ImageOrientationPatient in one series ({name}); "
                "split the series"
            )
        if not np.allclose(_vector(ds, "PixelSpacing", 2, source), spacing, rtol=1e-4):
            raise DicomSeriesError(f"{source}: mixed PixelSpacing in one series ({name})")
    if size[0] < 1 or size[1] < 1:
        raise DicomSeriesError(f"{source}: Rows/Columns missing")
    if not np.all(spacing > 0):
        raise DicomSeriesError(
            f"{source}: PixelSpacing {spacing.tolist()} is not positive; fix the header"
        )
    return iop, spacing


def _nominal_step(ds: Any) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _number(ds, keyword, 0.0)
        if value is not None and value > 0:
            return value
    return 1.0


def _uid_warnings(slices: Sequence[_Slice]) -> list[str]:
    """Warnings about SOPInstanceUIDs that only the file meta information holds, or nothing."""
    files = {s.path: s.header for s in slices}
    from_meta = sum(
        1 for ds in files.values() if not ds.get("SOPInstanceUID") and sop_uids(ds)[1]
    )
    missing = sum(1 for ds in files.values() if not sop_uids(ds)[1])
    out = []
    if from_meta:
        out.append(
            f"{from_meta} of {len(files)} files have an empty SOPInstanceUID in the data set; "
            "identified by the file meta information (MediaStorageSOPInstanceUID, and "
            "MediaStorageSOPClassUID where SOPClassUID is empty)"
        )
    if missing:
        out.append(
            f"{missing} of {len(files)} files have no SOPInstanceUID, not even in the file meta "
            "information; a DICOM SEG/SR cannot reference them"
        )
    return out


def _assemble(
    folder: Path, uid: str, members: list[tuple[Path, Any]], skipped: Sequence[str] = ()
) -> SeriesLayout:
    source = f"{folder} [series {uid or 'without SeriesInstanceUID'}]"
    warnings: list[str] = [f"unreadable file skipped ({line})" for line in skipped]
    slices = [s for path, ds in members for s in _frame_views(path, ds)]
    slices = _drop_localizers(slices, source, warnings)
    iop, pixel_spacing = _check_consistent(slices, source)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise DicomSeriesError(
            f"{source}: ImageOrientationPatient {iop.tolist()} is not orthonormal"
        )
    ipp = np.stack([_vector(s.header, "ImagePositionPatient", 3, source) for s in slices])
    instance = np.asarray([int(s.header.get("InstanceNumber") or 0) for s in slices])
    frame = np.asarray([s.frame or 0 for s in slices])
    projection = ipp @ normal
    order = np.lexsort((frame, instance, projection))
    ipp, projection = ipp[order], projection[order]
    slices = [slices[i] for i in order]
    keep = np.ones(len(slices), dtype=bool)
    keep[1:] = np.diff(projection) > DUPLICATE_TOLERANCE_MM
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} slices at duplicate positions dropped")
        slices = [m for m, k in zip(slices, keep, strict=True) if k]
        ipp, projection = ipp[keep], projection[keep]
    warnings.extend(_uid_warnings(slices))
    n = len(slices)
    if n > 1:
        stack = ipp[-1] - ipp[0]
        direction = stack / np.linalg.norm(stack)
    else:
        direction = normal
    positions = ipp @ direction
    steps = np.diff(positions)
    if n > 1 and np.any(steps <= 0):
        raise DicomSeriesError(f"{source}: slice positions do not advance along one direction")
    step = float(np.median(steps)) if n > 1 else _nominal_step(slices[0].header)
    if n > 2 and np.any(np.abs(steps - step) > UNIFORM_RTOL * step):
        warnings.append(
            f"non-uniform slice spacing: steps {steps.min():.3g}–{steps.max():.3g} mm "
            f"(median {step:.3g} mm); slices are not resampled"
        )
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(direction @ normal))))))
    if tilt > TILT_TOLERANCE_DEG:
        warnings.append(
            f"gantry tilt {tilt:.1f}°: slices are sheared along the table; not resampled, "
            "z positions are along the table"
        )
    lps = np.eye(4)
    lps[:3, 0] = row * pixel_spacing[1]
    lps[:3, 1] = col * pixel_spacing[0]
    lps[:3, 2] = direction * step
    lps[:3, 3] = ipp[0]
    return SeriesLayout(
        source=source,
        files=tuple(s.path for s in slices),
        headers=tuple(s.header for s in slices),
        frames=tuple(s.frame for s in slices),
        affine=LPS_TO_RAS @ lps,
        positions_mm=positions,
        tilt_deg=tilt,
        warnings=tuple(warnings),
    )


def locate_series(path: str | os.PathLike[str], *, series_uid: str | None = None) -> SeriesLayout:
    """Find and order one CT series from headers only (no pixel data is read).

    Parameters
    ----------
    path : str or os.PathLike
        A folder (searched recursively) or one DICOM file (its series within its own folder).
    series_uid : str, optional
        SeriesInstanceUID to pick when the folder holds several series.

    Raises
    ------
    InputError
        No DICOM files; unknown ``series_uid``.
    MultipleSeriesError
        Several CT series and no ``series_uid``.
    UnsupportedModalityError
        The (chosen) series is not CT.
    DicomSeriesError
        Inconsistent series (mixed sizes/orientations, missing geometry).
    """
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file or folder not found")
    skipped: list[str] = []
    if path.is_dir():
        folder = path
        found = _read_headers(folder, skipped=skipped)
    else:
        folder = path.parent
        if series_uid is None:
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, defer_size=_DEFER_BYTES)
                series_uid = str(header.SeriesInstanceUID)
            except (InvalidDicomError, BytesLengthException, *_PARSE_ERRORS) as exc:
                raise InputError(
                    f"{path}: not a readable DICOM image ({one_line(exc)[:200]})"
                ) from exc
        found = _read_headers(folder, recursive=False, skipped=skipped)
        if not any(p.name == path.name for p, _ in found):
            raise InputError(
                f"{path}: not a readable DICOM image (malformed header, or no image); "
                "check the file"
            )
    uid, members = _choose_series(folder, _group(found), series_uid)
    return _assemble(folder, uid, members, skipped)


# -- pixels ---------------------------------------------------------------------------------------
def _number(ds: Any, keyword: str, default: float) -> float | None:
    """A single finite number from a tag; ``default`` when absent, None when malformed."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):  # multi-valued or not numeric
        return None
    return number if np.isfinite(number) else None


def _rescale(ds: Any, path: Path) -> tuple[float, float, bool]:
    slope = _number(ds, "RescaleSlope", 1.0)
    intercept = _number(ds, "RescaleIntercept", 0.0)
    if slope is None or intercept is None:
        raise DicomSeriesError(
            f"{path}: RescaleSlope/RescaleIntercept {str(ds.get('RescaleSlope'))[:30]!r}/"
            f"{str(ds.get('RescaleIntercept'))[:30]!r} are not single finite numbers; "
            "fix the header"
        )
    missing = ds.get("RescaleSlope") is None or ds.get("RescaleIntercept") is None
    return slope, intercept, missing


def _pixels(path: Path, source: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read this file of {source} ({one_line(exc)})") from exc
    try:
        _check_native_length(ds, path)
    except (*_PARSE_ERRORS, BytesLengthException) as exc:
        raise InputError(
            f"{path}: cannot read the pixel data of {source} ({one_line(exc)[:200]})"
        ) from exc
    try:
        return np.asarray(ds.pixel_array)
    except (
        RuntimeError, NotImplementedError, ValueError, AttributeError, OSError, TypeError, KeyError
    ) as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and not syntax.is_transfer_syntax:
            raise InputError(
                f"{path}: unknown transfer syntax {syntax}; convert the file to a standard "
                "transfer syntax (e.g. with dcmconv or gdcmconv)"
            ) from exc
        if syntax is not None and syntax.is_compressed:
            raise InputError(
                f"{path}: cannot decode compressed pixel data ({syntax.name}); "
                "pip install bodyscore[dicom] (pylibjpeg) or gdcm"
            ) from exc
        raise InputError(
            f"{path}: cannot read the pixel data of {source} ({one_line(exc)})"
        ) from exc


def _check_native_length(ds: Any, path: Path) -> None:
    """Refuse uncompressed pixel data shorter than Rows x Columns x BitsAllocated declare.

    Checked before pydicom decodes, so that a corrupt or byte-swapped Rows/Columns (e.g. a file
    whose transfer syntax claims big endian) cannot make it allocate gigabytes.
    """
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_transfer_syntax or syntax.is_compressed:
        return
    if "PixelData" not in ds:
        raise InputError(f"{path}: no pixel data; not an image")
    try:
        needed = (
            int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
            * int(ds.get("NumberOfFrames") or 1) * int(ds.BitsAllocated) // 8
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: Rows/Columns/BitsAllocated missing or not numeric") from exc
    have = len(ds.PixelData)
    if have < needed:
        raise InputError(
            f"{path}: pixel data holds {have} bytes but Rows x Columns x BitsAllocated need "
            f"{needed}; the file is truncated or its header (or transfer syntax) is wrong"
        )


def _slices_by_file(layout: SeriesLayout) -> dict[Path, list[int]]:
    """Slice indices of each file (a multi-frame file holds several), files in slice order."""
    by_file: dict[Path, list[int]] = {}
    for k, file in enumerate(layout.files):
        by_file.setdefault(file, []).append(k)
    return by_file


def _frames_of(pixels: np.ndarray, file: Path, rows: int, cols: int) -> np.ndarray:
    """Pixel data as (frames, rows, cols); raise when it is not Rows x Columns per frame."""
    if pixels.shape == (rows, cols):
        return pixels[np.newaxis]
    if pixels.ndim != 3 or pixels.shape[1:] != (rows, cols):
        raise DicomSeriesError(
            f"{file}: pixel data shape {pixels.shape} differs from "
            f"Rows x Columns {(rows, cols)}"
        )
    return pixels


@guard_reader
def read_dicom_series(path: str | os.PathLike[str], *, series_uid: str | None = None) -> Volume:
    """Read one CT series as a canonical volume in HU.

    Parameters
    ----------
    path : str or os.PathLike
        A folder (searched recursively) or one DICOM file of the series.
    series_uid : str, optional
        SeriesInstanceUID to pick when the folder holds several series.

    Returns
    -------
    Volume
        array (z, y, x) int16 when every RescaleSlope/Intercept is integral, else float32;
        ``z_positions_mm`` are the real positions along the stacking direction (may be
        non-uniform); ``meta['files']`` / ``meta['sop_instance_uids']`` /
        ``meta['frame_numbers']`` per slice in input order.

    Raises
    ------
    InputError, MultipleSeriesError, UnsupportedModalityError, DicomSeriesError
        See :func:`locate_series`; also undecodable pixel data.
    """
    layout = locate_series(path, series_uid=series_uid)
    first = layout.headers[0]
    rows, cols = int(first.Rows), int(first.Columns)
    n = len(layout.files)
    check_voxel_count((n, rows, cols), layout.source)
    warnings = list(layout.warnings)
    rescales = [_rescale(ds, f) for ds, f in zip(layout.headers, layout.files, strict=True)]
    if any(missing for _, _, missing in rescales):
        warnings.append("RescaleSlope/RescaleIntercept missing; assumed 1 and 0")
    integral = all(s.is_integer() and i.is_integer() for s, i, _ in rescales)
    stack: np.ndarray | None = None  # allocated once the first file proves Rows x Columns
    for file, indices in _slices_by_file(layout).items():
        frames = _frames_of(_pixels(file, layout.source), file, rows, cols)
        if stack is None:
            stack = np.empty((n, rows, cols), dtype=np.int16 if integral else np.float32)
        for k in indices:
            frame = layout.frames[k]
            if frame is not None and frame > len(frames):
                raise DicomSeriesError(
                    f"{file}: pixel data holds {len(frames)} frames, frame {frame} is missing"
                )
            slope, intercept, _ = rescales[k]
            hu = to_hu_dtype(frames[(frame or 1) - 1], slope=slope, intercept=intercept)
            if hu.dtype != stack.dtype:
                stack = stack.astype(np.float32)
            stack[k] = hu
    assert stack is not None  # n >= 1: locate_series never returns an empty series
    header_tilt = _number(first, "GantryDetectorTilt", 0.0) or 0.0
    tilt = layout.tilt_deg if n > 1 else abs(header_tilt)
    if n == 1 and tilt > TILT_TOLERANCE_DEG:
        warnings.append(f"gantry tilt {header_tilt:.1f}° (GantryDetectorTilt)")
    meta = {
        "format": "dicom",
        "modality": str(first.get("Modality", "")),
        "series_instance_uid": str(first.SeriesInstanceUID),
        "study_instance_uid": str(first.get("StudyInstanceUID", "")) or None,
        "sop_instance_uids": tuple(sop_uids(ds)[1] for ds in layout.headers),
        "frame_numbers": layout.frames,
        "files": tuple(str(f) for f in layout.files),
        "body_part_examined": str(first.get("BodyPartExamined", "")) or None,
        "manufacturer": str(first.get("Manufacturer", "")) or None,
        "patient_position": str(first.get("PatientPosition", "")) or None,
        "gantry_tilt_deg": round(tilt, 3),
        "gantry_detector_tilt_deg": header_tilt,
        "series_description": str(first.get("SeriesDescription", "")) or None,
        "slice_thickness_mm": _number(first, "SliceThickness", 0.0) or None,
        "convolution_kernel": str(first.get("ConvolutionKernel", "")) or None,
        "transfer_syntax_uid": str(getattr(first.file_meta, "TransferSyntaxUID", "")) or None,
    }
    return volume_from_ijk(
        stack.transpose(2, 1, 0),
        layout.affine,
        source=layout.source,
        meta=meta,
        warnings=warnings,
        stack_positions_mm=layout.positions_mm,
        hu=None,
    )
