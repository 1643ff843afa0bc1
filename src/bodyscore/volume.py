"""The :class:`Volume`: a CT image in one canonical layout, plus where it came from.

Conventions (``DESIGN.md``):

* ``array`` has axis order **(z, y, x)**: axis 0 is the slice axis.
* After :meth:`Volume.canonical` (all readers return canonical volumes) slice index 0 is the most
  **inferior** slice (feet) and the index grows towards the head; in-plane axes follow RAS+
  (x: right→left index grows towards patient Left is *not* assumed; the affine says it).
* ``affine`` is the NIfTI-style 4×4 matrix mapping voxel indices **(i, j, k) = (x, y, z)**, i.e.
  ``array[k, j, i]``, to RAS+ world coordinates in mm. ``nibabel.Nifti1Image(array.T, affine)``
  therefore writes the volume back as NIfTI.
* ``z_positions_mm`` is the position of each slice along the slice normal (mm, increasing), which
  carries non-uniform slice spacing (missing slices, variable steps) that a single spacing cannot.
* ``source_slice_index[k]`` is the index, in the input's own slice order (the order of the file
  on disk, or the DICOM instances sorted by position as stored), of canonical slice ``k``; every
  per-slice output is reported in the input's order through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from bodyscore.errors import InputError

__all__ = ["Volume", "VolumeGeometry"]

_UNIFORM_RTOL = 0.01  # relative deviation of slice steps tolerated as "uniform"


def _frozen_mapping(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(meta or {}))


def _freeze_geometry(owner: Volume | VolumeGeometry, n: int) -> None:
    """Validate ``owner``'s geometry fields for ``n`` slices and store them normalised
    (spacing floats, affine float64, read-only z positions and slice order, frozen meta)."""
    source = owner.source
    spacing = _checked_spacing(owner.spacing_mm, source)
    affine = np.asarray(owner.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{source}: affine must be a finite 4x4 matrix")
    z = (
        np.arange(n, dtype=np.float64) * spacing[0]
        if owner.z_positions_mm is None
        else np.asarray(owner.z_positions_mm, dtype=np.float64)
    )
    if z.shape != (n,) or not np.all(np.isfinite(z)) or (n > 1 and np.any(np.diff(z) <= 0)):
        raise InputError(
            f"{source}: slice positions must be {n} finite, strictly increasing values"
        )
    order = (
        np.arange(n, dtype=np.int64)
        if owner.source_slice_index is None
        else np.asarray(owner.source_slice_index, dtype=np.int64)
    )
    if order.shape != (n,) or sorted(order.tolist()) != list(range(n)):
        raise InputError(f"{source}: source_slice_index must be a permutation of 0..{n - 1}")
    z.flags.writeable = False
    order.flags.writeable = False
    for name, value in (("spacing_mm", spacing), ("affine", affine), ("z_positions_mm", z),
                        ("source_slice_index", order), ("meta", _frozen_mapping(owner.meta)),
                        ("warnings", tuple(owner.warnings))):
        object.__setattr__(owner, name, value)


def _checked_spacing(spacing_mm: Any, source: str) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(
            f"{source}: voxel spacing {spacing} mm is not three positive finite "
            "numbers; fix the header"
        )
    return (spacing[0], spacing[1], spacing[2])


class _SliceGeometry:
    """Properties shared by :class:`Volume` and :class:`VolumeGeometry` (from ``spacing_mm``,
    ``z_positions_mm`` and ``source_slice_index``)."""

    spacing_mm: tuple[float, float, float]
    z_positions_mm: np.ndarray | None
    source_slice_index: np.ndarray | None

    @property
    def n_slices(self) -> int:
        """Number of axial slices."""
        return int(self.z_mm.shape[0])

    @property
    def z_mm(self) -> np.ndarray:
        """Slice positions along the slice normal in mm, shape (z,), increasing."""
        assert self.z_positions_mm is not None
        return self.z_positions_mm

    @property
    def slice_order(self) -> np.ndarray:
        """Index in the input's own slice order of each canonical slice, shape (z,)."""
        assert self.source_slice_index is not None
        return self.source_slice_index

    @property
    def slice_steps_mm(self) -> np.ndarray:
        """Distances between consecutive slices in mm, shape (z - 1,)."""
        return np.diff(self.z_mm)

    @property
    def has_uniform_spacing(self) -> bool:
        """True when every slice step is within 1 % of the nominal z-spacing."""
        steps = self.slice_steps_mm
        if steps.size == 0:
            return True
        return bool(
            np.all(np.abs(steps - self.spacing_mm[0]) <= _UNIFORM_RTOL * self.spacing_mm[0])
        )

    @property
    def z_extent_mm(self) -> float:
        """Covered length along z in mm: n_slices × nominal spacing (bpreg's z-range)."""
        return float(self.n_slices * self.spacing_mm[0])


