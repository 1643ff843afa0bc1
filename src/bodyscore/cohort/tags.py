"""Compare the DICOM BodyPartExamined tag with the predicted body part examined tag.

DICOM BodyPartExamined (0018,0015) is free-ish text ("CHEST", "LUNG", "CHESTABDPELVIS",
"HEADNECK", often empty after anonymisation); the predicted tag is one of thesis fig. 4.9's
joined parts ("CHEST-ABDOMEN", ...). Both are reduced to sets of the five tag parts and compared:
they *agree* when they share a part (a chest CT tagged "LUNG" agrees with "CHEST-ABDOMEN").
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Literal

__all__ = ["DICOM_BODY_PART_REGIONS", "TagAgreement", "compare_tags", "dicom_tag_parts"]

TagAgreement = Literal["agree", "wrong", "missing", "unmapped", "no prediction"]

_ALL = ("HEAD", "NECK", "CHEST", "ABDOMEN", "PELVIS")

#: DICOM BodyPartExamined terms (upper case, non-letters removed) → predicted tag parts.
DICOM_BODY_PART_REGIONS = MappingProxyType(
    {
        **dict.fromkeys(
            ("HEAD", "BRAIN", "SKULL", "IAC", "ORBIT", "SINUS", "FACE", "JAW"), ("HEAD",)
        ),
        **dict.fromkeys(("NECK", "CSPINE", "LARYNX", "THYROID"), ("NECK",)),
        **dict.fromkeys(("HEADNECK", "HNECK", "HN", "HEADANDNECK"), ("HEAD", "NECK")),
        **dict.fromkeys(
            ("CHEST", "LUNG", "THORAX", "BREAST", "HEART", "TSPINE", "ESOPHAGUS", "MEDIASTINUM"),
            ("CHEST",),
        ),
        **dict.fromkeys(
            (
                "ABDOMEN",
                "LIVER",
                "KIDNEY",
                "PANCREAS",
                "STOMACH",
                "LSPINE",
                "ADRENAL",
                "GALLBLADDER",
                "SPLEEN",
                "ABD",
            ),
            ("ABDOMEN",),
        ),
        **dict.fromkeys(
            (
                "PELVIS",
                "PROSTATE",
                "BLADDER",
                "OVARY",
                "UTERUS",
                "CERVIX",
                "RECTUM",
                "HIP",
                "COLON",
                "SSPINE",
                "SACRUM",
            ),
            ("PELVIS",),
        ),
        **dict.fromkeys(("CHESTABDOMEN", "THORAXABDOMEN", "CHESTABD"), ("CHEST", "ABDOMEN")),
        **dict.fromkeys(("ABDOMENPELVIS", "ABDPELVIS", "ABDOMENPELVIS"), ("ABDOMEN", "PELVIS")),
        **dict.fromkeys(
            ("CHESTABDPELVIS", "CHESTABDOMENPELVIS", "CAP", "TORSO", "TRUNK"),
            ("CHEST", "ABDOMEN", "PELVIS"),
        ),
        **dict.fromkeys(("WHOLEBODY", "WBODY", "BODY", "WB"), _ALL),
        **dict.fromkeys(("SPINE", "ENTIRESPINE"), ("NECK", "CHEST", "ABDOMEN", "PELVIS")),
    }
)


def dicom_tag_parts(value: str | None) -> tuple[str, ...] | None:
    """Tag parts of a DICOM BodyPartExamined value; ``()`` when missing, None when unknown.

    >>> dicom_tag_parts("Chest/Abd/Pelvis")
    ('CHEST', 'ABDOMEN', 'PELVIS')
    """
    if value is None:
        return ()
    key = re.sub(r"[^A-Z]", "", str(value).upper())
    key = key.replace("ABDO", "ABD").replace("ABDMEN", "ABDOMEN")
    if not key:
        return ()
    if key in DICOM_BODY_PART_REGIONS:
        return tuple(DICOM_BODY_PART_REGIONS[key])
    full = key.replace("ABD", "ABDOMEN").replace("ABDOMENOMEN", "ABDOMEN")
    return tuple(DICOM_BODY_PART_REGIONS[full]) if full in DICOM_BODY_PART_REGIONS else None


def compare_tags(dicom_value: str | None, predicted_tag: str | None) -> TagAgreement:
    """Agreement of a DICOM BodyPartExamined value with a predicted tag.

    Returns
    -------
    str
        ``"missing"`` (DICOM empty), ``"unmapped"`` (term not in
        :data:`DICOM_BODY_PART_REGIONS`), ``"no prediction"`` (predicted tag empty or
        ``"NONE"``), ``"agree"`` (they share a part) or ``"wrong"``.
    """
    parts = dicom_tag_parts(dicom_value)
    if parts == ():
        return "missing"
    if parts is None:
        return "unmapped"
    predicted = {p for p in (predicted_tag or "").upper().split("-") if p in _ALL}
    if not predicted:
        return "no prediction"
    return "agree" if predicted & set(parts) else "wrong"
