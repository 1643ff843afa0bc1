"""Cross-check predicted body regions with segmented anatomy (DICOM SEG and RTSTRUCT).

Each segmented structure's extent along the patient z axis (SEG: positions of the frames where
the segment is non-empty; RTSTRUCT: z of its contour points) is compared with the body regions
that :func:`bodyscore.predict` assigned to the slices inside that extent (thesis table 4.6): a
lung should lie in chest slices, a liver in abdomen slices, and so on. A structure *disagrees*
when fewer than ``min_share`` of those slices carry one of its expected regions.

Slice positions are compared in DICOM patient z (mm), which equals the result's ``z`` for DICOM
input (RAS and LPS share the z axis).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.result import ScoreResult

__all__ = [
    "EXPECTED_REGIONS",
    "AnatomyCheck",
    "StructureExtent",
    "check_structures",
    "expected_regions",
    "read_structure_extents",
]

logger = logging.getLogger(__name__)

_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: Structure (lower-case name fragment or SNOMED CT code) → body regions it must lie in.
EXPECTED_REGIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "lung": ("chest",),
        "39607008": ("chest",),
        "heart": ("chest",),
        "80891009": ("chest",),
        "liver": ("abdomen", "chest"),
        "10200004": ("abdomen", "chest"),
        "spleen": ("abdomen", "chest"),
        "78961009": ("abdomen", "chest"),
        "kidney": ("abdomen",),
        "64033007": ("abdomen",),
        "pancreas": ("abdomen",),
        "15776009": ("abdomen",),
        "bladder": ("pelvis",),
        "89837001": ("pelvis",),
        "prostate": ("pelvis",),
        "41216001": ("pelvis",),
        "rectum": ("pelvis",),
        "34402009": ("pelvis",),
        "brain": ("head",),
        "12738006": ("head",),
        "parotid": ("head", "shoulder-neck"),
        "45289007": ("head", "shoulder-neck"),
        "esophagus": ("chest", "shoulder-neck"),
        "32849002": ("chest", "shoulder-neck"),
    }
)


@dataclass(frozen=True)
class StructureExtent:
    """z-extent of one segmented structure.

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID of the CT the segmentation refers to ("" when not recorded).
    structure : str
        Segment label / ROI name.
    code : str
        SNOMED CT code value of the segmented property ("" for RTSTRUCT without one).
    z_min_mm, z_max_mm : float
        Patient z range of the structure in mm.
    source : str
        The SEG/RTSTRUCT file.
    """

    series_uid: str
    structure: str
    code: str
    z_min_mm: float
    z_max_mm: float
    source: str


@dataclass(frozen=True)
class AnatomyCheck:
    """Outcome of comparing one structure with the predicted regions.

    Attributes
    ----------
    agrees : bool
        Share of the structure's slices in an expected region ≥ the threshold.
    share : float or None
        That share (None when no slice lies in the extent or no expectation is known).
    message : str
        One line explaining a disagreement (empty otherwise).
    """

    series_uid: str
    structure: str
    expected: tuple[str, ...]
    found: tuple[str, ...]
    share: float | None
    agrees: bool
    message: str


def expected_regions(structure: str, code: str = "") -> tuple[str, ...]:
    """Expected body regions of a structure by SNOMED code, else by name; () when unknown."""
    if code in EXPECTED_REGIONS:
        return tuple(EXPECTED_REGIONS[code])
    name = structure.lower()
    for fragment, regions in EXPECTED_REGIONS.items():
        if not fragment.isdigit() and fragment in name:
            return tuple(regions)
    return ()


def _seg_extents(ds: Any, source: str) -> list[StructureExtent]:
    pixels = np.asarray(ds.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    series_uid = (
        str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
        if "ReferencedSeriesSequence" in ds
        else ""
    )
    z_by_segment: dict[int, list[float]] = {}
    for frame, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if pixels[frame].any():
            z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
            z_by_segment.setdefault(number, []).append(z)
    out = []
    for segment in ds.SegmentSequence:
        zs = z_by_segment.get(int(segment.SegmentNumber))
        if not zs:
            continue
        code = ""
        if "SegmentedPropertyTypeCodeSequence" in segment:
            code = str(segment.SegmentedPropertyTypeCodeSequence[0].CodeValue)
        out.append(
            StructureExtent(series_uid, str(segment.SegmentLabel), code, min(zs), max(zs), source)
        )
    return out


def _rtstruct_extents(ds: Any, source: str) -> list[StructureExtent]:
    series_uid = ""
    try:
        ref = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
        series_uid = str(ref.RTReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        pass
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out = []
    for roi in ds.get("ROIContourSequence", []):
        zs = [float(z) for c in roi.get("ContourSequence", []) for z in c.ContourData[2::3]]
        if zs:
            name = names.get(int(roi.ReferencedROINumber), "")
            out.append(StructureExtent(series_uid, name, "", min(zs), max(zs), source))
    return out


def read_structure_extents(path: str | os.PathLike[str]) -> list[StructureExtent]:
    """z-extents of every non-empty structure of a DICOM SEG or RTSTRUCT file.

    Raises
    ------
    InputError
        Unreadable file, or neither SEG nor RTSTRUCT.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        sop_class = str(ds.SOPClassUID)
        if sop_class == _SEG_SOP_CLASS:
            return _seg_extents(ds, str(path))
        if sop_class == _RTSTRUCT_SOP_CLASS:
            return _rtstruct_extents(ds, str(path))
    except (InvalidDicomError, OSError, AttributeError, KeyError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable DICOM SEG/RTSTRUCT ({exc}); check the file"
        ) from exc
    raise InputError(
        f"{path}: SOP class {sop_class} is neither SEG nor RTSTRUCT; give a segmentation object"
    )


