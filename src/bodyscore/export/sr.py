"""TID 1500 Measurement Report (Comprehensive 3D SR) of a scored CT series, via highdicom.

Layout follows Imaging Data Commons' body part regression SRs (``notes/bpreg-reference.md``
sec. 4, collection ``nnu_net_bpr_annotations``): procedure reported SCT 363679005 "Imaging
procedure"; a device observer; one TID 1501 measurement group **per slice** with tracking
identifier ``"Annotations group {k+1}"`` (one shared tracking UID; ``k`` = the slice's index in
the input's own order), the slice (its frame, for a multi-frame source) as source image and one
qualitative evaluation "Finding Site" (SCT 363698007) per body region holding the slice, with the
region codes of :data:`bodyscore.export.seg.REGION_CODES`.

Additions to IDC's layout: every slice has a group (IDC: only slices in a region); each carries
the cleaned and the unprocessed slice score and the slice position z (mm, feet→head) as
measurements (private codes ``99BODYSCORE``, units UCUM; a missing score is left out), and a final
group ``"Series summary"`` holds the body part examined tag (thesis fig. 4.9) and the sanity
checks (thesis sec. 4.3.3: reverse z-ordering, valid z-spacing as SCT Yes/No/Unknown; expected and
observed slope, slope ratio, expected and nominal z-spacing as measurements). The private scheme
is declared in the CodingSchemeIdentificationSequence (PS3.3 C.12.1.1.4); standard codes are
used where they exist (regions, Finding Site, Yes/No/Unknown, units).

:func:`read_measurement_report` reads such an SR back into a :class:`ScoreResult` (scores,
regions, tag and checks; values to the precision of the SR's decimal strings, 16 characters), so
that a cohort can be re-audited from the SRs on a PACS without re-scoring.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bodyscore.errors import InputError
from bodyscore.export.seg import REGION_CODES

if TYPE_CHECKING:
    from bodyscore.io.dicom_source import SourceSeries
    from bodyscore.result import ScoreResult

__all__ = ["BODYSCORE_SCHEME", "build_measurement_report", "read_measurement_report"]

#: Private coding scheme for concepts without a standard code.
BODYSCORE_SCHEME = "99BODYSCORE"
SLICE_GROUP = "Annotations group {}"
SUMMARY_GROUP = "Series summary"

#: Private concepts: (code value, code meaning) by the ScoreResult field they hold.
CONCEPTS: Mapping[str, tuple[str, str]] = {
    "cleaned_scores": ("SLICESCORE", "Body part regression slice score"),
    "unprocessed_scores": ("RAWSCORE", "Unprocessed body part regression slice score"),
    "z_mm": ("ZPOS", "Slice position feet to head"),
    "body_part_examined_tag": ("BPETAG", "Body part examined tag"),
    "reverse_z_ordering": ("REVERSEZ", "Reverse z-ordering"),
    "valid_z_spacing": ("VALIDZSPACING", "Valid z-spacing"),
    "expected_slope": ("EXPSLOPE", "Expected slope"),
    "observed_slope": ("OBSSLOPE", "Observed slope"),
    "slope_ratio": ("SLOPERATIO", "Slope ratio"),
    "expected_z_spacing": ("EXPZSPACING", "Expected z-spacing"),
    "z_spacing": ("ZSPACING", "z-spacing"),
}
_SUMMARY_NUMBERS = ("expected_slope", "observed_slope", "slope_ratio", "expected_z_spacing",
                    "z_spacing")


def _private(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value, BODYSCORE_SCHEME, meaning)


def _concept(field: str) -> Any:
    return _private(*CONCEPTS[field])


def _unit(field: str) -> Any:
    import highdicom as hd

    if field in ("expected_slope", "observed_slope"):
        return hd.sr.CodedConcept("{score}/mm", "UCUM", "score per millimeter")
    if field in ("z_mm", "expected_z_spacing", "z_spacing"):
        return hd.sr.CodedConcept("mm", "UCUM", "millimeter")
    if field == "slope_ratio":
        return hd.sr.CodedConcept("1", "UCUM", "no units")
    return hd.sr.CodedConcept("{score}", "UCUM", "score")


def _coding_scheme() -> Any:
    import highdicom as hd

    return hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=BODYSCORE_SCHEME,
        name="bodyscore body part regression concepts",
        responsible_organization="bodyscore project",
    )


def _yes_no(flag: bool | None) -> Any:
    from pydicom.sr.codedict import codes

    if flag is None:
        return codes.SCT.Unknown
    return codes.SCT.Yes if flag else codes.SCT.No


def _measurement(field: str, value: float, algorithm: Any) -> Any:
    import highdicom as hd

    return hd.sr.Measurement(
        name=_concept(field), value=float(value), unit=_unit(field), algorithm_id=algorithm
    )


def _slice_group(  # noqa: PLR0917 - private helper, one call site
    k: int,
    source: SourceSeries,
    regions: Sequence[str],
    values: Mapping[str, float | None],
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
    measurements = [
        _measurement(field, value, algorithm) for field, value in values.items()
        if value is not None
    ]
    frame = source.frame(k)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=SLICE_GROUP.format(k + 1)
        ),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(
            source.image(k), referenced_frame_numbers=None if frame is None else [frame]
        )],
        qualitative_evaluations=evaluations or None,
        measurements=measurements or None,
    )


def _summary_group(result: ScoreResult, algorithm: Any) -> Any:
    import highdicom as hd

    tag = result.body_part_examined_tag
    evaluations = [
        hd.sr.QualitativeEvaluation(
            name=_concept("body_part_examined_tag"), value=_private(tag, tag)
        ),
        hd.sr.QualitativeEvaluation(
            name=_concept("reverse_z_ordering"), value=_yes_no(result.reverse_z_ordering)
        ),
        hd.sr.QualitativeEvaluation(
            name=_concept("valid_z_spacing"), value=_yes_no(result.valid_z_spacing)
        ),
    ]
    measurements = [
        _measurement(field, getattr(result, field), algorithm)
        for field in _SUMMARY_NUMBERS
        if getattr(result, field) is not None
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
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=SUMMARY_GROUP),
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
    source: SourceSeries,
    *,
    series_number: int = 100,
) -> Any:
    """Build the TID 1500 Comprehensive 3D SR of a scored series.

    Parameters
    ----------
    result : ScoreResult
        Scores in the input's own slice order.
    source : SourceSeries
        The CT instances, slices in the same order
        (:func:`bodyscore.io.dicom_source.read_source_series`; headers suffice).
    series_number : int
        SeriesNumber of the SR (IDC's region SR uses 100).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    InputError
        Slice count differs from the result, or images cannot be referenced.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from bodyscore import __version__

    n = source.n_slices
    if n != result.n_slices:
        raise InputError(
            f"SR: {n} source slices but the result has {result.n_slices}; "
            "score the same series"
        )
    algorithm = hd.sr.AlgorithmIdentification(
        name="bodyscore",
        version=__version__,
        parameters=[f"model={result.model.get('name', 'unknown')}",
                    f"model_version={result.model.get('version', 'unknown')}"],
    )
    regions = result.region_of_slices()
    tracking_uid = hd.UID()
    try:
        groups = [
            _slice_group(k, source, regions[k], {
                "cleaned_scores": result.cleaned_scores[k],
                "unprocessed_scores": result.unprocessed_scores[k],
                "z_mm": result.z_mm[k],
            }, tracking_uid, algorithm)
            for k in range(n)
        ]
        groups.append(_summary_group(result, algorithm))
        report = hd.sr.MeasurementReport(
            observation_context=_observer(result.model),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
        with warnings.catch_warnings():  # e.g. the source's single-component PatientName
            warnings.simplefilter("ignore", UserWarning)
            return hd.sr.Comprehensive3DSR(
                evidence=list(source.images),
                content=report,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="bodyscore",
                series_description="bodyscore body part regression",
                is_complete=True,
                is_final=True,
                coding_schemes=[_coding_scheme()],
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"SR: the source images cannot be referenced ({exc})") from exc


# -- reading back ---------------------------------------------------------------------------------
_FLAGS = {"373066001": True, "373067005": False, "261665006": None}  # SCT Yes / No / Unknown
_REGION_OF_CODE = {code.value: name for name, code in REGION_CODES.items()}


def _numbers(group: Any) -> dict[str, float]:
    """Private measurements of a group by ScoreResult field."""
    fields = {code: field for field, (code, _) in CONCEPTS.items()}
    out = {}
    for item in group.get_measurements():
        if item.name.scheme_designator == BODYSCORE_SCHEME and item.name.value in fields:
            out[fields[item.name.value]] = float(item.value)
    return out


def _sites(group: Any) -> list[str]:
    from highdicom.sr.utils import find_content_items
    from pydicom.sr.codedict import codes

    items = find_content_items(group[0], name=codes.SCT.FindingSite)
    return [_REGION_OF_CODE[c] for item in items
            if (c := str(item.ConceptCodeSequence[0].CodeValue)) in _REGION_OF_CODE]


def _summary(group: Any, where: str) -> dict[str, Any]:
    fields = {code: field for field, (code, _) in CONCEPTS.items()}
    out: dict[str, Any] = dict(_numbers(group))
    for item in group.get_qualitative_evaluations():
        field = fields.get(str(item.name.value)) if item.name.scheme_designator == (
            BODYSCORE_SCHEME) else None
        if field == "body_part_examined_tag":
            out[field] = str(item.value.value)
        elif field in ("reverse_z_ordering", "valid_z_spacing"):
            out[field] = _FLAGS.get(str(item.value.value))
    for field in ("body_part_examined_tag", "reverse_z_ordering", "expected_slope", "z_spacing"):
        if field not in out:
            raise InputError(f"{where}: the series summary lacks {CONCEPTS[field][1]!r}")
    return out


def _slice_index(identifier: str | None) -> int | None:
    match = re.fullmatch(SLICE_GROUP.format(r"(\d+)"), str(identifier or ""))
    return int(match.group(1)) - 1 if match else None


def read_measurement_report(path: str | os.PathLike[str]) -> ScoreResult:
    """Read a bodyscore TID 1500 SR back into a :class:`ScoreResult`.

    Parameters
    ----------
    path : path-like
        SR file written by :func:`build_measurement_report`.

    Returns
    -------
    ScoreResult
        Per-slice cleaned and unprocessed scores, z (mm), body part examined dictionary, tag and
        sanity checks as in the SR; ``lookup_table`` and ``settings`` empty (not in the SR);
        ``model`` from the algorithm identification; ``input`` names the SR and the series it
        references.

    Raises
    ------
    InputError
        Not a readable SR, or not one written by bodyscore (no slice groups or summary).
    """
    import highdicom as hd

    from bodyscore.result import ScoreResult

    where = os.fspath(path)
    try:
        sr = hd.sr.srread(path)
        groups = sr.content.get_image_measurement_groups()  # type: ignore[attr-defined]
    except (OSError, ValueError, TypeError, AttributeError, KeyError, EOFError,
            RuntimeError) as exc:  # highdicom: RuntimeError for another SOP class
        raise InputError(f"{where}: not a readable TID 1500 structured report ({exc})") from exc
    slices: dict[int, Any] = {}
    summary = None
    for group in groups:
        k = _slice_index(group.tracking_identifier)
        if k is not None:
            slices[k] = group
        elif group.tracking_identifier == SUMMARY_GROUP:
            summary = group
    n = len(slices)
    if summary is None or n == 0 or sorted(slices) != list(range(n)):
        raise InputError(
            f"{where}: not a bodyscore SR (needs slice groups 'Annotations group 1..n' and a "
            f"'{SUMMARY_GROUP}' group)"
        )
    per_slice = [_numbers(slices[k]) for k in range(n)]
    if any("z_mm" not in values for values in per_slice):
        raise InputError(f"{where}: a slice group lacks the slice position (written by an older "
                         "bodyscore?); cannot rebuild the result")
    regions: dict[str, list[int]] = {name: [] for name in REGION_CODES}
    for k in range(n):
        for name in _sites(slices[k]):
            regions[name].append(k)
    checks = _summary(summary, where)
    return ScoreResult(
        cleaned_scores=tuple(v.get("cleaned_scores") for v in per_slice),
        z_mm=tuple(v["z_mm"] for v in per_slice),
        unprocessed_scores=tuple(v.get("unprocessed_scores") for v in per_slice),
        body_part_examined={name: tuple(v) for name, v in regions.items()},
        body_part_examined_tag=checks["body_part_examined_tag"],
        lookup_table={},
        reverse_z_ordering=bool(checks["reverse_z_ordering"]),
        valid_z_spacing=checks.get("valid_z_spacing"),
        expected_slope=checks["expected_slope"],
        observed_slope=checks.get("observed_slope"),
        slope_ratio=checks.get("slope_ratio"),
        expected_z_spacing=checks.get("expected_z_spacing"),
        z_spacing=checks["z_spacing"],
        model=_model(summary),
        input=_input(sr, where),
    )


def _model(group: Any) -> dict[str, str]:
    from highdicom.sr.utils import find_content_items
    from pydicom.sr.codedict import codes

    out = {}
    for item in find_content_items(group[0], name=codes.DCM.AlgorithmParameters, recursive=True):
        key, _, value = str(item.TextValue).partition("=")
        if key in ("model", "model_version"):
            out["name" if key == "model" else "version"] = value
    return out


def _input(sr: Any, where: str) -> dict[str, Any]:
    evidence = sr.get("CurrentRequestedProcedureEvidenceSequence") or []
    series = [s for study in evidence for s in study.get("ReferencedSeriesSequence", [])]
    return {
        "source": where,
        "format": "dicom-sr",
        "sr_sop_instance_uid": str(sr.SOPInstanceUID),
        "study_instance_uid": str(sr.StudyInstanceUID),
        "series_instance_uid": str(series[0].SeriesInstanceUID) if series else None,
    }
