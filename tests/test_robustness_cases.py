"""Robustness cases from the real CT set, each checked on the bundled default model (issue 11,
item 4).

Cases (``../shared/data/ct/README.md`` and ``landmarks.json``):

* partial field of view: the tumour-centred hip/thigh crops ``sts00*_extremity_crop``;
* lower legs only: ``vhf_knee_leg`` (out of the 0-100 scope: every slice is "legs");
* 5 mm slices: every volume whose annotated slice spacing is >= 5 mm;
* coarse in-plane grids (4-5 mm pixels): the ``openkbp*`` head & neck volumes;
* cadaver heads: ``unc_cthead_cadaver_head``, ``vhm_head``, ``vhf_head``;
* feet-first DICOM (``dicom/lidc0314_chest_ffs_derived``) and the gantry-tilted GE head, both
  as dcm2niix's tilt-corrected NIfTI and as the original sheared DICOM stack with variable
  slice steps, read through :func:`bodyscore.io.read_volume`.

Per case the test asks what a user needs: scores increase from feet to head; the z-spacing
check accepts a correct header; the body part tag names the region the README describes; the
medium/high-confidence landmarks sit on the published score scale; the coarse regions per slice
are right; a reversed copy (array flipped, header kept) is flagged while a consistently flipped
copy is not and gets the same scores; DICOM and NIfTI of the same data agree; the JSON is strict.
Thresholds are the acceptance thresholds, not the current model's numbers: a failing case here
is a real failure of the model on that kind of input (the model is retrained to fix them).
Numbers come from :mod:`bodyscore.evaluate` (runner, metrics), never re-implemented here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bodyscore.evaluate import metrics as m
from bodyscore.evaluate.landmarks import VolumeAnnotation, read_landmarks, volume_id_from_path
from bodyscore.evaluate.runner import VolumeEvaluation, evaluate_model_on
from bodyscore.inference import predict
from bodyscore.io import read_volume
from bodyscore.result import BPREG_KEYS, ScoreResult
from bodyscore.usecases.bodypart import TAG_LANDMARKS
from bodyscore.volume import Volume
from helpers.scripts import load_script

#: Robustness case → inputs, as paths relative to ``shared/data/ct``.
CASES: dict[str, tuple[str, ...]] = {
    "partial_fov": (
        "sts001_extremity_crop.nii.gz",
        "sts002_extremity_crop.nii.gz",
        "sts003_extremity_crop.nii.gz",
    ),
    "legs_only": ("vhf_knee_leg.nii.gz",),
    "slices_5mm": (
        "crlm1004_abdomen.nii.gz",
        "pyradiomics_lung1_chest.nii.gz",
        "pyradiomics_lung2_chest.nii.gz",
    ),
    "coarse_grid": (
        "openkbp_test291_hn.nii.gz",
        "openkbp_test319_hn.nii.gz",
        "openkbp_train115_hn.nii.gz",
        "openkbp_train126_hn.nii.gz",
        "openkbp_train155_hn.nii.gz",
    ),
    "cadaver_head": (
        "unc_cthead_cadaver_head.nii.gz",
        "vhm_head.nii.gz",
        "vhf_head.nii.gz",
    ),
    "feet_first_dicom": ("dicom/lidc0314_chest_ffs_derived",),
    "tilted_head": ("ge_tilt_head.nii.gz", "dicom/ge_head_tilt18.5_varspacing"),
}

#: DICOM folder → the annotated NIfTI of the same acquisition (README).
DICOM_TWIN: dict[str, str] = {
    "dicom/lidc0314_chest_ffs_derived": "lidc0314_chest",
    "dicom/ge_head_tilt18.5_varspacing": "ge_tilt_head",
    "dicom/ts_petct_slab": "ts_petct_slab",
}

#: Landmark tolerance on the published 0-100 scale, in score units. A medium-confidence reading
#: may be off by up to ~1 vertebral body (landmarks.json conventions), i.e. 2.5-4.4 units on
#: the published table (Th: ~2.5-3.3, L: ~3.7-4.4 per level); the thesis reports a spread of
#: landmark scores between volumes of about 2-5 units (table 5.10). 8 units = one level of
#: annotation error plus that spread; beyond it a landmark is more than two vertebrae away.
LANDMARK_TOLERANCE = 8.0

#: Minimum per-slice accuracy of the annotated coarse regions. Annotated boundaries are
#: +-1-3 slices and the predicted regions overlap (table 4.6), so boundary slices rarely miss;
#: below 80 % a whole region is mislabelled, not just its edges.
REGION_ACCURACY_FLOOR = 0.8

#: The z-spacing of this file is not in its source (README: "assumed"), so the spacing check may
#: rightly reject it.
SPACING_ASSUMED = {"unc_cthead_cadaver_head.nii.gz"}

#: Regions of the 0-100 scale that a tag can name (thesis fig. 4.9); legs are not among them.
TRUNK_TAG_PARTS = frozenset(TAG_LANDMARKS)

CONFIDENT = frozenset({"medium", "high"})


#: Known failures of the bundled default model (2026.12.1), measured 2026-12-04 with this test
#: and ``benchmarks/accuracy/evaluate_model.py``: (check, input) → what was measured. They are
#: strict xfails, so a model that fixes one turns the test red until the entry is removed. The
#: five failures of 2026.11.4 (vhf_head C4, four region floors) pass with 2026.12.1; the
#: original gantry-tilted GE stack (28 sheared slices of 4.2 mm, 0.49 mm pixels) and the lower
#: legs are what it still gets wrong (its tilt-corrected NIfTI twin passes every check).
_GE_DICOM = "dicom/ge_head_tilt18.5_varspacing"
KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ("increasing", _GE_DICOM): "slope -0.32 score/mm: the scores reach 100 and fall again "
                               "over the vertex",
    ("z_spacing", _GE_DICOM): "slope ratio 2.89 (negative slope)",
    ("tag", _GE_DICOM): "HEAD-NECK-CHEST (its scores run downwards)",
    ("reversed", _GE_DICOM): "reversed copy not flagged (slope +0.42)",
    ("flipped", _GE_DICOM): "consistently flipped copy flagged (slope -0.32 as given)",
    ("regions", "sts002_extremity_crop.nii.gz"):
        "77 % of its 48 slices in the annotated region (floor 80 %)",
    ("regions", "vhf_knee_leg.nii.gz"):
        "55 % of its 350 slices in the annotated region (floor 80 %): lower-leg slices score "
        "just above 0",
}


def _params(inputs: list[tuple[str, str]], check: str = "") -> list[Any]:
    params = []
    for case, key in inputs:
        reason = KNOWN_FAILURES.get((check, key))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(key, marks=marks,
                                   id=f"{case}-{Path(key).name.removesuffix('.nii.gz')}"))
    return params


ALL_INPUTS = [(case, key) for case, keys in CASES.items() for key in keys]
NIFTI_INPUTS = [(c, k) for c, k in ALL_INPUTS if not k.startswith("dicom/")]
NON_LEG_INPUTS = [(c, k) for c, k in ALL_INPUTS if c != "legs_only"]
SPACING_KNOWN = [(c, k) for c, k in ALL_INPUTS if k not in SPACING_ASSUMED]


def _volume_id(key: str) -> str:
    return DICOM_TWIN.get(key) or volume_id_from_path(key)


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expected_tags() -> dict[str, set[str]]:
    """Acceptable tags per volume id: ``EXPECTED_TAGS`` of the accuracy benchmark script."""
    try:
        module = load_script("benchmarks/accuracy/evaluate_model.py", module_name="_evaluate_model")
    except FileNotFoundError:
        pytest.skip("benchmarks/accuracy/evaluate_model.py is not available")
    return dict(module.EXPECTED_TAGS)


@pytest.fixture(scope="module")
def ct_annotations(ct_dir: Path) -> dict[str, VolumeAnnotation]:
    return read_landmarks(ct_dir / "landmarks.json")


@pytest.fixture(scope="module")
def published_table(public_settings) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Landmark means of bpreg's public model: the published 0-100 score scale."""
    return {name: stats.mean for name, stats in public_settings.lookup_table.items()}


