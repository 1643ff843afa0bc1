"""Training configuration: one frozen dataclass, loaded from YAML or JSON.

Defaults follow bpreg's published training config (``bpreg-public-model/config.json``:
``loss_order "h"``, ``alpha_h 1``, ``beta_h 0.01``, ``alpha 0``, ``lr 1e-4``, ``num_slices 4``,
``equidistance_range [5, 100]``) and thesis sec. 4.1.3–4.1.5 (table 4.4 augmentations).
Relative paths in a config file are resolved against the folder of that file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bodyscore.errors import InputError
from bodyscore.train.sources import expand_sources
from bodyscore.usecases.bodypart import tag_min_present

__all__ = ["BPREG_TRANSFORM_PARAMS", "TrainConfig", "load_train_config"]

#: bpreg's published ``transform_params`` (thesis table 4.4), the default augmentations.
BPREG_TRANSFORM_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "GaussNoise": {"std_min": 0.0, "std_max": 0.04, "p": 0.5},
    "ShiftHU": {"limit": 0.08, "p": 0.5},
    "ScaleHU": {"scale_delta": 0.2, "p": 0.5},
    "AddFrame": {"p": 0.25, "r_square": 0.6, "r_circle": 0.75, "fill_value": -1.0},
    "Flip": {"p": 0.5},
    "Transpose": {"p": 0.5},
    "ShiftScaleRotate": {"p": 0.5, "scale_limit": [-0.2, 0.2], "rotate_limit": [-10, 10]},
    "GaussianBlur": {"p": 0.5, "blur_limit": [3, 7], "sigma_limit": [0.0, 0.5]},
})

_PATH_FIELDS = ("sources", "unlabelled_sources", "landmark_files", "weak_label_files",
                "data_manifests", "structure_files", "cache_dir", "published_settings")
#: Path fields that hold several paths; those of volumes are expanded (folders, globs).
_PATH_LISTS = ("sources", "unlabelled_sources", "landmark_files", "weak_label_files",
               "data_manifests", "structure_files")
_VOLUME_LISTS = ("sources", "unlabelled_sources")
#: Tables keyed by volume id or pattern: a config with ``base:`` adds to the base's entries.
_PER_VOLUME_TABLES = ("groups", "licences", "attributions", "volume_regions")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of one training run.

    Parameters
    ----------
    name : str
        Model name written into the package.
    version : str or None
        Model version written into the package's ``config.json`` (``model_version``).
    seed : int
        Seeds torch, the numpy generators, the data split and the sampling.
    sources : tuple of str
        Annotated CT volumes (anything :func:`bodyscore.io.read_volume` reads): files, folders
        or glob patterns (:func:`bodyscore.train.sources.expand_sources`), expanded to files
        when the config is read. Their landmarks feed the anchor term and the calibration.
    unlabelled_sources : tuple of str
        Volumes without landmark annotations (files, folders, globs): they get the order,
        slope-band and (with ``weak_label_files``) region terms only, and are left out of the
        calibration (thesis sec. 4.1.3: the order loss needs no labels).
    landmark_files : tuple of str
        Landmark annotation files (:mod:`bodyscore.evaluate.landmarks`) for the sources.
    weak_label_files : tuple of str
        Files in the same format for the unlabelled volumes: only their coarse ``regions``
        are used (region term); their landmarks, read once by eye, are not.
    data_manifests : tuple of str
        Tab-separated data manifests (``file``, ``licence``, ``attribution`` columns) giving
        each volume's licence and attribution (:func:`bodyscore.train.sources.read_data_manifests`).
    groups : mapping of str to str
        Volume id (file name without extension) → patient/body group; volumes of one group
        land in the same split.
    licences, attributions : mapping of str to str
        Volume id or :mod:`fnmatch` pattern of ids → licence / attribution text, stored in
        the manifest; they win over the data manifests.
    volume_regions : mapping of str to str
        Volume id or pattern → body region used by the region-balanced sampling; volumes not
        matched take the coarse region with most labelled slices, else ``"unlabelled"``.
    region_balanced : bool
        Draw each epoch by body region (:func:`bodyscore.train.sampling.region_epoch_order`):
        every region gets its share of the samples however many volumes it has (with
        ``unlabelled_share``: the unlabelled draws only).
    unlabelled_share : float or None
        Share of each epoch's samples drawn from the unlabelled volumes, on top of every
        annotated volume once (:func:`bodyscore.train.sampling.labelled_epoch_order`), so
        the anchors and regions of the annotated volumes keep their weight however many
        unlabelled volumes there are; None: all volumes alike.
    region_shares : mapping of str to float
        Relative weight of each region in the balanced sampling (regions not listed: 1).
    structure_files : tuple of str
        Contour extents (``structures.json`` of OpenKBP) for the correspondence term.
    correspondence_weight : float
        Weight of the correspondence term (0: off; :mod:`bodyscore.train.correspondence`):
        the same contour boundary should get the same score in every patient (thesis
        sec. 4.1.3, independence condition).
    correspondence_boundaries, correspondence_patients : int
        Per step, this many boundaries, each in this many training patients.
    auto_lung_anchors : bool
        Add ``lung_start`` / ``lung_end`` anchors found from HU where the image makes them
        unambiguous (:mod:`bodyscore.train.auto_anchors`) to volumes that do not annotate
        them.
    synthetic_volumes : int
        Number of synthetic volumes (:func:`bodyscore.synth.generate_dataset`) added to the data.
    synthetic_config : mapping
        Passed to ``generate_dataset(config=...)``.
    synthetic_supervision : bool
        False: synthetic volumes teach only the order (order loss and slope band), with no
        landmark-anchor or region targets, and the calibration leaves them out, so the score
        scale comes from the real volumes alone.
    synthetic_share : float or None
        Share of each epoch's samples drawn from the synthetic volumes (a fresh random subset
        each epoch; :func:`bodyscore.train.sampling.mixed_epoch_order`); None: every volume
        once per epoch, however many synthetic volumes there are.
    cache_dir : str or None
        Prepared-data cache (:func:`bodyscore.train.data.prepare_data`); default ``out_dir/cache``.
    val_fraction : float
        Fraction of groups used for validation.
    model : mapping
        Passed to :func:`bodyscore.model.network.build_network`.
    num_slices : int
        m, slices sampled per volume (thesis sec. 4.1.3).
    delta_h_range_mm : tuple of float
        Range of the physical slice distance Δh in mm.
    batch_size : int
        B, volumes per step (per process when data-parallel).
    loss_order : str
        ``"h"`` heuristic order loss (eq. 4.7) or ``"c"`` classification order loss (eq. 5.1).
    alpha_h : float
        Weight of the order loss.
    beta_h : float
        β of the heuristic order loss, 1/mm.
    alpha : float
        Weight α of the distance loss (eq. 5.2).
    anchor_weight : float
        Weight of the landmark anchor loss (0: off).
    anchor_extrapolate_mm, synthetic_anchor_extrapolate_mm : float
        How far beyond a volume's outermost landmarks the dense anchor targets extend (real;
        synthetic, default: the same), mm (:func:`bodyscore.train.data.dense_anchor_targets`).
    train_only : sequence of str
        Volume ids or group names always in the training split.
    holdout : sequence of str
        Volume ids or group names put in the ``"test"`` split: never trained on, validated on
        or calibrated on (cross-validation folds, ``benchmarks/accuracy/cross_validate.py``).
    region_weight : float
        Weight of the coarse-region interval loss (0: off): slices labelled with a coarse region
        in the landmark files (legs, pelvis, …) are pulled into that region's raw score interval
        (:func:`bodyscore.train.losses.region_interval_loss`).
    region_bounds : mapping of str to (float or None, float or None)
        Region label → raw score interval (None: unbounded on that side).
    region_weights : mapping of str to float
        Region label → weight of its slices in the region term (labels not listed: 1), for a
        region with few volumes, e.g. legs (:func:`bodyscore.train.data.region_weights_of`).
    slope_weight : float
        Weight of the slope-band loss (0: off; :func:`bodyscore.train.losses.slope_band_loss`):
        each sample's score rise is kept between ``slope_band_per_mm`` × its span.
    slope_band_per_mm : (float, float)
        (low, high) raw score per mm of the slope band, 0 < low <= high.
    anchor_targets : mapping of str to float
        Landmark → raw target score for the anchor loss.
    tag_min_present_landmarks : mapping of str to int
        Stored in the package's inference settings: per tag body part, how many of its
        landmarks make it visible (thesis fig. 4.9; parts not listed keep bpreg's numbers).
    lr_milestones : sequence of (int, float)
        Step schedule: from step ``s`` on, the learning rate is ``lr`` of the last milestone
        ``(s, lr)`` reached (empty: constant ``lr``).
    lr : float
        Adam learning rate.
    weight_average_decay : float or None
        Exponential moving average of the network's weights and BatchNorm statistics
        (Polyak averaging; the average moves by ``1 - decay`` towards the weights after each
        step, i.e. it spans about ``1 / (1 - decay)`` steps); the average, not the last
        weights, is validated, calibrated and packaged. None: off.
    max_steps : int
        Optimiser steps in total.
    checkpoint_every : int
        Write ``checkpoint.pt`` every this many steps (and at the end of each epoch).
    validate_every : int or None
        Validate every this many steps (None: at the end of each epoch).
    log_every : int
        Write a CSV row every this many steps.
    val_max_slices : int
        Validation scores at most this many equidistant slices per volume.
    num_threads : int or None
        ``torch.set_num_threads``; None: all cores (divided among torchrun's local processes).
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    transform_params : mapping
        Augmentations in bpreg's ``transform_params`` layout (:mod:`bodyscore.train.augment`).
    calibrate : bool
        Compute inference settings from the annotated volumes at the end.
    published_settings : str or None
        A published ``inference-settings.json``; when given, a monotone piecewise-linear
        calibration to its transformed scale is stored (``calibrate.py``).
    export_onnx : bool
        Also write ``model.onnx`` into the package.
    preprocessing : mapping
        :class:`bodyscore.preprocess.PreprocessingConfig` overrides (e.g. ``size: 64`` with
        ``target_spacing_mm: 7.0`` for the input-resolution ablation); empty: bpreg's values.
    """

    name: str = "bodyscore-model"
    version: str | None = None
    seed: int = 0
    sources: tuple[str, ...] = ()
    unlabelled_sources: tuple[str, ...] = ()
    landmark_files: tuple[str, ...] = ()
    weak_label_files: tuple[str, ...] = ()
    data_manifests: tuple[str, ...] = ()
    groups: Mapping[str, str] = field(default_factory=dict)
    licences: Mapping[str, str] = field(default_factory=dict)
    attributions: Mapping[str, str] = field(default_factory=dict)
    volume_regions: Mapping[str, str] = field(default_factory=dict)
    region_balanced: bool = False
    unlabelled_share: float | None = None
    region_shares: Mapping[str, float] = field(default_factory=dict)
    structure_files: tuple[str, ...] = ()
    correspondence_weight: float = 0.0
    correspondence_boundaries: int = 2
    correspondence_patients: int = 6
    auto_lung_anchors: bool = False
    synthetic_volumes: int = 0
    synthetic_config: Mapping[str, Any] = field(default_factory=dict)
    synthetic_share: float | None = None
    synthetic_supervision: bool = True
    cache_dir: str | None = None
    val_fraction: float = 0.2
    model: Mapping[str, Any] = field(default_factory=dict)
    num_slices: int = 4
    delta_h_range_mm: tuple[float, float] = (5.0, 100.0)
    batch_size: int = 8
    loss_order: str = "h"
    alpha_h: float = 1.0
    beta_h: float = 0.01
    alpha: float = 0.0
    anchor_weight: float = 0.0
    anchor_extrapolate_mm: float = 50.0
    synthetic_anchor_extrapolate_mm: float | None = None
    train_only: tuple[str, ...] = ()
    holdout: tuple[str, ...] = ()
    region_weight: float = 0.0
    region_bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    region_weights: Mapping[str, float] = field(default_factory=dict)
    slope_weight: float = 0.0
    slope_band_per_mm: tuple[float, float] = (0.0075, 0.015)
    anchor_targets: Mapping[str, float] = field(default_factory=dict)
    tag_min_present_landmarks: Mapping[str, int] = field(default_factory=dict)
    lr: float = 1e-4
    lr_milestones: tuple[tuple[int, float], ...] = ()
    weight_average_decay: float | None = None
    max_steps: int = 1000
    checkpoint_every: int = 100
    log_every: int = 10
    validate_every: int | None = None
    val_max_slices: int = 64
    num_threads: int | None = None
    device: str = "auto"
    transform_params: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in BPREG_TRANSFORM_PARAMS.items()}
    )
    calibrate: bool = True
    published_settings: str | None = None
    export_onnx: bool = True
    preprocessing: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.num_slices < 2:
            problems.append(f"num_slices must be >= 2, got {self.num_slices}")
        lo, hi = self.delta_h_range_mm
        if not (0 < lo <= hi and math.isfinite(hi)):
            problems.append(f"delta_h_range_mm must satisfy 0 < min <= max, got {lo, hi}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.loss_order not in ("h", "c"):
            problems.append(f"loss_order must be 'h' or 'c', got {self.loss_order!r}")
        problems += self._share_problems()
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        decay = self.weight_average_decay
        if decay is not None and not 0 < decay < 1:
            problems.append(f"weight_average_decay must be in (0, 1) or null, got {decay}")
        if self.max_steps < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            problems.append("max_steps, checkpoint_every and log_every must be >= 1")
        overlap = set(self.train_only) & set(self.holdout)
        if overlap:
            problems.append(f"volumes both in train_only and holdout: {sorted(overlap)}")
        problems += [f"region_bounds[{name!r}] must be [low, high] with low <= high (None: open)"
                     for name, bounds in self.region_bounds.items() if not _is_interval(bounds)]
        try:
            tag_min_present(self.tag_min_present_landmarks)
        except (TypeError, ValueError) as exc:
            problems.append(f"tag_min_present_landmarks: {exc}")
        low, high = self.slope_band_per_mm
        if not 0 < low <= high < math.inf:
            problems.append(f"slope_band_per_mm must satisfy 0 < low <= high, got {low, high}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if problems:
            raise InputError(f"train config: {'; '.join(problems)}; fix the config")

    def _share_problems(self) -> list[str]:
        """Problems of the sampling shares (synthetic, unlabelled, regions) and region weights."""
        problems = [f"{name} must be in [0, 1) or null, got {share}"
                    for name, share in (("synthetic_share", self.synthetic_share),
                                        ("unlabelled_share", self.unlabelled_share))
                    if share is not None and not 0 <= share < 1]
        return problems + [f"{table}[{name!r}] must be >= 0, got {share}"
                           for table, shares in (("region_shares", self.region_shares),
                                                 ("region_weights", self.region_weights))
                           for name, share in shares.items() if not share >= 0]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str | Path | None = None,
                  where: str = "train config") -> TrainConfig:
        """Build from a plain mapping; relative paths are resolved against ``base_dir``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"{where}: unknown keys {unknown}; see bodyscore.train.TrainConfig")
        values: dict[str, Any] = dict(data)
        base = Path(base_dir) if base_dir is not None else None

        def resolve(p: Any) -> str:
            path = Path(str(p)).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            return str(path)

        for key in _PATH_FIELDS:
            if key not in values or values[key] is None:
                continue
            if key in _VOLUME_LISTS:
                values[key] = expand_sources([resolve(p) for p in values[key]], where=key)
            elif key in _PATH_LISTS:
                values[key] = tuple(resolve(p) for p in values[key])
            else:
                values[key] = resolve(values[key])
        try:
            for key, coerce in _COERCIONS.items():
                if key in values:
                    values[key] = coerce(values[key])
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: {key}: {exc}; fix the config") from exc
        try:
            return cls(**values)
        except TypeError as exc:
            raise InputError(f"{where}: {exc}; fix the config") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=dict))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _names(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


def _intervals(values: Any) -> dict[str, tuple[float | None, ...]]:
    return {str(name): tuple(None if b is None else float(b) for b in bounds)
            for name, bounds in (values or {}).items()}


def _shares(values: Any) -> dict[str, float]:
    return {str(name): float(share) for name, share in (values or {}).items()}


def _counts(values: Any) -> dict[str, int]:
    return {str(name): int(count) for name, count in (values or {}).items()}


def _milestones(values: Any) -> tuple[tuple[int, float], ...]:
    return tuple((int(step), float(rate)) for step, rate in values or ())


#: How :meth:`TrainConfig.from_dict` turns YAML/JSON values into the fields' types.
_COERCIONS: dict[str, Callable[[Any], Any]] = {
    "train_only": _names,
    "holdout": _names,
    "region_bounds": _intervals,
    "tag_min_present_landmarks": _counts,
    "region_shares": _shares,
    "region_weights": _shares,
    "lr_milestones": _milestones,
    "delta_h_range_mm": _floats,
    "slope_band_per_mm": _floats,
}


def _is_interval(bounds: Any) -> bool:
    if len(bounds) != 2:
        return False
    low, high = bounds
    return low is None or high is None or float(low) <= float(high)


def load_train_config(path: str | Path, *, seen: frozenset[Path] = frozenset()
                      ) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.yaml``/``.yml`` or ``.json`` file.

    A ``base: other.yaml`` key starts from that config and changes only the keys given
    here (one recipe, small overrides; paths of each file resolve against its own folder);
    ``groups``, ``licences``, ``attributions`` and ``volume_regions`` add to the base's
    entries.

    Raises
    ------
    InputError
        When the file is missing, unparsable, or has unknown/invalid keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the training config ({exc.strerror})") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({exc}); fix the syntax") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: the training config must be a mapping of keys to values")
    if "base" in data:
        data = _merged_with_base(data, path, seen=seen)
    return TrainConfig.from_dict(data, base_dir=path.parent, where=str(path))


def _merged_with_base(data: Mapping[str, Any], path: Path, *, seen: frozenset[Path]
                      ) -> dict[str, Any]:
    """``base: other.yaml`` (relative to this file): the other config's values (its paths
    resolved against its own folder), overridden key by key by this file's; the per-volume
    tables (:data:`_PER_VOLUME_TABLES`) are merged entry by entry instead."""
    own = dict(data)
    base_path = (path.parent / str(own.pop("base"))).resolve()
    if base_path in seen:
        raise InputError(f"{path}: 'base' chain loops back to {base_path}; fix the config")
    base = load_train_config(base_path, seen=seen | {path.resolve()}).to_dict()
    merged = {**base, **own}
    for key in _PER_VOLUME_TABLES:  # a config that adds volumes adds to these tables
        if isinstance(own.get(key), Mapping):
            merged[key] = {**base.get(key, {}), **own[key]}
    return merged
