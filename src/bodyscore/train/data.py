"""Training data: a cache of preprocessed slices, its manifest, and the sampling Dataset.

:func:`prepare_data` reads every CT volume once, preprocesses all slices exactly as inference
does (:func:`bodyscore.preprocess.preprocess_slices`, thesis sec. 4.1.1) and stores

* ``<volume_id>.npy`` — array (n, 128, 128) **float16** in [-1, 1] (canonical slice order,
  index 0 = most inferior). float16 halves the cache; its rounding error in [-1, 1] is
  ≤ 2⁻¹¹ ≈ 5·10⁻⁴ (≈ 0.6 HU), far below the augmentation noise (0.04);
* ``manifest.json`` — one entry per volume (:class:`VolumeEntry`): id, cache file, source,
  shape, spacing, z positions, licence, split, group and landmark positions as fractional
  canonical slice indices.

Splits are drawn per *group* (patient/body: ``vhf_head`` and ``vhf_knee_leg`` are one body), so
no group has volumes in both splits; they are reproducible from the seed. Files are written
atomically; a volume whose source file is unchanged (size, mtime) is not processed again.

:class:`VolumeSampleDataset` turns a manifest into training items: m equidistant slices
(:mod:`~bodyscore.train.sampling`), augmented (:mod:`~bodyscore.train.augment`), as a tensor
(m, 1, 128, 128) with Δh. Items are addressed by ``(volume position, sample seed)`` so they
are reproducible whatever process or worker draws them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.evaluate.landmarks import (
    VolumeAnnotation,
    read_landmark_files,
    volume_id_from_path,
)
from bodyscore.export.atomic import atomic_path, atomic_write_text
from bodyscore.synth.generate import SYNTHETIC_PREFIX
from bodyscore.train.sampling import sample_equidistant_slices

if TYPE_CHECKING:
    import torch

    from bodyscore.train.augment import Compose

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "VolumeEntry",
    "VolumeSampleDataset",
    "annotation_digest",
    "assign_splits",
    "cache_volume",
    "canonical_landmark_indices",
    "canonical_region_ranges",
    "dense_anchor_targets",
    "is_synthetic",
    "load_manifest",
    "prepare_data",
    "region_bounds_of",
    "region_weights_of",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
CACHE_DTYPE = "float16"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class VolumeEntry:
    """One cached volume.

    Attributes
    ----------
    volume_id : str
    file : str
        Cache file name inside the cache folder, array (n, 128, 128) float16.
    source : str
        Where the volume was read from.
    shape : tuple of int
        Shape of the cached array.
    spacing_mm : tuple of float
        Original voxel size (z, y, x), mm.
    z_positions_mm : tuple of float
        Position of each cached slice along the slice normal, mm, increasing.
    licence : str
    split : str
        ``"train"``, ``"val"`` or ``"test"`` (held out: never trained, validated or
        calibrated on).
    group : str
        Patient/body group used for the split.
    landmarks : mapping of str to float
        Landmark → fractional index into the cached (canonical) slices.
    regions : tuple of (int, int, str)
        Coarse region labels: inclusive ranges of cached (canonical) slice indices.
    source_bytes, source_mtime_ns : int
        Source file size and modification time (cache validity check; -1 if unknown).
    annotation_digest : str
        Digest of the volume's annotation (:func:`annotation_digest`): an edited landmark file
        refreshes the entry.
    annotated : bool
        True for a volume of the annotated set (its landmarks anchor the scores and calibrate
        the model); False for an unlabelled one (order terms, and its weak region labels).
    attribution : str
        The attribution text the volume's licence asks for (model cards credit it).
    """

    volume_id: str
    file: str
    source: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    z_positions_mm: tuple[float, ...]
    licence: str = "unknown"
    split: str = "train"
    group: str = ""
    landmarks: Mapping[str, float] = field(default_factory=dict)
    regions: tuple[tuple[int, int, str], ...] = ()
    source_bytes: int = -1
    source_mtime_ns: int = -1
    annotation_digest: str = ""
    annotated: bool = True
    attribution: str = ""

    @property
    def n_slices(self) -> int:
        """Number of cached slices."""
        return self.shape[0]

    @property
    def z_spacing_mm(self) -> float:
        """Median slice step, mm (the nominal z-spacing)."""
        z = np.asarray(self.z_positions_mm)
        return float(np.median(np.diff(z))) if z.size > 1 else float(self.spacing_mm[0])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["landmarks"] = dict(self.landmarks)
        data["regions"] = [list(r) for r in self.regions]
        for key in ("shape", "spacing_mm", "z_positions_mm"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VolumeEntry:
        """Inverse of :meth:`to_json`."""
        return cls(
            volume_id=str(data["volume_id"]), file=str(data["file"]), source=str(data["source"]),
            shape=tuple(int(s) for s in data["shape"]),  # type: ignore[arg-type]
            spacing_mm=tuple(float(s) for s in data["spacing_mm"]),  # type: ignore[arg-type]
            z_positions_mm=tuple(float(z) for z in data["z_positions_mm"]),
            licence=str(data.get("licence", "unknown")), split=str(data.get("split", "train")),
            group=str(data.get("group", data["volume_id"])),
            landmarks=MappingProxyType({str(k): float(v)
                                        for k, v in (data.get("landmarks") or {}).items()}),
            regions=tuple((int(a), int(b), str(label))
                          for a, b, label in data.get("regions") or ()),
            source_bytes=int(data.get("source_bytes", -1)),
            source_mtime_ns=int(data.get("source_mtime_ns", -1)),
            annotation_digest=str(data.get("annotation_digest", "")),
            annotated=bool(data.get("annotated", True)),
            attribution=str(data.get("attribution", "")),
        )


@dataclass(frozen=True)
class Manifest:
    """The content of ``manifest.json``: the cached volumes and how they were made."""

    volumes: tuple[VolumeEntry, ...]
    seed: int = 0
    val_fraction: float = 0.2
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    cache_dtype: str = CACHE_DTYPE

    def split(self, name: str) -> tuple[VolumeEntry, ...]:
        """Entries of one split (``"train"`` or ``"val"``), in manifest order."""
        return tuple(v for v in self.volumes if v.split == name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "format_version": _FORMAT_VERSION, "seed": self.seed,
            "val_fraction": self.val_fraction, "cache_dtype": self.cache_dtype,
            "preprocessing": dict(self.preprocessing),
            "volumes": [v.to_json() for v in self.volumes],
        }


def write_manifest(manifest: Manifest, cache_dir: str | Path) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    path = Path(cache_dir) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=1, allow_nan=False))
    return path


def load_manifest(cache_dir: str | Path) -> Manifest:
    """Read ``manifest.json`` of a cache folder.

    Raises
    ------
    InputError
        When it is missing or malformed.
    """
    path = Path(cache_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(
            volumes=tuple(VolumeEntry.from_json(v) for v in data["volumes"]),
            seed=int(data.get("seed", 0)), val_fraction=float(data.get("val_fraction", 0.2)),
            preprocessing=MappingProxyType(dict(data.get("preprocessing") or {})),
            cache_dtype=str(data.get("cache_dtype", CACHE_DTYPE)),
        )
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no training data manifest; run prepare_data first") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: malformed manifest ({exc!r}); delete the cache") from exc


def assign_splits(groups: Sequence[str], *, seed: int, val_fraction: float) -> dict[str, str]:
    """Assign each distinct group to ``"train"`` or ``"val"``, reproducibly from ``seed``.

    n_val = round(val_fraction · n_groups), at least 1 when val_fraction > 0 and there are
    ≥ 2 groups, and never all groups.
    """
    distinct = sorted(set(groups))
    n_val = 0
    if val_fraction > 0 and len(distinct) >= 2:
        n_val = min(max(round(val_fraction * len(distinct)), 1), len(distinct) - 1)
    order = np.random.default_rng([seed, 0x59117]).permutation(len(distinct))
    val = {distinct[i] for i in order[:n_val]}
    return {g: ("val" if g in val else "train") for g in distinct}


def cache_volume(
    cache_dir: str | Path,
    volume_id: str,
    slices: np.ndarray,
    *,
    spacing_mm: tuple[float, float, float],
    z_positions_mm: Sequence[float] | np.ndarray | None = None,
    source: str = "<array>",
    licence: str = "unknown",
    group: str | None = None,
    landmarks: Mapping[str, float] | None = None,
) -> VolumeEntry:
    """Store preprocessed slices (n, 128, 128) or (n, 1, 128, 128) as ``<volume_id>.npy``.

    Returns the manifest entry (split ``"train"``; :func:`prepare_data` assigns splits).
    """
    array = np.asarray(slices)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise InputError(f"{volume_id}: preprocessed slices must be (n, H, W), got {array.shape}")
    array = array.astype(CACHE_DTYPE)
    file = f"{volume_id}.npy"
    with atomic_path(Path(cache_dir) / file) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)
    z = (np.arange(array.shape[0]) * float(spacing_mm[0]) if z_positions_mm is None
         else np.asarray(z_positions_mm, dtype=float))
    return VolumeEntry(
        volume_id=volume_id, file=file, source=source,
        shape=(int(array.shape[0]), int(array.shape[1]), int(array.shape[2])),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2])),
        z_positions_mm=tuple(float(v) for v in z), licence=licence,
        group=group or volume_id,
        landmarks=MappingProxyType(dict(landmarks or {})),
    )


def _source_index(volume: Any) -> np.ndarray:
    """Index in the stored slice order of each canonical slice (identity when not reordered)."""
    if volume.source_slice_index is None:
        return np.arange(volume.array.shape[0])
    return np.asarray(volume.source_slice_index, dtype=int)


def canonical_landmark_indices(
    annotation: VolumeAnnotation | None, volume: Any
) -> dict[str, float]:
    """Landmark → fractional canonical index.

    ``k`` refers to the stored slice order (mapped through ``volume.source_slice_index``);
    a landmark given only by world ``z_mm`` is placed by interpolating the world z of the
    canonical slices (in-plane centre, from the affine).
    """
    if annotation is None:
        return {}
    n = volume.array.shape[0]
    source_index = _source_index(volume).astype(float)
    order = np.argsort(source_index)
    affine = np.asarray(volume.affine, dtype=float)
    centre = np.array([(volume.array.shape[2] - 1) / 2, (volume.array.shape[1] - 1) / 2])
    z_world = affine[2, 2] * np.arange(n) + affine[2, :2] @ centre + affine[2, 3]
    result = {}
    for name, position in annotation.landmarks.items():
        if position.k is None:  # z only: world z of the canonical slices (affine row 2)
            result[name] = position.fractional_index(z_world)
            continue
        k = float(position.k)
        if not -0.5 <= k <= source_index.max() + 0.5:
            logger.warning("%s: landmark %s at k=%g outside the volume; ignored",
                           annotation.volume_id, name, k)
            continue
        result[name] = float(np.interp(k, source_index[order], order.astype(float)))
    return result


def canonical_region_ranges(
    annotation: VolumeAnnotation | None, volume: Any
) -> tuple[tuple[int, int, str], ...]:
    """Coarse region labels as inclusive ranges of canonical slice indices.

    ``k`` ranges refer to the stored slice order (mapped through ``volume.source_slice_index``,
    as :func:`canonical_landmark_indices`); ranges are clipped to the volume.
    """
    if annotation is None or not annotation.regions:
        return ()
    canonical_of = {int(k): i for i, k in enumerate(_source_index(volume))}
    ranges = []
    for region in annotation.regions:
        ks = [canonical_of[k] for k in range(region.k_first, region.k_last + 1)
              if k in canonical_of]
        if ks:
            ranges.append((min(ks), max(ks), region.label))
    return tuple(ranges)


def annotation_digest(annotation: VolumeAnnotation | None) -> str:
    """A short digest of what training uses from an annotation (landmark positions, regions)."""
    import hashlib

    if annotation is None:
        return "none"
    content = {
        "landmarks": {name: [pos.k, pos.z_mm]
                      for name, pos in sorted(annotation.landmarks.items())},
        "regions": [[r.k_first, r.k_last, r.label] for r in annotation.regions],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def _lookup(table: Mapping[str, str] | Callable[[str], str] | None, volume_id: str,
            default: str) -> str:
    if callable(table):
        return table(volume_id)
    return (table or {}).get(volume_id, default)


def _read_annotations(files: Sequence[str | os.PathLike[str]], *, regions_only: bool = False
                      ) -> dict[str, VolumeAnnotation]:
    """Annotations of several files by volume id; ``regions_only`` drops their landmarks."""
    annotations = read_landmark_files(files)
    if regions_only:
        annotations = {k: replace(a, landmarks={}) for k, a in annotations.items()}
    return annotations


def _cache_source(path: Path, out: Path, *, annotation: VolumeAnnotation | None,
                  config: Any, previous: VolumeEntry | None, **labels: Any) -> VolumeEntry:
    """The cache entry of one source: the previous one when the source and its annotation are
    unchanged, else the volume read, preprocessed and stored (``labels``: licence,
    attribution, group, annotated)."""
    from bodyscore.io import read_volume
    from bodyscore.preprocess import preprocess_slices

    size, mtime = _stat(path)
    digest = annotation_digest(annotation)
    if (previous is not None and (previous.source_bytes, previous.source_mtime_ns) == (size, mtime)
            and previous.annotation_digest == digest and (out / previous.file).is_file()):
        logger.debug("%s: cached, not processed again", path)
        return replace(previous, **labels)
    volume = read_volume(path)
    slices = preprocess_slices(volume.array, pixel_spacing_mm=volume.spacing_mm[1:],
                               config=config)
    z = (np.arange(volume.array.shape[0]) * volume.spacing_mm[0]
         if volume.z_positions_mm is None else volume.z_positions_mm)
    entry = cache_volume(
        out, volume_id_from_path(path), slices, spacing_mm=volume.spacing_mm, z_positions_mm=z,
        source=str(path), landmarks=canonical_landmark_indices(annotation, volume),
    )
    logger.info("%s: %d slices cached", path, entry.n_slices)
    return replace(entry, source_bytes=size, source_mtime_ns=mtime, annotation_digest=digest,
                   regions=canonical_region_ranges(annotation, volume), **labels)


def prepare_data(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    licence_lookup: Mapping[str, str] | Callable[[str], str] | None = None,
    attribution_lookup: Mapping[str, str] | Callable[[str], str] | None = None,
    groups: Mapping[str, str] | None = None,
    landmark_files: Sequence[str | os.PathLike[str]] = (),
    unlabelled_sources: Sequence[str | os.PathLike[str]] = (),
    weak_label_files: Sequence[str | os.PathLike[str]] = (),
    preprocessing: Any = None,
    train_only: Sequence[str] = (),
    holdout: Sequence[str] = (),
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Manifest:
    """Preprocess CT volumes into a training cache (module docstring).

    ``train_only`` lists volume ids or group names that always go to the training split
    (e.g. every real volume of a final model, leaving validation to synthetic volumes);
    ``holdout`` lists those that go to the ``"test"`` split, which training, validation and
    calibration never see (the held-out fold of a cross-validation).

    Parameters
    ----------
    sources : sequence of path
        Annotated volume files, read with :func:`bodyscore.io.read_volume` (canonical
        orientation).
    out_dir : path
        Cache folder (created).
    seed, val_fraction : int, float
        Group-wise split (:func:`assign_splits`).
    licence_lookup, attribution_lookup : mapping or callable, optional
        Volume id → licence string / attribution text.
    groups : mapping of str to str, optional
        Volume id → group; volumes not listed form their own group.
    landmark_files : sequence of path
        Annotation files (:mod:`bodyscore.evaluate.landmarks`) of ``sources``, matched by id.
    unlabelled_sources : sequence of path
        Volumes without landmarks (entries with ``annotated`` False).
    weak_label_files : sequence of path
        Coarse region labels of the unlabelled volumes (landmarks in them are not used).
    preprocessing : bodyscore.preprocess.PreprocessingConfig, optional
    progress : callable, optional
        Wraps the iterable of sources (e.g. ``tqdm.tqdm``) to show progress.

    Returns
    -------
    Manifest
        Also written to ``out_dir/manifest.json``.
    """
    from bodyscore.preprocess import PreprocessingConfig

    config = preprocessing if preprocessing is not None else PreprocessingConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    annotations = _read_annotations(landmark_files)
    weak = _read_annotations(weak_label_files, regions_only=True)
    try:
        old_manifest = load_manifest(out)
    except InputError:
        old_manifest = None
    previous = ({v.source: v for v in old_manifest.volumes}
                if old_manifest is not None
                and dict(old_manifest.preprocessing) == config.to_dict() else {})
    groups = dict(groups or {})
    items = [(Path(s), True) for s in sources] + [(Path(s), False) for s in unlabelled_sources]
    ids = [volume_id_from_path(path) for path, _ in items]
    if len(set(ids)) != len(ids):  # before caching: a second "a" would overwrite a.npy
        duplicates = sorted({v for v in ids if ids.count(v) > 1})
        raise InputError(f"{out}: duplicate volume ids in the sources ({', '.join(duplicates)}); "
                         "rename the files")
    entries = []
    for path, annotated in (progress or iter)(items):
        volume_id = volume_id_from_path(path)
        entries.append(_cache_source(
            path, out, annotation=(annotations if annotated else weak).get(volume_id),
            config=config, previous=previous.get(str(path)), annotated=annotated,
            licence=_lookup(licence_lookup, volume_id, "unknown"),
            attribution=_lookup(attribution_lookup, volume_id, ""),
            group=groups.get(volume_id, volume_id)))
    manifest = Manifest(
        volumes=_with_splits(entries, seed=seed, val_fraction=val_fraction,
                             train_only=train_only, holdout=holdout),
        seed=seed, val_fraction=val_fraction, preprocessing=MappingProxyType(config.to_dict()),
    )
    write_manifest(manifest, out)
    return manifest


def _with_splits(entries: Sequence[VolumeEntry], *, seed: int, val_fraction: float,
                 train_only: Sequence[str], holdout: Sequence[str]) -> tuple[VolumeEntry, ...]:
    """The entries with their split: held out → "test", forced → "train", the other groups
    drawn by :func:`assign_splits`."""
    forced, held = set(train_only), set(holdout)
    free = [e.group for e in entries if not {e.group, e.volume_id} & (forced | held)]
    splits = assign_splits(free, seed=seed, val_fraction=val_fraction)

    def split_of(entry: VolumeEntry) -> str:
        if {entry.group, entry.volume_id} & held:
            return "test"
        if {entry.group, entry.volume_id} & forced:
            return "train"
        return splits[entry.group]

    return tuple(replace(e, split=split_of(e)) for e in entries)


def dense_anchor_targets(
    landmarks: Mapping[str, float], targets: Mapping[str, float], indices: np.ndarray, *,
    z_spacing_mm: float, slope_per_mm: float = 0.01, extrapolate_mm: float = 50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw target score of each sampled slice from the volume's annotated landmarks.

    Between the outermost annotated landmarks the target is interpolated linearly in slice
    index between the landmarks' targets (the published scale is close to linear in body
    height); up to ``extrapolate_mm`` beyond them it continues with ``slope_per_mm`` (the
    heuristic order loss's β: raw score units per mm, thesis eq. 4.8); farther slices get no
    target. Landmarks out of anatomical order (``k`` not increasing with the target) are
    dropped, keeping the longest consistent set. Ours, not in the thesis: it turns sparse
    landmark annotations into a dense anchor term next to the order loss (issue 11).

    Parameters
    ----------
    landmarks : mapping of str to float
        Landmark → fractional canonical slice index of this volume.
    targets : mapping of str to float
        Landmark → raw target score.
    indices : numpy.ndarray of int, shape (m,)
        Sampled slice indices.
    z_spacing_mm : float

    Returns
    -------
    target : numpy.ndarray of float32, shape (m,)
    mask : numpy.ndarray of bool, shape (m,)
        True where the slice has a target.
    """
    points = sorted(
        (float(k), float(targets[name]))
        for name, k in landmarks.items()
        if name in targets and math.isfinite(k)
    )
    m = len(indices)
    if not points:
        return np.zeros(m, dtype=np.float32), np.zeros(m, dtype=bool)
    ks, ts = _longest_increasing(points)
    idx = np.asarray(indices, dtype=float)
    target = np.interp(idx, ks, ts)
    below, above = idx < ks[0], idx > ks[-1]
    target[below] = ts[0] - slope_per_mm * (ks[0] - idx[below]) * z_spacing_mm
    target[above] = ts[-1] + slope_per_mm * (idx[above] - ks[-1]) * z_spacing_mm
    outside_mm = np.maximum(np.maximum(ks[0] - idx, idx - ks[-1]), 0.0) * z_spacing_mm
    return target.astype(np.float32), outside_mm <= extrapolate_mm