def check_structures(
    result: ScoreResult, extents: Sequence[StructureExtent], *, min_share: float = 0.5
) -> list[AnatomyCheck]:
    """Compare each structure's z-extent with the regions predicted for the slices inside it.

    Parameters
    ----------
    result : ScoreResult
        Scores of the CT the structures belong to (``z`` in patient mm).
    extents : sequence of StructureExtent
    min_share : float
        Share of the slices in the extent that must carry an expected region.
    """
    z = result.z
    regions = result.region_of_slices()
    series_uid = str(result.input.get("series_instance_uid") or "")
    checks = []
    for extent in extents:
        expected = expected_regions(extent.structure, extent.code)
        tolerance = 0.5 * float(result.z_spacing or 0.0)
        inside = np.flatnonzero(
            (z >= extent.z_min_mm - tolerance) & (z <= extent.z_max_mm + tolerance)
        )
        found = tuple(sorted({name for i in inside for name in regions[int(i)]}))
        uid = extent.series_uid or series_uid
        if not expected:
            checks.append(
                AnatomyCheck(
                    uid, extent.structure, (), found, None, True, "no expected region known"
                )
            )
            continue
        if inside.size == 0:
            checks.append(
                AnatomyCheck(
                    uid,
                    extent.structure,
                    expected,
                    (),
                    None,
                    False,
                    "structure lies outside the scanned slices",
                )
            )
            continue
        hits = sum(1 for i in inside if set(regions[int(i)]) & set(expected))
        share = hits / inside.size
        agrees = share >= min_share
        message = (
            ""
            if agrees
            else (
                f"{extent.structure} expected in {'/'.join(expected)} but its slices are "
                f"{'/'.join(found) or 'unassigned'} ({100 * share:.0f}% expected)"
            )
        )
        checks.append(AnatomyCheck(uid, extent.structure, expected, found, share, agrees, message))
    return checks


def write_anatomy_table(
    results_path: str | os.PathLike[str],
    segmentation_paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    min_share: float = 0.5,
) -> Path:
    """Check every SEG/RTSTRUCT against the scored series it refers to; write a Parquet table
    (``series_uid, structure, expected, found, share, agrees, message``) that
    ``bodyscore report --anatomy`` lists.

    Segmentations whose referenced series is not in the results are skipped with a log line.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bodyscore.export.atomic import atomic_path

    rows = pq.read_table(results_path).to_pylist()
    by_uid = {str(r["series_uid"]): r for r in rows if r.get("result_json")}
    checks: list[AnatomyCheck] = []
    for path in segmentation_paths:
        extents = read_structure_extents(path)
        uids = {e.series_uid for e in extents}
        for uid in uids:
            row = by_uid.get(uid)
            if row is None:
                logger.info("%s: referenced series %s not scored; skipped", path, uid)
                continue
            data = json.loads(Path(row["result_json"]).read_text(encoding="utf-8"))
            result = ScoreResult.from_dict(data)
            checks += check_structures(
                result, [e for e in extents if e.series_uid == uid], min_share=min_share
            )
    table = pa.table(
        {
            "series_uid": [c.series_uid for c in checks],
            "structure": [c.structure for c in checks],
            "expected": ["/".join(c.expected) for c in checks],
            "found": ["/".join(c.found) for c in checks],
            "share": pa.array([c.share for c in checks], pa.float64()),
            "agrees": pa.array([c.agrees for c in checks], pa.bool_()),
            "message": [c.message for c in checks],
        }
    )
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp)
    return Path(output)