@dataclass(frozen=True, eq=False)
class Volume(_SliceGeometry):
    """A CT volume in Hounsfield units with its geometry.

    Parameters
    ----------
    array : numpy.ndarray, shape (z, y, x)
        Voxel values in HU (int16 or float32).
    spacing_mm : tuple of float
        Voxel size (z, y, x) in mm; z is the *nominal* slice step (median of the steps).
    affine : numpy.ndarray, shape (4, 4)
        Voxel (i, j, k) = (x, y, z) index → RAS+ world mm.
    source : str
        What was read (a path, a DICOM folder + SeriesInstanceUID, a URL); used in messages.
    z_positions_mm : numpy.ndarray, shape (z,), optional
        Slice positions along the slice normal in mm, strictly increasing. Defaults to
        ``arange(z) * spacing_mm[0]``.
    source_slice_index : numpy.ndarray, shape (z,), optional
        Index of each canonical slice in the input's own slice order. Defaults to ``arange(z)``.
    meta : mapping, optional
        Free-form header information (``modality``, ``series_instance_uid``,
        ``body_part_examined``, ``manufacturer``, ``gantry_tilt_deg``, ``format``, ...).
    warnings : tuple of str
        Problems found while reading that did not prevent it (gantry tilt, gaps, ...).
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    source: str = "<array>"
    z_positions_mm: np.ndarray | None = None
    source_slice_index: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise InputError(
                f"{self.source}: expected a 3-D image (z, y, x), got {array.ndim}-D "
                f"shape {array.shape}"
            )
        if array.shape[0] < 1 or array.shape[1] < 1 or array.shape[2] < 1:
            raise InputError(f"{self.source}: image has an empty axis, shape {array.shape}")
        _freeze_geometry(self, array.shape[0])
        array.flags.writeable = False
        object.__setattr__(self, "array", array)

    # -- geometry -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x)."""
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def is_superior_up(self) -> bool:
        """True when slice index grows towards the head (world +z, RAS 'S')."""
        return bool(self.affine[2, 2] >= 0)

    def canonical(self) -> Volume:
        """Return the volume with slice index growing from feet to head.

        Flips the slice axis when the affine's k column points inferior, updating the
        affine, slice positions and :attr:`slice_order` so that outputs still refer to the
        input's slice indices. In-plane axes are left as they are.
        """
        if self.is_superior_up():
            return self
        flipped = self.reversed_slices(with_affine=True)
        return dataclasses.replace(flipped, source_slice_index=self.slice_order[::-1].copy())

    def reversed_slices(self, *, with_affine: bool) -> Volume:
        """Return a copy whose slices are stored in reverse order.

        Parameters
        ----------
        with_affine : bool
            True: the affine and the slice positions follow, so the copy describes the same
            anatomy stored the other way round (a "consistently flipped" volume: scores per
            anatomical position must not change). False: the header keeps the old geometry and
            now lies about the slice order (a "reversed" volume, which the sanity check of
            thesis sec. 4.3.3 must flag).

        Notes
        -----
        The copy is a new input: its :attr:`source_slice_index` is reset (slice i is its own
        slice i); non-uniform slice positions are kept (mirrored).
        """
        array = np.ascontiguousarray(self.array[::-1])
        if not with_affine:
            return dataclasses.replace(self, array=array, source_slice_index=None)
        flip = np.eye(4)
        flip[2, 2] = -1.0
        flip[2, 3] = self.n_slices - 1
        z = self.z_mm
        return dataclasses.replace(self, array=array, affine=self.affine @ flip,
                                   z_positions_mm=(z[-1] - z[::-1]) + z[0],
                                   source_slice_index=None)

    def with_z_spacing_scaled(self, factor: float) -> Volume:
        """Return a copy whose header states a slice spacing ``factor`` times the true one.

        The voxels are unchanged; the z spacing, the slice positions and the affine's slice
        column are scaled. ``factor = 1 + γ`` replays the thesis's z-spacing experiment
        (sec. 5.2.3, fig. 5.11): a header off by γ should fail the z-spacing check.

        Raises
        ------
        InputError
            When ``factor`` is not a positive finite number.
        """
        if not (np.isfinite(factor) and factor > 0):
            raise InputError(f"{self.source}: z-spacing factor must be > 0, got {factor}")
        affine = self.affine.copy()
        affine[:3, 2] *= factor
        spacing = (self.spacing_mm[0] * factor, self.spacing_mm[1], self.spacing_mm[2])
        z = self.z_mm
        return dataclasses.replace(self, spacing_mm=spacing, affine=affine,
                                   z_positions_mm=z[0] + (z - z[0]) * factor)

    def with_warning(self, message: str) -> Volume:
        """Return a copy with one more reader warning."""
        return dataclasses.replace(self, warnings=(*self.warnings, message))

    def __repr__(self) -> str:
        return (
            f"Volume(source={self.source!r}, shape(z,y,x)={self.shape}, "
            f"spacing_mm={tuple(round(s, 4) for s in self.spacing_mm)}, dtype={self.array.dtype})"
        )


@dataclass(frozen=True, eq=False)
class VolumeGeometry(_SliceGeometry):
    """Everything about a canonical :class:`Volume` except its voxels.

    What a streaming reader knows from the header before (or without) holding the voxels:
    enough to post-process and report a volume's slice scores
    (:func:`bodyscore.assemble.assemble_result`). Fields and conventions as :class:`Volume`.

    Parameters
    ----------
    shape : tuple of int
        (z, y, x) voxel counts of the canonical array.
    spacing_mm, affine, source, z_positions_mm, source_slice_index, meta, warnings
        As :class:`Volume`.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    source: str = "<array>"
    z_positions_mm: np.ndarray | None = None
    source_slice_index: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"{self.source}: image has an empty axis, shape {shape}")
        _freeze_geometry(self, shape[0])
        object.__setattr__(self, "shape", shape)

    @classmethod
    def of(cls, volume: Volume) -> VolumeGeometry:
        """The geometry of a volume."""
        return cls(shape=volume.shape, spacing_mm=volume.spacing_mm, affine=volume.affine,
                   source=volume.source, z_positions_mm=volume.z_mm,
                   source_slice_index=volume.slice_order, meta=volume.meta,
                   warnings=volume.warnings)
