"""DICOM Segmentation of the body regions of a scored CT series (thesis table 4.6), via highdicom.

One binary segment per body region that holds at least one slice (legs, pelvis, abdomen, chest,
shoulder-neck, head — the regions of ``ScoreResult.body_part_examined``). A segment covers the
*body* (not the air) on exactly that region's slices: per slice, voxels above ``threshold_hu``
(default -500 HU), keeping the connected components at least half as large as the largest one
(both legs; the table and detached arms are dropped), with holes filled (scipy.ndimage). Regions
overlap (thesis table 4.6), which a BINARY SEG allows.

Frame ``k`` of a segment refers to source image ``k`` of the series sorted by position along the
slice normal — the input's own slice order of the result (``Volume.meta['sop_instance_uids']``).
For a multi-frame source (one Enhanced / Legacy Converted Enhanced CT instance) the segment frames
refer to the source's frames (``Volume.meta['frame_numbers']``); a series of several multi-frame
instances is referenced through the frames' plane positions (highdicom matches them to the
source frames).
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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError, OutputError

if TYPE_CHECKING:
    from pydicom import Dataset

    from bodyscore.io.dicom_source import SourceSeries
    from bodyscore.result import ScoreResult

__all__ = [
    "REGION_CODES",
    "RegionCode",
    "body_mask",
    "build_region_segmentation",
    "write_dataset",
]

DEFAULT_BODY_THRESHOLD_HU = -500.0
KEEP_COMPONENT_FRACTION = 0.5


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


def _region_slices(result: ScoreResult) -> list[tuple[str, list[int]]]:
    regions = [
        (name, sorted(result.body_part_examined.get(name, ())))
        for name in REGION_CODES
        if result.body_part_examined.get(name)
    ]
    if not regions:
        raise InputError("SEG: no slice was assigned to a body region; no SEG to write")
    return regions


def _descriptions(regions: list[tuple[str, list[int]]], model: Mapping[str, Any]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = _algorithm(model)
    return [
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


def _masks_and_sources(
    source: SourceSeries, regions: list[tuple[str, list[int]]], threshold_hu: float
) -> tuple[np.ndarray, list[Any], dict[str, Any]]:
    """(pixel array (planes, rows, cols, segments), source images, extra highdicom arguments).

    Single-frame series: plane k = slice k, one source image per slice. One multi-frame instance:
    plane f = its frame f + 1. Several multi-frame instances: plane k = slice k with its plane
    position, the first instance as source and the others as further sources.
    """
    import highdicom as hd

    n = source.n_slices
    first = source.image(0)
    rows, cols = int(first.Rows), int(first.Columns)
    needed = sorted({i for _, indices in regions for i in indices})
    body = {i: body_mask(source.hu(i), threshold_hu=threshold_hu) for i in needed}
    one_instance = len(source.images) == 1
    if source.is_multiframe and one_instance:
        planes = [int(source.frame(k) or 1) - 1 for k in range(n)]
        n_planes = int(first.get("NumberOfFrames") or 1)
    else:
        planes, n_planes = list(range(n)), n
    masks = np.zeros((n_planes, rows, cols, len(regions)), dtype=bool)
    for s, (_, indices) in enumerate(regions):
        for i in indices:
            masks[planes[i], :, :, s] = body[i]
    if not source.is_multiframe:
        return masks, [source.image(k) for k in range(n)], {}
    if one_instance:
        return masks, [first], {}
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, source.position_mm(k))
        for k in range(n)
    ]
    extra = {"plane_positions": positions, "further_source_images": list(source.images[1:])}
    return masks, [source.images[0]], extra


def _reference_frames(seg: Any, source: SourceSeries) -> Any:
    """Give each SEG frame that highdicom left without a source reference (a series of several
    multi-frame instances) its source frame, matched by plane position (PS3.3 C.7.6.16.2.6)."""
    import highdicom as hd
    from pydicom import Dataset

    by_position = {
        tuple(np.round(source.position_mm(k), 3)): k for k in range(source.n_slices)
    }
    for item in seg.PerFrameFunctionalGroupsSequence:
        if item.get("DerivationImageSequence"):
            continue
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        k = by_position.get(tuple(np.round(ipp, 3)))
        if k is None:
            continue
        image = source.image(k)
        reference = Dataset()
        reference.ReferencedSOPClassUID = image.SOPClassUID
        reference.ReferencedSOPInstanceUID = image.SOPInstanceUID
        reference.ReferencedFrameNumber = int(source.frame(k) or 1)
        reference.SpatialLocationsPreserved = "YES"
        reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(
            "121322", "DCM", "Source image for image processing operation"
        )]
        derivation = Dataset()
        derivation.SourceImageSequence = [reference]
        derivation.DerivationCodeSequence = [hd.sr.CodedConcept("113076", "DCM", "Segmentation")]
        item.DerivationImageSequence = [derivation]
    return seg


def build_region_segmentation(
    result: ScoreResult,
    source: SourceSeries,
    *,
    threshold_hu: float = DEFAULT_BODY_THRESHOLD_HU,
    series_number: int = 102,
) -> Any:
    """Build a binary DICOM SEG with one segment per body region present.

    Parameters
    ----------
    result : ScoreResult
        Scores of the series; ``body_part_examined`` indices in the input's own order.
    source : SourceSeries
        The CT instances with pixel data, slices in the same order
        (:func:`bodyscore.io.dicom_source.read_source_series`).
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
        Slice count differs from the result's, no slice lies in any region, or highdicom
        cannot reference the source images.
    """
    import highdicom as hd

    from bodyscore import __version__

    if source.n_slices != result.n_slices:
        raise InputError(
            f"SEG: {source.n_slices} source slices but the result has {result.n_slices}; "
            "score the same series"
        )
    regions = _region_slices(result)
    masks, images, extra = _masks_and_sources(source, regions, threshold_hu)
    model = result.model
    try:
        with warnings.catch_warnings():  # e.g. the source's single-component PatientName
            warnings.simplefilter("ignore", UserWarning)
            seg = hd.seg.Segmentation(
                source_images=images,
                pixel_array=masks,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=_descriptions(regions, model),
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="bodyscore",
                manufacturer_model_name=str(model.get("name", "bodyscore"))[:64],
                software_versions=f"bodyscore {__version__}",
                device_serial_number=str(
                    model.get("sha256") or model.get("version") or "none"
                )[:64],
                series_description="bodyscore body regions",
                content_label="BODYREGIONS",
                content_description="Body regions (thesis table 4.6) from body part regression",
                content_creator_name="bodyscore^",
                omit_empty_frames=True,
                **extra,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"SEG: the source images cannot be referenced ({exc})") from exc
    return _reference_frames(seg, source) if extra else seg


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
