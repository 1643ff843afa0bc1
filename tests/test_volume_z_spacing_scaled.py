"""Tests of Volume.with_z_spacing_scaled (the z-spacing replay of thesis sec. 5.2.3)."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.volume import Volume


def make_volume(steps: list[float], *, z0: float = -40.0, dz: float = 2.5) -> Volume:
    n = len(steps) + 1
    array = np.arange(n * 6, dtype=np.int16).reshape(n, 2, 3)
    affine = np.array([[0.7, 0.0, 0.1, -10.0],
                       [0.0, 0.8, 0.2, 20.0],
                       [0.0, 0.0, dz, z0],
                       [0.0, 0.0, 0.0, 1.0]])
    z = z0 + np.concatenate([[0.0], np.cumsum(steps)])
    return Volume(array=array, spacing_mm=(dz, 0.8, 0.7), affine=affine, source="vol.nii.gz",
                  z_positions_mm=z, source_slice_index=np.arange(n)[::-1].copy(),
                  meta={"k": 1}, warnings=("w",))


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.floats(0.5, 6.0), min_size=0, max_size=8),
       factor=st.floats(0.05, 20.0), z0=st.floats(-500, 500))
def test_spacing_positions_and_affine_scaled_voxels_kept(steps: list[float], factor: float,
                                                         z0: float) -> None:
    volume = make_volume(steps, z0=z0)
    scaled = volume.with_z_spacing_scaled(factor)
    assert scaled.spacing_mm[0] == pytest.approx(volume.spacing_mm[0] * factor)
    assert scaled.spacing_mm[1:] == volume.spacing_mm[1:]
    # the first slice stays put, the distances from it scale
    assert scaled.z_mm[0] == pytest.approx(volume.z_mm[0])
    np.testing.assert_allclose(scaled.z_mm - scaled.z_mm[0],
                               (volume.z_mm - volume.z_mm[0]) * factor, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scaled.slice_steps_mm, volume.slice_steps_mm * factor,
                               rtol=1e-9)
    np.testing.assert_allclose(scaled.affine[:3, 2], volume.affine[:3, 2] * factor)
    np.testing.assert_array_equal(scaled.affine[:, [0, 1, 3]], volume.affine[:, [0, 1, 3]])
    np.testing.assert_array_equal(scaled.affine[3], volume.affine[3])
    np.testing.assert_array_equal(scaled.array, volume.array)
    np.testing.assert_array_equal(scaled.slice_order, volume.slice_order)
    assert (scaled.source, scaled.warnings, dict(scaled.meta)) == ("vol.nii.gz", ("w",),
                                                                   {"k": 1})
    assert scaled.z_extent_mm == pytest.approx(volume.z_extent_mm * factor)


def test_hand_worked_scaling_and_original_untouched() -> None:
    volume = make_volume([2.0, 3.0], z0=10.0, dz=2.0)
    before = (volume.affine.copy(), volume.z_mm.copy(), volume.spacing_mm)
    scaled = volume.with_z_spacing_scaled(1.5)
    np.testing.assert_allclose(scaled.z_mm, [10.0, 13.0, 17.5])
    assert scaled.spacing_mm == (3.0, 0.8, 0.7)
    np.testing.assert_allclose(scaled.affine[:3, 2], [0.15, 0.3, 3.0])
    np.testing.assert_array_equal(volume.affine, before[0])  # the original is not changed
    np.testing.assert_array_equal(volume.z_mm, before[1])
    assert volume.spacing_mm == before[2]
    same = volume.with_z_spacing_scaled(1.0)
    np.testing.assert_array_equal(same.z_mm, volume.z_mm)
    np.testing.assert_array_equal(same.affine, volume.affine)


def test_volume_read_from_a_file_scales(tmp_path: Path) -> None:
    from bodyscore.io import read_volume

    data = np.zeros((4, 5, 6), np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), path)
    volume = read_volume(path)
    shrunk = volume.with_z_spacing_scaled(0.6)
    assert shrunk.spacing_mm[0] == pytest.approx(1.8)
    np.testing.assert_allclose(np.diff(shrunk.z_mm), 1.8)
    assert shrunk.array.shape == volume.array.shape


@pytest.mark.parametrize("factor", [0.0, -0.5, -1.0, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_factor_is_an_input_error(factor: float) -> None:
    with pytest.raises(InputError, match=r"^vol\.nii\.gz: z-spacing factor must be > 0"):
        make_volume([1.0]).with_z_spacing_scaled(factor)
