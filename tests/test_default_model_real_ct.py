"""The bundled default model on every real CT of the shared data (issue 17 acceptance): each
volume of 10 cm or more scores increasing from feet to head and its reversed copy is flagged.

The volumes are the 20 annotated ones (``../shared/data/ct``) and the 271 unlabelled ones
(``../shared/data/ct-unlabelled``, OpenKBP included); the model trained on all of them, so this
is the floor a shipped model must meet, not an estimate on unseen CT (that is the
cross-validation, ``benchmarks/accuracy/cv``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bodyscore
from bodyscore.io import read_volume

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_CT = sorted([
    *SHARED_DATA.glob("ct/*.nii.gz"),
    *SHARED_DATA.glob("ct-unlabelled/*.nii.gz"),
    *SHARED_DATA.glob("ct-unlabelled/openkbp/*.nii.gz"),
])
#: Files in ../shared/data/ct that are not CT volumes (a label map).
NOT_CT = {"ts_petct_slab_seg_fullres.nii.gz"}
#: The acceptance threshold: shorter volumes need not show a clear slope (thesis sec. 4.3.3).
MIN_EXTENT_MM = 100.0


#: Volumes the bundled default model (2026.12.1) fails, measured 2026-12-04; strict xfails,
#: so a model that fixes one turns the test red until the entry is removed. Issue 17 asks for
#: none: this list is the gap, not an allowance.
KNOWN_FAILURES: dict[str, str] = {
    "openkbp_validation221_hn.nii.gz": "slope -0.007 score/mm: 40 neck slices of 3.3 mm, "
                                       "scores 81-91 up and down (tag NONE)",
}


def _cases() -> list[object]:
    return [pytest.param(p, id=p.name.removesuffix(".nii.gz"), marks=(
        [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[p.name])]
        if p.name in KNOWN_FAILURES else []))
        for p in REAL_CT if p.name not in NOT_CT]


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CT, reason="../shared/data is not available")
@pytest.mark.parametrize("path", _cases())
def test_real_ct_scores_increase_and_reversed_copy_is_flagged(
        path: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    volume = read_volume(path)
    if volume.z_extent_mm < MIN_EXTENT_MM:
        pytest.skip(f"{volume.z_extent_mm:.1f} mm < {MIN_EXTENT_MM:.0f} mm")
    result = bodyscore.predict(volume, default_model)
    assert result.observed_slope is not None
    assert result.observed_slope > 0, f"slope {result.observed_slope:.4f} score/mm"
    assert result.reverse_z_ordering is False
    reversed_result = bodyscore.predict(volume.reversed_slices(with_affine=False), default_model)
    assert reversed_result.reverse_z_ordering is True


def test_quick_start_curve_does_not_dip_over_the_femoral_heads(
        ct_dir: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    """The README's example (issue 17, item 5): 2026.11.4's cleaned curve fell from 23 to 13
    over the femoral heads; 2026.12.1's largest dip anywhere is 1.5 score units (measured
    2026-12-04). 2 units is the line: more is a visible dip in the README's figure."""
    import numpy as np

    result = bodyscore.predict(ct_dir / "ts_abdomen_pelvis.nii.gz", default_model)
    cleaned = np.asarray(result.cleaned, dtype=float)
    cleaned = cleaned[np.isfinite(cleaned)]  # tails removed by the post-processing are NaN
    largest_dip = float(np.max(np.maximum.accumulate(cleaned) - cleaned))
    assert largest_dip <= 2.0, f"the curve dips by {largest_dip:.1f} score units"