@pytest.fixture(scope="module")
def scored(ct_dir: Path, default_model) -> Callable[[str], tuple[Volume, ScoreResult]]:  # type: ignore[no-untyped-def]
    """``scored(key)`` → (volume, result) of an input under ``shared/data/ct``, computed once."""
    cache: dict[str, tuple[Volume, ScoreResult]] = {}

    def get(key: str) -> tuple[Volume, ScoreResult]:
        if key not in cache:
            volume = read_volume(ct_dir / key)
            cache[key] = (volume, predict(volume, default_model))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def evaluation(scored, ct_annotations, published_table, default_model  # type: ignore[no-untyped-def]
               ) -> Callable[[str], VolumeEvaluation]:
    """``evaluation(key)`` → metrics of one input against its medium/high-confidence landmarks
    and regions, on the published scale. DICOM inputs use the landmarks' world z (their slices
    differ from the annotated NIfTI's) and no regions."""
    cache: dict[str, VolumeEvaluation] = {}

    def get(key: str) -> VolumeEvaluation:
        if key not in cache:
            volume_id = _volume_id(key)
            annotation = ct_annotations[volume_id]
            landmarks = {n: p for n, p in annotation.landmarks.items()
                         if p.confidence in CONFIDENT}
            if key.startswith("dicom/"):
                landmarks = {n: dataclasses.replace(p, k=None) for n, p in landmarks.items()
                             if p.z_mm is not None}
                annotation = dataclasses.replace(annotation, regions=())
            annotation = dataclasses.replace(annotation, landmarks=landmarks)
            report = evaluate_model_on(default_model, {volume_id: annotation},
                                       results={volume_id: scored(key)[1]},
                                       reference=published_table, landmarks=None)
            cache[key] = report.volumes[0]
        return cache[key]

    return get


