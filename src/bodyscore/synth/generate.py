"""Public API: synthetic CT volumes with exactly known landmarks (issue 4 item 6).

A seed gives one patient (:func:`~bodyscore.synth.anatomy.sample_body_plan`), one acquisition
(spacing, coverage, field of view, table, noise) and one rendering
(:func:`~bodyscore.synth.phantom.render`). World frame: RAS+ mm with ``pelvis_start`` at z = 0.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from bodyscore.errors import InputError
from bodyscore.synth.anatomy import LANDMARK_NAMES, BodyPlan, sample_body_plan
from bodyscore.synth.phantom import Grid, render
from bodyscore.volume import Volume

__all__ = [
    "SYNTHETIC_PREFIX",
    "SynthConfig",
    "SyntheticCT",
    "generate_dataset",
    "generate_volume",
    "regions_for",
]

logger = logging.getLogger(__name__)

REGION_LABELS = ("legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head")

#: Volume ids (and file names) of the datasets :func:`generate_dataset` writes start with this.
SYNTHETIC_PREFIX = "synth_"


@dataclass(frozen=True)
class SynthConfig:
    """Ranges the acquisition of a synthetic volume is drawn from (independent of the seed).

    Attributes
    ----------
    in_plane_size : int
        Rows = columns of the output (default 512).
    in_plane_spacing_mm : (float, float)
        Uniform range of the pixel size for ``in_plane_size`` pixels. A different
        ``shape_xy`` keeps the field of view (spacing scaled by in_plane_size / n).
    slice_spacing_mm : (float, float)
        Uniform range (log-uniform draw) of the slice step.
    max_slices : int
        Upper bound on the number of slices; the step is enlarged to respect it (memory bound).
    partial_probability : float
        Probability of a random partial z-range instead of thighs → vertex.
    partial_length_mm : (float, float)
        Length range of a partial range (≥ 50 mm).
    noise_sd_hu : (float, float)
        Range of the Gaussian noise SD in HU.
    contrast_probability, arms_up_probability, table_probability : float
        Probabilities of IV contrast, raised arms and a visible CT table.
    fov_cut_probability : float
        Probability that the field of view is left as drawn even when it cuts the body
        (otherwise the spacing is enlarged, within range, to fit the body).
    height_range_cm : (float, float)
        Body height range.
    """

    in_plane_size: int = 512
    in_plane_spacing_mm: tuple[float, float] = (0.5, 1.0)
    slice_spacing_mm: tuple[float, float] = (0.6, 5.0)
    max_slices: int = 600
    partial_probability: float = 0.6
    partial_length_mm: tuple[float, float] = (50.0, 700.0)
    noise_sd_hu: tuple[float, float] = (5.0, 40.0)
    contrast_probability: float = 0.5
    arms_up_probability: float = 0.3
    table_probability: float = 0.7
    fov_cut_probability: float = 0.2
    height_range_cm: tuple[float, float] = (150.0, 195.0)

    def __post_init__(self) -> None:
        ranges = {
            "in_plane_spacing_mm": self.in_plane_spacing_mm,
            "slice_spacing_mm": self.slice_spacing_mm,
            "partial_length_mm": self.partial_length_mm,
            "noise_sd_hu": self.noise_sd_hu,
            "height_range_cm": self.height_range_cm,
        }
        for name, (lo, hi) in ranges.items():
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise InputError(f"SynthConfig: {name}={lo, hi} is not a range lo <= hi; fix it")
        if self.in_plane_spacing_mm[0] <= 0 or self.slice_spacing_mm[0] <= 0:
            raise InputError("SynthConfig: spacings must be positive; fix the ranges")
        if self.partial_length_mm[0] < 50:
            raise InputError("SynthConfig: partial_length_mm must start at >= 50 mm; raise it")
        if self.in_plane_size < 8 or self.max_slices < 2:
            raise InputError("SynthConfig: in_plane_size >= 8 and max_slices >= 2 required")


@dataclass(frozen=True, eq=False)
class SyntheticCT:
    """One synthetic volume with its ground truth.

    Attributes
    ----------
    volume : Volume
        Canonical volume: int16 HU (z, y, x), slice 0 most inferior, RAS+ affine.
    landmarks_mm : mapping str -> float
        World z (mm) of all 35 landmarks, inside the volume or not.
    landmarks_k : mapping str -> float or None
        Fractional slice index ``(z - z0) / dz``; None outside ``[0, n - 1]``.
    regions : tuple of (int, int, str)
        ``(start_k, stop_k, label)``, half-open slice ranges (``stop_k`` excluded), in order.
    plan : BodyPlan
        The sampled patient (habitus, arms, contrast, ...).
    """

    volume: Volume
    landmarks_mm: Mapping[str, float]
    landmarks_k: Mapping[str, float | None]
    regions: tuple[tuple[int, int, str], ...]
    plan: BodyPlan


def regions_for(
    z_mm: np.ndarray, landmarks_mm: Mapping[str, float]
) -> tuple[tuple[int, int, str], ...]:
    """Label slices with the ``landmarks.json`` ``_conventions`` region rules.

    legs: z < pelvis_start; pelvis: ≤ pelvis_end; abdomen: < lung_start; chest: ≤ lung_end;
    shoulder-neck: < C1; head: ≥ C1.

    Parameters
    ----------
    z_mm : numpy.ndarray, shape (z,)
        Slice positions (increasing).
    landmarks_mm : mapping
        Landmark z's (mm).

    Returns
    -------
    tuple of (start_k, stop_k, label)
        Half-open runs of equal labels.
    """
    lm = landmarks_mm
    z = np.asarray(z_mm, dtype=np.float64)
    label = np.full(z.shape, 5, dtype=np.int64)
    label[z < lm["C1"]] = 4
    label[z <= lm["lung_end"]] = 3
    label[z < lm["lung_start"]] = 2
    label[z <= lm["pelvis_end"]] = 1
    label[z < lm["pelvis_start"]] = 0
    runs: list[tuple[int, int, str]] = []
    start = 0
    for k in range(1, z.size + 1):
        if k == z.size or label[k] != label[start]:
            runs.append((start, k, REGION_LABELS[int(label[start])]))
            start = k
    return tuple(runs)


def _z_range(rng: np.random.Generator, plan: BodyPlan, config: SynthConfig) -> tuple[float, float]:
    lo_full = plan.thigh_start_mm + rng.uniform(0.0, 80.0) * plan.scale
    hi_full = plan.vertex_mm + rng.uniform(0.0, 20.0)
    if rng.random() >= config.partial_probability:
        return lo_full, hi_full
    full = hi_full - lo_full
    length = min(rng.uniform(*config.partial_length_mm), full)
    start = rng.uniform(lo_full, hi_full - length)
    return start, start + length


def generate_volume(
    seed: int,
    config: SynthConfig = SynthConfig(),
    *,
    shape_xy: tuple[int, int] | None = None,
    z_range_mm: tuple[float, float] | None = None,
) -> SyntheticCT:
    """Generate one synthetic CT volume, thighs → vertex or a part of it.

    Parameters
    ----------
    seed : int
        Everything (patient, acquisition, noise) follows from it.
    config : SynthConfig
        Acquisition ranges.
    shape_xy : (int, int), optional
        (rows y, columns x) of the output; default ``(config.in_plane_size,) * 2``. The field
        of view does not depend on it (spacing scales as ``in_plane_size / n``).
    z_range_mm : (float, float), optional
        World z range to cover (mm, frame with pelvis_start = 0; thighs ≈ −220, vertex ≈ +905
        for a 172 cm body); default drawn from ``config``.

    Returns
    -------
    SyntheticCT
    """
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    plan = sample_body_plan(
        rng,
        height_range_cm=config.height_range_cm,
        arms_up_probability=config.arms_up_probability,
        contrast_probability=config.contrast_probability,
    )
    ny, nx = shape_xy if shape_xy is not None else (config.in_plane_size, config.in_plane_size)
    if ny < 2 or nx < 2:
        raise InputError(f"generate_volume: shape_xy={shape_xy} too small; use >= 2 pixels")
    # acquisition
    lo, hi = _z_range(rng, plan, config)
    if z_range_mm is not None:
        lo, hi = float(z_range_mm[0]), float(z_range_mm[1])
        if not hi > lo:
            raise InputError(f"generate_volume: z_range_mm={z_range_mm} must be (lo, hi), lo < hi")
    s_lo, s_hi = config.slice_spacing_mm
    dz = float(np.exp(rng.uniform(np.log(s_lo), np.log(s_hi))))
    dz = max(dz, (hi - lo) / (config.max_slices - 1))
    n_z = max(int(np.floor((hi - lo) / dz)) + 1, 1)
    spacing_scale = config.in_plane_size / float(max(ny, nx))
    sp_lo, sp_hi = (v * spacing_scale for v in config.in_plane_spacing_mm)
    d_xy = float(rng.uniform(sp_lo, sp_hi))
    cut = rng.random() < config.fov_cut_probability
    if not cut:
        need = 2.0 * (plan.scale * 215.0 * plan.girth + plan.fat_mm) * 1.05
        d_xy = float(np.clip(max(d_xy, need / max(nx, ny)), sp_lo, sp_hi))
    table = bool(rng.random() < config.table_probability)
    noise = float(rng.uniform(*config.noise_sd_hu))
    x0 = -(nx - 1) / 2 * d_xy + rng.normal(0.0, 8.0)
    y_centre = -35.0 * plan.scale + rng.normal(0.0, 10.0)
    y0 = y_centre - (ny - 1) / 2 * d_xy
    z0 = lo
    grid = Grid(
        z_mm=z0 + dz * np.arange(n_z),
        y_mm=y0 + d_xy * np.arange(ny),
        x_mm=x0 + d_xy * np.arange(nx),
    )
    array = render(plan, grid, rng, table=table, noise_sd_hu=noise)
    affine = np.diag([d_xy, d_xy, dz, 1.0])
    affine[:3, 3] = (x0, y0, z0)
    volume = Volume(
        array=array,
        spacing_mm=(dz, d_xy, d_xy),
        affine=affine,
        source=f"<synthetic seed={seed}>",
        z_positions_mm=grid.z_mm,
        meta={
            "modality": "CT",
            "format": "synthetic",
            "seed": int(seed),
            "height_cm": plan.height_cm,
            "arms_up": plan.arms_up,
            "contrast": plan.contrast,
            "table": table,
            "noise_sd_hu": noise,
            "fov_cut": cut,
        },
    )
    k_of = {name: (float(z) - z0) / dz for name, z in plan.landmarks_mm.items()}
    landmarks_k = {name: (k if 0.0 <= k <= n_z - 1 else None) for name, k in k_of.items()}
    logger.debug(
        "synthetic volume seed=%d shape=%s spacing=%s", seed, array.shape, volume.spacing_mm
    )
    return SyntheticCT(
        volume=volume,
        landmarks_mm=plan.landmarks_mm,
        landmarks_k=MappingProxyType(landmarks_k),
        regions=regions_for(volume.z_mm, plan.landmarks_mm),
        plan=plan,
    )


def dataset_entry(ct: SyntheticCT, file_name: str) -> dict[str, object]:
    """The ``landmarks.json`` entry of one volume (format of /work/shared/data/ct)."""
    v = ct.volume
    nz, ny, nx = v.shape
    z = v.z_mm
    landmarks: dict[str, object] = {}
    for name in LANDMARK_NAMES:
        k = ct.landmarks_k[name]
        landmarks[name] = (
            None
            if k is None
            else {
                "k": round(k, 3),
                "z_mm": round(float(ct.landmarks_mm[name]), 3),
                "confidence": "exact",
            }
        )
    return {
        "file": file_name,
        "shape": [nx, ny, nz],
        "spacing_mm": [v.spacing_mm[2], v.spacing_mm[1], v.spacing_mm[0]],
        "z_first_slice_mm": round(float(z[0]), 3),
        "z_last_slice_mm": round(float(z[-1]), 3),
        "body_regions": "synthetic phantom",
        "regions": [{"k": [a, b - 1], "label": lab} for a, b, lab in ct.regions],
        "landmarks": landmarks,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    from bodyscore.export.atomic import atomic_write_bytes

    atomic_write_bytes(path, data)


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    seed: int,
    config: SynthConfig = SynthConfig(),
) -> Path:
    """Write ``n`` synthetic volumes as ``synth_XXXXX.nii.gz`` plus one ``landmarks.json``.

    Volume ``i`` uses seed ``seed + i``. The JSON has the format of the real development set
    (``_conventions`` + one entry per volume; landmark ``confidence`` is ``"exact"``).

    Returns
    -------
    pathlib.Path
        The ``landmarks.json`` path.
    """
    import nibabel as nib

    if n < 0:
        raise InputError(f"generate_dataset: n={n} must be >= 0")
    out = Path(out_dir)
    doc: dict[str, object] = {
        "_conventions": {
            "slice_index": "k = 0-based index along the 3rd array axis of the NIfTI (RAS+, "
            "k=0 most caudal slice).",
            "z_mm": "world z (RAS) of the slice centre; synthetic frame with pelvis_start = 0.",
            "regions": "inclusive k ranges; same rules as the real development set.",
            "landmarks": "exact positions from the synthetic body plan; null = outside the volume.",
            "confidence": "exact = known by construction.",
        }
    }
    for i in range(n):
        ct = generate_volume(seed + i, config)
        name = f"{SYNTHETIC_PREFIX}{seed + i:05d}.nii.gz"
        image = nib.Nifti1Image(np.asarray(ct.volume.array).T, ct.volume.affine)
        image.header.set_xyzt_units("mm")
        _write_atomic(out / name, gzip.compress(image.to_bytes(), compresslevel=1))
        doc[name.removesuffix(".nii.gz")] = dataset_entry(ct, name)
    target = out / "landmarks.json"
    _write_atomic(target, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    return target
