"""DICOM Segmentation of the body regions of a scored CT series (thesis table 4.6), via highdicom.

One binary segment per body region that holds at least one slice (legs, pelvis, abdomen, chest,
shoulder-neck, head — the regions of ``ScoreResult.body_part_examined``). A segment covers the
*body* (not the air) on exactly that region's slices: per slice, voxels above ``threshold_hu``
(default -500 HU), keeping the connected components at least half as large as the largest one
(both legs; the table and detached arms are dropped), with holes filled (scipy.ndimage). Regions
overlap (thesis table 4.6), which a BINARY SEG allows.

Frame ``k`` of a segment refers to source image ``k`` of the series sorted by position along the
slice normal — the input's own slice order of the result (``Volume.meta['sop_instance_uids']``).
Differs from bpreg / IDC: IDC encodes regions as per-slice SR annotations only
(``notes/bpreg-reference.md`` sec. 4); a SEG lets OHIF and 3D Slicer show them as coloured masks.

Region codes (SNOMED CT): pelvis 12921003, abdomen 113345001, chest 51185008, shoulder-neck →
Neck 45048000 and head 69536005 as IDC's ``bpr_regions_code_mapping.csv``, so our objects can be
queried with IDC's. Legs: **Lower limb 61685007**, not IDC's 30021000, which is SNOMED "Lower leg
structure" (knee to ankle only) while the "legs" region is everything caudal to the pelvis start,
thighs included. (DICOM CID 4031 now lists newer codes for pelvis 816092008, abdomen 818981001
and chest 816094009; the older ones above stay valid SNOMED concepts.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError, OutputError

if TYPE_CHECKING:
    from pydicom import Dataset

    from bodyscore.result import ScoreResult

__all__ = [
    "REGION_CODES",
    "RegionCode",
    "body_mask",
    "build_region_segmentation",
    "read_source_images",
    "write_dataset",
]

DEFAULT_BODY_THRESHOLD_HU = -500.0
KEEP_COMPONENT_FRACTION = 0.5
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


@dataclass(frozen=True)
class RegionCode:
    """SNOMED CT code and display of one body region.

    Attributes
    ----------
    value : str
        SNOMED CT concept id.
    meaning : str
        Code meaning shown by viewers.
    label : str
        Segment label.
    rgb : tuple of int
        Display colour (0-255).
    """

    value: str
    meaning: str
    label: str
    rgb: tuple[int, int, int]


#: Body regions of thesis table 4.6 in the order of ``ScoreResult.body_part_examined``.
REGION_CODES: Mapping[str, RegionCode] = {
    "legs": RegionCode("61685007", "Lower limb", "Legs", (128, 174, 128)),
    "pelvis": RegionCode("12921003", "Pelvis", "Pelvis", (241, 214, 145)),
    "abdomen": RegionCode("113345001", "Abdomen", "Abdomen", (177, 122, 101)),
    "chest": RegionCode("51185008", "Chest", "Chest", (111, 184, 210)),
    "shoulder-neck": RegionCode("45048000", "Neck", "Shoulder-neck", (216, 101, 79)),
    "head": RegionCode("69536005", "Head", "Head", (220, 245, 20)),
}


def read_source_images(
    files: Sequence[str | os.PathLike[str]], sop_instance_uids: Sequence[str]
) -> list[Dataset]:
    """Read the source CT instances in the result's slice order.

    Parameters
    ----------
    files : sequence of path-like
        The series' instance files (any order).
    sop_instance_uids : sequence of str
        SOPInstanceUIDs in the input's own slice order (``Volume.meta['sop_instance_uids']``).

    Returns
    -------
    list of pydicom.Dataset
        One dataset (with pixel data) per slice, ordered like ``sop_instance_uids``; missing
        type 2 patient/study attributes are added empty (in memory only).

    Raises
    ------
    InputError
        A slice lacks a SOPInstanceUID or is missing among ``files``.
    """
    import pydicom

    if not sop_instance_uids or not all(sop_instance_uids):
        raise InputError(
            "source series: some instances have no SOPInstanceUID; a SEG/SR cannot reference "
            "them (fix the DICOM files)"
        )
    by_uid: dict[str, Any] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        by_uid[str(ds.get("SOPInstanceUID", ""))] = ds
    missing = [uid for uid in sop_instance_uids if uid not in by_uid]
    if missing:
        raise InputError(f"source series: {len(missing)} instances not found, e.g. {missing[0]}")
    images = [by_uid[uid] for uid in sop_instance_uids]
    for ds in images:  # anonymised files often drop these type 2 attributes; empty is valid
        for keyword in TYPE2_PATIENT_STUDY:
            if keyword not in ds:
                setattr(ds, keyword, "")
    frames = {str(ds.get("FrameOfReferenceUID", "")) for ds in images}
    if len(frames) > 1:
        raise InputError(
            f"source series: its instances carry {len(frames)} different FrameOfReferenceUIDs; "
            "a SEG/SR needs one frame of reference per series (fix the DICOM headers)"
        )
    return images


def _hu(ds: Dataset) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return np.asarray(ds.pixel_array, dtype=np.float32) * slope + intercept


def body_mask(hu: np.ndarray, *, threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU) -> np.ndarray:
    """Body mask of one axial slice.

    Parameters
    ----------
    hu : numpy.ndarray, shape (rows, cols)
        Slice in HU.
    threshold_hu : float
        Voxels above this value are tissue candidates.

    Returns
    -------
    numpy.ndarray, shape (rows, cols), bool
        Components at least :data:`KEEP_COMPONENT_FRACTION` × the largest one, holes filled;
        all False for an air-only slice.
    """
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(hu) > threshold_hu)
    if n == 0:
        return np.zeros(labels.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= KEEP_COMPONENT_FRACTION * sizes.max()) + 1
    return np.asarray(ndimage.binary_fill_holes(np.isin(labels, keep)), dtype=bool)


def _algorithm(model: Mapping[str, Any]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from bodyscore import __version__

    parameters = {
        "model": str(model.get("name", "unknown")),
        "model_version": str(model.get("version", "unknown")),
        "body_threshold_hu": f"{DEFAULT_BODY_THRESHOLD_HU:g}",
    }
    return hd.AlgorithmIdentificationSequence(
        name="bodyscore",
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        source="https://github.com/bodyscore (body part regression)",
        parameters=parameters,
    )


def build_region_segmentation(
    result: ScoreResult,
    source_images: Sequence[Dataset],
    *,
    threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    series_number: int = 102,
) -> Any:
    """Build a binary DICOM SEG with one segment per body region present.

    Parameters
    ----------
    result : ScoreResult
        Scores of the series; ``body_part_examined`` indices in the input's own order.
    source_images : sequence of pydicom.Dataset
        The CT instances with pixel data, in the same order (:func:`read_source_images`).
    threshold_hu : float
        Body threshold in HU.
    series_number : int
        SeriesNumber of the SEG.

    Returns
    -------
    highdicom.seg.Segmentation

    Raises
    ------
    InputError
        Image count differs from the result's slices, or no slice lies in any region.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from bodyscore import __version__

    n = len(source_images)
    if n != result.n_slices:
        raise InputError(
            f"SEG: {n} source images but the result has {result.n_slices} slices; "
            "score the same series"
        )
    regions = [
        (name, sorted(result.body_part_examined.get(name, ())))
        for name in REGION_CODES
        if result.body_part_examined.get(name)
    ]
    if not regions:
        raise InputError("SEG: no slice was assigned to a body region; no SEG to write")
    rows, cols = int(source_images[0].Rows), int(source_images[0].Columns)
    masks = np.zeros((n, rows, cols, len(regions)), dtype=bool)
    needed = sorted({i for _, indices in regions for i in indices})
    body = {i: body_mask(_hu(source_images[i]), threshold_hu=threshold_hu) for i in needed}
    for s, (_, indices) in enumerate(regions):
        for i in indices:
            masks[i, :, :, s] = body[i]
    algorithm = _algorithm(result.model)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=s + 1,
            segment_label=REGION_CODES[name].label,
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=hd.sr.CodedConcept(
                REGION_CODES[name].value, "SCT", REGION_CODES[name].meaning
            ),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"bodyscore region {name}",
            display_color=hd.color.CIELabColor.from_rgb(*REGION_CODES[name].rgb),
        )
        for s, (name, _) in enumerate(regions)
    ]
    model = result.model
    try:
        return hd.seg.Segmentation(
            source_images=list(source_images),
            pixel_array=masks,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="bodyscore",
            manufacturer_model_name=str(model.get("name", "bodyscore"))[:64],
            software_versions=f"bodyscore {__version__}",
            device_serial_number=str(model.get("sha256") or model.get("version") or "none")[:64],
            series_description="bodyscore body regions",
            content_label="BODYREGIONS",
            content_description="Body regions (thesis table 4.6) from body part regression",
            content_creator_name="bodyscore^",
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"SEG: the source images cannot be referenced ({exc})") from exc


def write_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a DICOM dataset (SEG, SR) atomically.

    Raises
    ------
    OutputError
        The folder is not writable.
    """
    from bodyscore.export.atomic import atomic_path

    with atomic_path(path) as tmp:
        try:
            dataset.save_as(tmp, enforce_file_format=True)
        except (ValueError, TypeError) as exc:
            raise OutputError(f"{path}: cannot encode the DICOM object ({exc})") from exc
    return Path(path)