# -- the cases cover what they claim ---------------------------------------------------------
def test_case_lists_match_the_annotations(ct_annotations) -> None:  # type: ignore[no-untyped-def]
    """The 5 mm and coarse-grid cases are exactly the volumes with that geometry."""
    thick = {vid for vid, a in ct_annotations.items() if a.meta["spacing_mm"][2] >= 5.0}
    assert thick == {volume_id_from_path(k) for k in CASES["slices_5mm"]}
    for key in CASES["coarse_grid"]:
        assert min(ct_annotations[volume_id_from_path(key)].meta["spacing_mm"][:2]) >= 4.0, key
    legs = ct_annotations["vhf_knee_leg"]
    assert {r.label for r in legs.regions} == {"legs"}


# -- orientation and z-spacing -------------------------------------------------------------------
@pytest.mark.parametrize("key", _params(ALL_INPUTS, "increasing"))
def test_scores_increase_from_feet_to_head(key: str, scored) -> None:  # type: ignore[no-untyped-def]
    _, result = scored(key)
    assert result.observed_slope is not None
    assert result.observed_slope > 0, f"observed slope {result.observed_slope}"
    assert result.reverse_z_ordering is False


@pytest.mark.parametrize("key", _params(SPACING_KNOWN, "z_spacing"))
def test_z_spacing_check_accepts_the_true_spacing(key: str, scored) -> None:  # type: ignore[no-untyped-def]
    """The header spacing is right, so the sanity check (thesis sec. 4.3.3) must not flag it."""
    _, result = scored(key)
    assert result.valid_z_spacing is True, (
        f"slope ratio {result.slope_ratio}, expected z-spacing {result.expected_z_spacing} mm "
        f"vs {result.z_spacing} mm")


# -- body part tag -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", _params(NON_LEG_INPUTS, "tag"))
def test_body_part_tag_names_the_covered_region(key: str, scored, expected_tags) -> None:  # type: ignore[no-untyped-def]
    _, result = scored(key)
    assert result.body_part_examined_tag in expected_tags[_volume_id(key)]


@pytest.mark.xfail(strict=True, reason="2026.12.1 tags vhf_knee_leg PELVIS (median score "
                   "-5.8, but its top slices reach the pelvis range; measured 2026-12-04)")
def test_legs_only_volume_gets_no_trunk_tag(scored) -> None:  # type: ignore[no-untyped-def]
    """Lower legs lie below the 0-100 scale: no pelvis/abdomen/chest/neck/head in the tag
    (``"NONE"`` or a legs-only tag); bpreg's dictionary puts such slices under "legs"."""
    (key,) = CASES["legs_only"]
    _, result = scored(key)
    named = set(result.body_part_examined_tag.split("-")) & TRUNK_TAG_PARTS
    assert not named, f"tag {result.body_part_examined_tag!r} names {sorted(named)}"


# -- landmarks and regions -----------------------------------------------------------------------
#: Left out: volumes without a medium/high-confidence landmark, and the GE DICOM stack, whose
#: slice positions (along the table) are not the z of the annotated, resampled NIfTI.
NO_LANDMARKS = {"vhf_knee_leg.nii.gz", "sts002_extremity_crop.nii.gz",
                "dicom/ge_head_tilt18.5_varspacing"}
