"""TID 1500 Measurement Report (Comprehensive 3D SR) of a scored CT series, via highdicom.

Layout follows Imaging Data Commons' body part regression SRs (``notes/bpreg-reference.md``
sec. 4, collection ``nnu_net_bpr_annotations``): procedure reported SCT 363679005 "Imaging
procedure"; a device observer; one TID 1501 measurement group **per slice** with tracking
identifier ``"Annotations group {k+1}"`` (one shared tracking UID), the slice as source image and
one qualitative evaluation "Finding Site" (SCT 363698007) per body region holding the slice, with
the region codes of :data:`bodyscore.export.seg.REGION_CODES`.

Additions to IDC's layout: each slice group also carries the cleaned slice score as a measurement
(private code ``99BODYSCORE/SLICESCORE``, unit UCUM ``{score}``; slices without a cleaned score
have none), and a final group ``"Series summary"`` holds the body part examined tag (thesis fig.
4.9) and the sanity checks (thesis sec. 4.3.3: reverse z-ordering, valid z-spacing as SCT Yes/No/
Unknown; observed slope, slope ratio, expected and nominal z-spacing as measurements).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bodyscore.errors import InputError
from bodyscore.export.seg import REGION_CODES

if TYPE_CHECKING:
    from pydicom import Dataset

    from bodyscore.result import ScoreResult

__all__ = ["BODYSCORE_SCHEME", "build_measurement_report"]

#: Private coding scheme for concepts without a standard code.
BODYSCORE_SCHEME = "99BODYSCORE"


def _private(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value, BODYSCORE_SCHEME, meaning)


def _yes_no(flag: bool | None) -> Any:
    from pydicom.sr.codedict import codes

    if flag is None:
        return codes.SCT.Unknown
    return codes.SCT.Yes if flag else codes.SCT.No


def _slice_group(  # noqa: PLR0917 - private helper, one call site
    k: int,
    image: Dataset,
    regions: Sequence[str],
    score: float | None,
    tracking_uid: str,
    algorithm: Any,
) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=codes.SCT.FindingSite,
            value=hd.sr.CodedConcept(REGION_CODES[r].value, "SCT", REGION_CODES[r].meaning),
        )
        for r in REGION_CODES
        if r in regions
    ]
    measurements = []
    if score is not None:
        measurements.append(
            hd.sr.Measurement(
                name=_private("SLICESCORE", "Body part regression slice score"),
                value=float(score),
                unit=hd.sr.CodedConcept("{score}", "UCUM", "score"),
                algorithm_id=algorithm,
            )
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=f"Annotations group {k + 1}"
        ),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image)],
        qualitative_evaluations=evaluations or None,
        measurements=measurements or None,
    )


def _summary_group(result: ScoreResult, algorithm: Any) -> Any:
    import highdicom as hd

    tag = result.body_part_examined_tag
    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=_private("BPETAG", "Body part examined tag"), value=_private(tag, tag)
        ),
        hd.sr.QualitativeEvaluation(
            name=_private("REVERSEZ", "Reverse z-ordering"),
            value=_yes_no(result.reverse_z_ordering),
        ),
        hd.sr.QualitativeEvaluation(
            name=_private("VALIDZSPACING", "Valid z-spacing"),
            value=_yes_no(result.valid_z_spacing),
        ),
    ]
    per_mm = hd.sr.CodedConcept("{score}/mm", "UCUM", "score per millimeter")
    mm = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
    numbers = [
        ("EXPSLOPE", "Expected slope", result.expected_slope, per_mm),
        ("OBSSLOPE", "Observed slope", result.observed_slope, per_mm),
        ("SLOPERATIO", "Slope ratio", result.slope_ratio,
         hd.sr.CodedConcept("1", "UCUM", "no units")),
        ("EXPZSPACING", "Expected z-spacing", result.expected_z_spacing, mm),
        ("ZSPACING", "z-spacing", result.z_spacing, mm),
    ]
    measurements = [
        hd.sr.Measurement(
            name=_private(code, meaning), value=float(value), unit=unit, algorithm_id=algorithm
        )
        for code, meaning, value, unit in numbers
        if value is not None
    ]
    sites = [
        hd.sr.FindingSite(
            anatomic_location=hd.sr.CodedConcept(
                REGION_CODES[r].value, "SCT", REGION_CODES[r].meaning
            )
        )
        for r in REGION_CODES
        if result.body_part_examined.get(r)
    ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Series summary"),
        algorithm_id=algorithm,
        finding_sites=sites or None,
        qualitative_evaluations=evaluations,
        measurements=measurements,
    )


def _observer(model: Mapping[str, Any]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from bodyscore import __version__

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID(),
        name="bodyscore",
        manufacturer_name="bodyscore",
        model_name=f"{model.get('name', 'unknown')} {model.get('version', '')}".strip(),
        serial_number=f"bodyscore {__version__}",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def build_measurement_report(
    result: ScoreResult,
    source_images: Sequence[Dataset],
    *,
    series_number: int = 100,
) -> Any:
    """Build the TID 1500 Comprehensive 3D SR of a scored series.

    Parameters
    ----------
    result : ScoreResult
        Scores in the input's own slice order.
    source_images : sequence of pydicom.Dataset
        The CT instances in the same order (headers suffice).
    series_number : int
        SeriesNumber of the SR (IDC's region SR uses 100).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    InputError
        Image count differs from the result, or images cannot be referenced.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from bodyscore import __version__

    n = len(source_images)
    if n != result.n_slices:
        raise InputError(
            f"SR: {n} source images but the result has {result.n_slices} slices; "
            "score the same series"
        )
    algorithm = hd.sr.AlgorithmIdentification(
        name="bodyscore",
        version=__version__,
        parameters=[f"model={result.model.get('name', 'unknown')} "
                    f"{result.model.get('version', '')}".strip()],
    )
    regions = result.region_of_slices()
    tracking_uid = hd.UID()
    try:
        groups = [
            _slice_group(k, source_images[k], regions[k], result.cleaned_scores[k],
                         tracking_uid, algorithm)
            for k in range(n)
            if regions[k] or result.cleaned_scores[k] is not None
        ]
        groups.append(_summary_group(result, algorithm))
        report = hd.sr.MeasurementReport(
            observation_context=_observer(result.model),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
        return hd.sr.Comprehensive3DSR(
            evidence=list(source_images),
            content=report,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="bodyscore",
            series_description="bodyscore body part regression",
            is_complete=True,
            is_final=True,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"SR: the source images cannot be referenced ({exc})") from exc
