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


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CT, reason="../shared/data is not available")
@pytest.mark.parametrize("path", [p for p in REAL_CT if p.name not in NOT_CT],
                         ids=lambda p: p.name.removesuffix(".nii.gz"))
def test_real_ct_scores_increase_and_reversed_copy_is_flagged(
        path: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    volume = read_volume(path)
    if volume.z_extent_mm < MIN_EXTENT_MM:
        pytest.skip(f"{volume.z_extent_mm:.0f} mm < {MIN_EXTENT_MM:.0f} mm")
    result = bodyscore.predict(volume, default_model)
    assert result.observed_slope is not None
    assert result.observed_slope > 0, f"slope {result.observed_slope:.4f} score/mm"
    assert result.reverse_z_ordering is False
    reversed_result = bodyscore.predict(volume.reversed_slices(with_affine=False), default_model)
    assert reversed_result.reverse_z_ordering is True
