"""A small synthetic CT (pelvis → chest) and a label map whose value on each slice is that
slice's index + 1, for the known-region cropping tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def write_synthetic_ct(path: Path, *, seed: int = 1, step: int = 3) -> Path:
    """NIfTI of a synthetic CT (64 × 64 in-plane, every ``step``-th slice, ~50–70 slices)."""
    from bodyscore.synth.generate import generate_volume

    volume = generate_volume(seed, shape_xy=(64, 64), z_range_mm=(-60.0, 300.0)).volume
    affine = volume.affine.copy()
    affine[:3, 2] *= step
    data = np.asarray(volume.array)[::step].T.copy()  # (x, y, z) = NIfTI (i, j, k)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_slice_labels(path: Path, ct: Path) -> Path:
    """uint8 label map on ``ct``'s grid: a box on every slice k holding the value k + 1."""
    img = nib.load(str(ct))
    data = np.zeros(img.shape, dtype=np.uint8)
    for k in range(img.shape[2]):
        data[20:40, 20:40, k] = k + 1
    labels = nib.Nifti1Image(data, img.affine)
    labels.set_data_dtype(np.uint8)
    nib.save(labels, str(path))
    return path


def surviving_slices(path: Path) -> set[int]:
    """Slice indices (value - 1) whose label survives in a label map."""
    values = np.unique(np.asarray(nib.load(str(path)).dataobj))
    return {int(v) - 1 for v in values if v}


def middle_bounds(cleaned: np.ndarray) -> tuple[float, float]:
    """Score bounds covering the middle of a volume's cleaned scores (a strict subset)."""
    lo, hi = np.nanquantile(cleaned, [0.3, 0.7])
    return float(lo), float(hi)