LANDMARK_INPUTS = [(c, k) for c, k in ALL_INPUTS if k not in NO_LANDMARKS]


@pytest.mark.parametrize("key", _params(LANDMARK_INPUTS, "landmarks"))
def test_confident_landmarks_lie_on_the_published_scale(  # type: ignore[no-untyped-def]
    key: str, evaluation, published_table
) -> None:
    evaluated = evaluation(key)
    assert evaluated.landmark_scores, "no medium/high-confidence landmark was scored"
    errors = m.landmark_abs_errors(evaluated.landmark_scores, published_table,
                                   d=m.normalization_constant(published_table))
    assert errors
    off = {name: round(e, 1) for name, e in errors.items() if not e <= LANDMARK_TOLERANCE}
    assert not off, f"|error| > {LANDMARK_TOLERANCE} score units: {off}"


@pytest.mark.parametrize("key", _params(NIFTI_INPUTS, "regions"))
def test_coarse_regions_per_slice(key: str, evaluation) -> None:  # type: ignore[no-untyped-def]
    evaluated = evaluation(key)
    assert evaluated.n_region_slices > 0
    assert evaluated.region_accuracy >= REGION_ACCURACY_FLOOR, (
        f"region accuracy {evaluated.region_accuracy:.3f} over {evaluated.n_region_slices} slices")


# -- reversal ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", _params(ALL_INPUTS, "reversed"))
def test_reversed_copy_is_flagged(key: str, scored, default_model) -> None:  # type: ignore[no-untyped-def]
    volume, _ = scored(key)
    reversed_result = predict(volume.reversed_slices(with_affine=False), default_model)
    assert reversed_result.reverse_z_ordering is True, (
        f"observed slope {reversed_result.observed_slope}")
    json.loads(reversed_result.to_json(), parse_constant=_reject_constant)


@pytest.mark.parametrize("key", _params(ALL_INPUTS, "flipped"))
def test_consistently_flipped_copy_is_not_flagged_and_scores_the_same(  # type: ignore[no-untyped-def]
    key: str, scored, default_model
) -> None:
    volume, result = scored(key)
    flipped = predict(volume.reversed_slices(with_affine=True), default_model)
    np.testing.assert_allclose(flipped.unprocessed[::-1], result.unprocessed, atol=1e-3)
    assert flipped.reverse_z_ordering is False, (
        f"flipped copy flagged; observed slope {flipped.observed_slope} (as given: "
        f"{result.observed_slope})")


# -- DICOM vs NIfTI ------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "atol"), [
    # voxel-identical data (README "Reading check"): only float32 round-off may differ
    pytest.param("dicom/lidc0314_chest_ffs_derived", 1e-3, id="feet_first-lidc0314"),
    # same slices, but the NIfTI is a 2x2 in-plane block mean of the 0.98 mm DICOM: the 3.5 mm
    # resampling (sec. 4.1.1) hides most of it; 1 score unit is a tenth of a vertebra
    pytest.param("dicom/ts_petct_slab", 1.0, id="block_mean-ts_petct_slab"),
])
def test_dicom_and_nifti_of_the_same_data_score_the_same(  # type: ignore[no-untyped-def]
    key: str, atol: float, scored
) -> None:
    """Slices matched by world z; the GE pair is not compared (the NIfTI is dcm2niix's
    tilt-corrected, resampled grid, a different image)."""
    _, dicom = scored(key)
    _, nifti = scored(f"{DICOM_TWIN[key]}.nii.gz")
    index = np.searchsorted(nifti.z, dicom.z)
    assert np.all(index < nifti.n_slices)
    np.testing.assert_allclose(nifti.z[index], dicom.z, atol=0.01)
    np.testing.assert_allclose(dicom.unprocessed, nifti.unprocessed[index], atol=atol)
    if atol < 0.01:
        assert dicom.body_part_examined_tag == nifti.body_part_examined_tag
        assert dicom.reverse_z_ordering is nifti.reverse_z_ordering


# -- output --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", _params(ALL_INPUTS))
def test_json_is_strict_and_complete(key: str, scored) -> None:  # type: ignore[no-untyped-def]
    volume, result = scored(key)
    data = json.loads(result.to_json(), parse_constant=_reject_constant)
    assert [k for k in BPREG_KEYS if k not in data] == []
    scores = data["cleaned slice scores"]
    assert len(scores) == volume.n_slices
    assert any(s is not None and math.isfinite(s) for s in scores)
    assert ScoreResult.from_json(result.to_json()) == result