def _longest_increasing(points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The longest subsequence of (k, target) points, sorted by k, with strictly increasing
    k and target (O(n²); n ≤ 35 landmarks)."""
    n = len(points)
    best = [1] * n
    prev = [-1] * n
    for i in range(n):
        for j in range(i):
            if (points[j][0] < points[i][0] and points[j][1] < points[i][1]
                    and best[j] + 1 > best[i]):
                best[i], prev[i] = best[j] + 1, j
    i = int(np.argmax(best))
    chain = []
    while i >= 0:
        chain.append(points[i])
        i = prev[i]
    chain.reverse()
    return np.array([p[0] for p in chain]), np.array([p[1] for p in chain])


def region_bounds_of(
    regions: Sequence[tuple[int, int, str]],
    bounds: Mapping[str, tuple[float | None, float | None]],
    indices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw score interval of each sampled slice from the volume's coarse region labels.

    Parameters
    ----------
    regions : sequence of (int, int, str)
        Inclusive canonical index ranges and their labels (:attr:`VolumeEntry.regions`); a
        later range wins where ranges overlap.
    bounds : mapping of str to (float or None, float or None)
        Label → (low, high) raw score; None = open. Labels without bounds are ignored.
    indices : numpy.ndarray of int, shape (m,)

    Returns
    -------
    low, high : numpy.ndarray of float32, shape (m,)
        ``-inf`` / ``+inf`` where a side is open or the slice has no (bounded) label.
    """
    idx = np.asarray(indices)
    low = np.full(idx.shape, -np.inf, dtype=np.float32)
    high = np.full(idx.shape, np.inf, dtype=np.float32)
    for first, last, label in regions:
        if label not in bounds:
            continue
        inside = (idx >= first) & (idx <= last)
        lo, hi = bounds[label]
        low[inside] = -np.inf if lo is None else lo
        high[inside] = np.inf if hi is None else hi
    return low, high


def region_weights_of(
    regions: Sequence[tuple[int, int, str]],
    weights: Mapping[str, float],
    indices: np.ndarray,
) -> np.ndarray:
    """Weight of each sampled slice in the region term, from its coarse region label.

    Parameters
    ----------
    regions : sequence of (int, int, str)
        As in :func:`region_bounds_of` (a later range wins where ranges overlap).
    weights : mapping of str to float
        Label → weight (``region_weights`` of the config); labels not listed weigh 1.
    indices : numpy.ndarray of int, shape (m,)

    Returns
    -------
    numpy.ndarray of float32, shape (m,)
        1 where the slice has no label or its label has no weight of its own.
    """
    idx = np.asarray(indices)
    weight = np.ones(idx.shape, dtype=np.float32)
    for first, last, label in regions:
        if label in weights:
            weight[(idx >= first) & (idx <= last)] = weights[label]
    return weight


def is_synthetic(volume_id: str) -> bool:
    """True for a volume of a :mod:`bodyscore.synth` dataset (by its id)."""
    return volume_id.startswith(SYNTHETIC_PREFIX)


class VolumeSampleDataset:
    """Training items from a cache: m equidistant, augmented slices of one volume.

    Parameters
    ----------
    entries : sequence of VolumeEntry
        The volumes to sample from (e.g. ``manifest.split("train")``).
    cache_dir : path
    num_slices : int
    delta_h_range_mm : (float, float)
    augment : bodyscore.train.augment.Compose, optional
    anchor_targets : mapping of str to float, optional
        Landmark → raw target score for the anchor loss; every sampled slice gets a dense
        target from :func:`dense_anchor_targets`.
    anchor_slope_per_mm, anchor_extrapolate_mm : float
    synthetic_anchor_extrapolate_mm : float, optional
        Extrapolation range for synthetic volumes (ids starting with ``synth_``), whose score is
        linear in height by construction, so their legs get exact targets too.
        Extrapolation of the anchor targets beyond the outermost landmarks (see
        :func:`dense_anchor_targets`).
    region_bounds : mapping of str to (float or None, float or None), optional
        Coarse region label → raw score interval for the region loss (:func:`region_bounds_of`).
    synthetic_supervision : bool
        False: synthetic volumes get no anchor targets and no region bounds (order only).

    Notes
    -----
    ``dataset[(position, sample_seed)]`` returns a dict with ``"slices"`` (m, 1, H, W) float32
    tensor, ``"delta_h_mm"`` (float), ``"indices"`` (m,) int64, ``"anchor_target"`` (m,)
    float32, ``"anchor_mask"`` (m,) bool, ``"region_low"`` / ``"region_high"`` (m,) float32
    (±inf: open side or unlabelled). Volumes are memory-mapped.
    """

    def __init__(self, entries: Sequence[VolumeEntry], cache_dir: str | Path, *,
                 num_slices: int = 4, delta_h_range_mm: tuple[float, float] = (5.0, 100.0),
                 augment: Compose | None = None,
                 anchor_targets: Mapping[str, float] | None = None,
                 anchor_slope_per_mm: float = 0.01,
                 anchor_extrapolate_mm: float = 50.0,
                 synthetic_anchor_extrapolate_mm: float | None = None,
                 region_bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
                 region_weights: Mapping[str, float] | None = None,
                 synthetic_supervision: bool = True,
                 ) -> None:
        self.entries = tuple(e for e in entries if e.n_slices >= num_slices)
        dropped = len(entries) - len(self.entries)
        if dropped:
            logger.warning("%d volume(s) with fewer than %d slices skipped", dropped, num_slices)
        self.cache_dir = Path(cache_dir)
        self.num_slices = num_slices
        self.delta_h_range_mm = delta_h_range_mm
        self.augment = augment
        self.anchor_targets = dict(anchor_targets or {})
        self.anchor_slope_per_mm = anchor_slope_per_mm
        self.anchor_extrapolate_mm = anchor_extrapolate_mm
        self.synthetic_anchor_extrapolate_mm = (
            anchor_extrapolate_mm if synthetic_anchor_extrapolate_mm is None
            else synthetic_anchor_extrapolate_mm
        )
        self.region_bounds = dict(region_bounds or {})
        self.region_weights = dict(region_weights or {})
        self.synthetic_supervision = synthetic_supervision
        self._arrays: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def array(self, position: int) -> np.ndarray:
        """The cached slices of one volume, (n, H, W) float16, memory-mapped."""
        if position not in self._arrays:
            path = self.cache_dir / self.entries[position].file
            try:
                self._arrays[position] = np.load(path, mmap_mode="r")
            except OSError as exc:
                raise InputError(f"{path}: cannot read cached slices; prepare the data again"
                                 ) from exc
        return self._arrays[position]

    def slices_at(self, position: int, indices: np.ndarray, *, seed: int) -> torch.Tensor:
        """Cached slices of one volume as a tensor (len(indices), 1, H, W) float32, augmented
        (one draw of the augmentations for all of them, from ``seed``)."""
        import torch

        x = torch.from_numpy(np.asarray(self.array(position)[indices], dtype=np.float32))[:, None]
        if self.augment is not None:
            x = self.augment(x, torch.Generator().manual_seed(seed))
        return x

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        import torch

        position, sample_seed = item
        entry = self.entries[position]
        rng = np.random.default_rng([sample_seed, position])
        sample = sample_equidistant_slices(
            entry.n_slices, z_spacing_mm=entry.z_spacing_mm, rng=rng,
            num_slices=self.num_slices, delta_h_range_mm=self.delta_h_range_mm,
        )
        x = self.slices_at(position, sample.indices, seed=int(rng.integers(0, 2**62)))
        synthetic = is_synthetic(entry.volume_id)
        supervised = self.synthetic_supervision or not synthetic
        target, mask = dense_anchor_targets(
            entry.landmarks if supervised else {},
            self.anchor_targets, sample.indices,
            z_spacing_mm=entry.z_spacing_mm, slope_per_mm=self.anchor_slope_per_mm,
            extrapolate_mm=(self.synthetic_anchor_extrapolate_mm if synthetic
                            else self.anchor_extrapolate_mm),
        )
        regions = entry.regions if supervised else ()
        low, high = region_bounds_of(regions, self.region_bounds, sample.indices)
        weight = region_weights_of(regions, self.region_weights, sample.indices)
        return {
            "slices": x, "delta_h_mm": sample.delta_h_mm,
            "indices": torch.from_numpy(sample.indices),
            "anchor_target": torch.from_numpy(target), "anchor_mask": torch.from_numpy(mask),
            "region_low": torch.from_numpy(low), "region_high": torch.from_numpy(high),
            "region_weight": torch.from_numpy(weight),
        }

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack items: slices (B·m, 1, H, W), delta_h_mm (B,), anchor (B, m)."""
        import torch

        return {
            "slices": torch.cat([it["slices"] for it in items]),
            "delta_h_mm": torch.tensor([it["delta_h_mm"] for it in items], dtype=torch.float32),
            "anchor_target": torch.stack([it["anchor_target"] for it in items]),
            "anchor_mask": torch.stack([it["anchor_mask"] for it in items]),
            "region_low": torch.stack([it["region_low"] for it in items]),
            "region_high": torch.stack([it["region_high"] for it in items]),
            "region_weight": torch.stack([it["region_weight"] for it in items]),
        }
