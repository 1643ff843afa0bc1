"""Tests of Volume's slice-order helpers (canonical orientation, reversed copies)."""

from __future__ import annotations

import numpy as np

from bodyscore.volume import Volume


def _head_first_volume() -> Volume:
    # k grows towards the feet (affine z column negative), uneven slice steps
    array = np.arange(4, dtype=np.int16)[:, None, None] * np.ones((1, 2, 2), np.int16)
    affine = np.diag([1.0, 1.0, -2.0, 1.0])
    return Volume(array=array, spacing_mm=(2.0, 1.0, 1.0), affine=affine,
                  z_positions_mm=np.array([0.0, 2.0, 5.0, 6.0]))


def test_reversed_slices_with_affine_describes_the_same_anatomy():
    volume = _head_first_volume()
    flipped = volume.reversed_slices(with_affine=True)
    np.testing.assert_array_equal(flipped.array[:, 0, 0], [3, 2, 1, 0])
    # voxel k of the copy sits where voxel n-1-k of the original sat
    for k in range(4):
        np.testing.assert_allclose(flipped.affine @ [0, 0, k, 1], volume.affine @ [0, 0, 3 - k, 1])
    np.testing.assert_allclose(flipped.z_mm, [0.0, 1.0, 4.0, 6.0])  # mirrored steps 1, 3, 2
    assert flipped.is_superior_up() != volume.is_superior_up()


def test_reversed_slices_without_affine_keeps_the_header():
    volume = _head_first_volume()
    lying = volume.reversed_slices(with_affine=False)
    np.testing.assert_array_equal(lying.array[:, 0, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(lying.affine, volume.affine)
    np.testing.assert_array_equal(lying.z_mm, volume.z_mm)


def test_canonical_puts_the_feet_first_and_maps_back_to_the_input():
    volume = _head_first_volume()
    canonical = volume.canonical()
    assert canonical.is_superior_up()
    np.testing.assert_array_equal(canonical.array[:, 0, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(canonical.source_slice_index, [3, 2, 1, 0])
    assert canonical.canonical() is canonical
