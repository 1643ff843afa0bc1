"""The training loop (thesis sec. 4.1.3, fig. 4.2): Adam on B volumes × m slices per step.

:func:`train` prepares (or reuses) the data cache, optionally adds synthetic volumes, trains
with the losses of :mod:`~bodyscore.train.losses`, validates once per epoch, checkpoints, and
finally calibrates (:mod:`~bodyscore.train.calibrate`) and writes a model package
(:func:`bodyscore.model.package.save_package`) into ``out_dir/model``.

Files in ``out_dir``: ``checkpoint.pt`` (atomic; model, optimizer, RNG states, step, and the
weight average when ``weight_average_decay`` is set), ``train_log.csv`` (one row per
``log_every`` steps and per epoch end: step, epoch, loss terms averaged since the previous
row, validation metrics, seconds), ``cache/`` (unless ``cache_dir`` is set), ``synthetic/``
and ``model/``.

Determinism: the volume order of epoch e is drawn from (seed, e), the slices and augmentation
of each item from (seed, step, rank, slot), so a resumed run repeats exactly what an
uninterrupted one would do; torch's RNG state is checkpointed too, and
``torch.use_deterministic_algorithms(True, warn_only=True)`` is set.

Data-parallel: under ``torchrun`` (``WORLD_SIZE`` > 1) the processes join a ``gloo`` process
group, wrap the network in DDP, and each rank takes its own share of the volumes of every
step (:func:`~bodyscore.train.sampling.rank_batch`); rank 0 prepares data, validates and
writes every file. ``batch_size`` is per process.

Validation metrics (val split, every ``val_max_slices`` equidistant slices per volume):
``val_order_accuracy`` = fraction of consecutive scored slices whose score increases;
``val_landmark_spread`` = mean over landmarks (in ≥ 2 val volumes) of the std of their raw
score across volumes divided by the score range (mean eyes_end − mean pelvis_start when both
are annotated, else the 1–99 % range of all val scores); a unitless LMSE-like error.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError, ModelError
from bodyscore.export.atomic import atomic_path, atomic_write_text
from bodyscore.preprocess import PreprocessingConfig
from bodyscore.settings import InferenceSettings
from bodyscore.train.augment import build_augmentations
from bodyscore.train.calibrate import score_slices
from bodyscore.train.config import TrainConfig, load_train_config
from bodyscore.train.correspondence import sample_correspondence_batch
from bodyscore.train.data import (
    Manifest,
    VolumeSampleDataset,
    is_synthetic,
    load_manifest,
    prepare_data,
)
from bodyscore.train.losses import total_loss
from bodyscore.train.sampling import (
    labelled_epoch_order,
    mixed_epoch_order,
    rank_batch,
    region_epoch_order,
    steps_per_epoch,
    synthetic_draw_count,
)
from bodyscore.train.signals import sampling_region, training_boundaries, with_lung_anchors
from bodyscore.train.sources import CreditTable, read_data_manifests

if TYPE_CHECKING:
    import torch

__all__ = ["LOG_COLUMNS", "TrainResult", "run_training_from_file", "train", "validation_metrics"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.csv"
LOG_COLUMNS = ("step", "epoch", "loss", "loss_order", "loss_distance", "loss_anchor",
               "loss_region", "loss_slope", "loss_correspondence", "val_order_accuracy",
               "val_landmark_spread", "seconds")
#: Values per step in a log window: the total loss and each term (the ``loss*`` columns).
_N_LOSS_TERMS = sum(column.startswith("loss") for column in LOG_COLUMNS)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    out_dir : pathlib.Path
    step : int
        Optimiser steps done in total (including steps before a resume).
    epoch : float
        Epochs done (steps / steps per epoch).
    last_loss : float
        Mean loss of the last logged window.
    val_metrics : mapping of str to float
        Metrics of the last validation.
    package_dir : pathlib.Path or None
        The model package; None when calibration failed or on ranks > 0.
    settings : InferenceSettings or None
    log_path, checkpoint_path : pathlib.Path
    seconds : float
        Wall time of this call.
    resumed_from : int
        Step of the checkpoint resumed from (0 = fresh start).
    """

    out_dir: Path
    step: int
    epoch: float
    last_loss: float
    val_metrics: Mapping[str, float] = field(default_factory=dict)
    package_dir: Path | None = None
    settings: InferenceSettings | None = None
    log_path: Path | None = None
    checkpoint_path: Path | None = None
    seconds: float = 0.0
    resumed_from: int = 0


# -- validation ---------------------------------------------------------------------------------
def validation_metrics(curves: Sequence[tuple[np.ndarray, np.ndarray, Mapping[str, float]]]
                       ) -> dict[str, float]:
    """Order accuracy and landmark spread (module docstring) of validation curves.

    Parameters
    ----------
    curves : sequence of (indices (n,), raw scores (n,), landmarks {name: fractional index})
        Scored slices of each val volume (indices increasing).
    """
    correct = total = 0
    per_landmark: dict[str, list[float]] = {}
    all_scores = []
    for indices, scores, landmarks in curves:
        diffs = np.diff(scores)
        correct += int(np.sum(diffs > 0))
        total += diffs.size
        all_scores.append(scores)
        for name, k in landmarks.items():
            if indices[0] - 0.5 <= k <= indices[-1] + 0.5:
                per_landmark.setdefault(name, []).append(float(np.interp(k, indices, scores)))
    metrics = {"val_order_accuracy": correct / total if total else math.nan,
               "val_landmark_spread": math.nan}
    start, end = per_landmark.get("pelvis_start"), per_landmark.get("eyes_end")
    if start and end:
        score_range = float(np.mean(end) - np.mean(start))
    elif all_scores:
        low, high = np.percentile(np.concatenate(all_scores), [1, 99])
        score_range = float(high - low)
    else:
        score_range = math.nan
    spreads = [float(np.std(v)) for v in per_landmark.values() if len(v) >= 2]
    if spreads and score_range > 0:
        metrics["val_landmark_spread"] = float(np.mean(spreads)) / score_range
    return metrics


def _validate(model: torch.nn.Module, dataset: VolumeSampleDataset, *, max_slices: int,
              device: torch.device) -> dict[str, float]:
    curves = []
    for position, entry in enumerate(dataset.entries):
        n = entry.n_slices
        indices = np.unique(np.round(np.linspace(0, n - 1, min(n, max_slices))).astype(int))
        scores = score_slices(model, dataset.array(position)[indices], device=device)
        curves.append((indices.astype(float), scores, entry.landmarks))
    return validation_metrics(curves)


# -- run setup ----------------------------------------------------------------------------------
@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def _init_distributed() -> _Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return _Distributed(rank=dist.get_rank(), world_size=dist.get_world_size())


def _device(config: TrainConfig) -> torch.device:
    import torch

    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("train config: device 'cuda' requested but CUDA is not available")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def _synthetic_sources(config: TrainConfig, cache_dir: Path) -> tuple[list[str], list[str]]:
    """Generate the synthetic volumes once (rank 0); returns (files, landmark files)."""
    if config.synthetic_volumes <= 0:
        return [], []
    folder = cache_dir / "synthetic"
    landmarks = folder / "landmarks.json"
    if not landmarks.is_file():
        from bodyscore.synth import SynthConfig, generate_dataset

        options: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                   for k, v in config.synthetic_config.items()}
        try:
            synth_config = SynthConfig(**options)
        except TypeError as exc:
            raise InputError(f"train config: invalid synthetic_config ({exc}); see "
                             "bodyscore.synth.SynthConfig") from exc
        generate_dataset(folder, config.synthetic_volumes, seed=config.seed,
                         config=synth_config)
    files = sorted(str(p) for p in folder.glob("*.nii*"))
    return files, [str(landmarks)]


def _prepare(config: TrainConfig, cache_dir: Path, dist_info: _Distributed) -> Manifest:
    """Prepare the cache (rank 0) and return this run's manifest.

    Rank 0 keeps the manifest it made, so runs sharing one cache folder (cross-validation
    folds in parallel) never read each other's split from ``manifest.json``.
    """
    manifest: Manifest | None = None
    if dist_info.is_main:
        synth_files, synth_landmarks = _synthetic_sources(config, cache_dir)
        sources = [*config.sources, *synth_files]
        if sources or config.unlabelled_sources:
            credits = CreditTable(read_data_manifests(config.data_manifests),
                                  config.licences, config.attributions)
            manifest = prepare_data(
                sources, cache_dir, seed=config.seed, val_fraction=config.val_fraction,
                licence_lookup=credits.licence, attribution_lookup=credits.attribution,
                groups=config.groups, train_only=config.train_only, holdout=config.holdout,
                preprocessing=PreprocessingConfig.from_dict(config.preprocessing),
                landmark_files=[*config.landmark_files, *synth_landmarks],
                unlabelled_sources=config.unlabelled_sources,
                weak_label_files=config.weak_label_files)
    dist_info.barrier()
    if manifest is None:
        manifest = load_manifest(cache_dir)
    if not manifest.split("train"):
        raise InputError(f"{cache_dir}: no training volumes in the manifest; add sources")
    return manifest


# -- checkpoint and log -------------------------------------------------------------------------
def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_log(path: Path, *, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def _package_config(config: TrainConfig, manifest: Manifest) -> dict[str, Any]:
    """config.json content: bpreg's training keys plus the network and preprocessing."""
    return {
        "name": config.name, "model_name": config.name,
        **({"model_version": config.version} if config.version else {}),
        "base_model": config.model.get("base_model", "light"),
        **{k: v for k, v in config.model.items() if k != "base_model"},
        "preprocessing": dict(manifest.preprocessing),
        "batch_size": config.batch_size, "equidistance_range": list(config.delta_h_range_mm),
        "num_slices": config.num_slices, "loss_order": config.loss_order,
        "alpha_h": config.alpha_h, "beta_h": config.beta_h, "alpha": config.alpha,
        "lr": config.lr, "random_seed": config.seed,
        "transform_params": {k: dict(v) for k, v in config.transform_params.items()},
        "training": config.to_dict(),
    }


def _model_card(config: TrainConfig, manifest: Manifest, result_step: int,
                metrics: Mapping[str, float]) -> str:
    lines = [f"# {config.name}", "", "Body part regression model trained with bodyscore "
             "(self-supervised, thesis sec. 4.1).", "", "## Data", "",
             "| volume | split | group | slices | licence |", "|---|---|---|---|---|"]
    lines += [f"| {v.volume_id} | {v.split} | {v.group} | {v.n_slices} | {v.licence} |"
              for v in manifest.volumes]
    lines += ["", "## Training", "", f"steps: {result_step}; loss {config.loss_order}, "
              f"alpha_h {config.alpha_h}, beta_h {config.beta_h}/mm, alpha {config.alpha}, "
              f"lr {config.lr}, B {config.batch_size} × m {config.num_slices}", "",
              "## Validation", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class _Session:
    """Everything one training run holds (mutable: step, window, rows)."""

    config: TrainConfig
    out: Path
    cache_dir: Path
    dist: _Distributed
    device: Any
    manifest: Manifest
    train_set: VolumeSampleDataset
    val_set: VolumeSampleDataset
    network: Any
    model: Any
    optimizer: Any
    per_epoch: int
    averaged: Any = None
    synthetic_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    regions: tuple[str, ...] = ()
    annotated_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    boundaries: dict[int, dict[str, float]] = field(default_factory=dict)
    step: int = 0
    window: list[list[float]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    last_loss: float = math.nan

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def scoring_network(self) -> Any:
        """The network that is validated, calibrated and packaged: the weight average when
        ``weight_average_decay`` is set, else the trained network itself."""
        return self.network if self.averaged is None else self.averaged.module

    @property
    def log_path(self) -> Path:
        return self.out / LOG_NAME


def _epoch_length(synthetic: np.ndarray, share: float | None) -> int:
    """Samples in one epoch of :func:`mixed_epoch_order`."""
    n_real = int(np.count_nonzero(~synthetic))
    return n_real + synthetic_draw_count(n_real, int(np.count_nonzero(synthetic)), share)


def _epoch_order(run: _Session, epoch: int) -> np.ndarray:
    """The volume order of one epoch: region-balanced, or every volume once (with the
    synthetic share)."""
    config = run.config
    if config.unlabelled_share is not None:
        return labelled_epoch_order(run.annotated_mask, share=config.unlabelled_share,
                                    regions=run.regions if config.region_balanced else None,
                                    region_shares=config.region_shares,
                                    seed=config.seed, epoch=epoch)
    if config.region_balanced:
        return region_epoch_order(run.regions, shares=config.region_shares,
                                  seed=config.seed, epoch=epoch)
    return mixed_epoch_order(run.synthetic_mask, share=config.synthetic_share,
                             seed=config.seed, epoch=epoch)


def weight_average(network: torch.nn.Module, decay: float | None) -> Any:
    """An exponential moving average of ``network``'s weights and buffers
    (:class:`torch.optim.swa_utils.AveragedModel`; its first update copies the weights), or
    None when ``decay`` is None."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _setup(config: TrainConfig, out: Path) -> _Session:
    import torch

    from bodyscore.model.network import build_network

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(config.num_threads or max(1, (os.cpu_count() or 1) // local_processes))
    torch.use_deterministic_algorithms(True, warn_only=True)
    dist_info = _init_distributed()
    device = _device(config)
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / "cache"
    manifest = _prepare(config, cache_dir, dist_info)
    augment = build_augmentations(config.transform_params) if config.transform_params else None
    dataset_args: dict[str, Any] = {
        "num_slices": config.num_slices, "delta_h_range_mm": config.delta_h_range_mm,
    }
    train_entries = manifest.split("train")
    if config.auto_lung_anchors:
        train_entries = with_lung_anchors(train_entries, cache_dir, manifest.preprocessing)
    train_set = VolumeSampleDataset(train_entries, cache_dir, augment=augment,
                                    anchor_targets=config.anchor_targets,
                                    anchor_extrapolate_mm=config.anchor_extrapolate_mm,
                                    synthetic_anchor_extrapolate_mm=(
                                        config.synthetic_anchor_extrapolate_mm),
                                    region_bounds=config.region_bounds,
                                    region_weights=config.region_weights,
                                    synthetic_supervision=config.synthetic_supervision,
                                    **dataset_args)
    val_set = VolumeSampleDataset(manifest.split("val"), cache_dir, **dataset_args)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    network = build_network(config.model).to(device)
    model = network
    if dist_info.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(network)
    synthetic = np.array([is_synthetic(e.volume_id) for e in train_set.entries], dtype=bool)
    regions = tuple(sampling_region(e, config.volume_regions) for e in train_set.entries)
    if config.region_balanced and dist_info.is_main:
        counts = {r: regions.count(r) for r in sorted(set(regions))}
        logger.info("region-balanced sampling, training volumes per region: %s", counts)
    annotated = np.array([e.annotated for e in train_set.entries], dtype=bool)
    if config.unlabelled_share is not None:
        n_annotated = int(annotated.sum())
        epoch_length = n_annotated + round(n_annotated * config.unlabelled_share
                                           / (1.0 - config.unlabelled_share))
    elif config.region_balanced:
        epoch_length = len(regions)
    else:
        epoch_length = _epoch_length(synthetic, config.synthetic_share)
    return _Session(
        config=config, out=out, cache_dir=cache_dir, dist=dist_info, device=device,
        manifest=manifest, train_set=train_set, val_set=val_set, network=network, model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
        averaged=weight_average(network, config.weight_average_decay),
        per_epoch=steps_per_epoch(epoch_length, batch_size=config.batch_size,
                                  world_size=dist_info.world_size),
        synthetic_mask=synthetic, regions=regions, annotated_mask=annotated,
        boundaries=training_boundaries(config, train_set.entries),
    )


def _resume(run: _Session) -> None:
    import torch

    state = torch.load(run.checkpoint_path, map_location=run.device, weights_only=True)
    run.network.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.averaged is not None and "weight_average" in state:
        run.averaged.load_state_dict(state["weight_average"])
    elif run.averaged is not None:
        logger.warning("%s holds no weight average: it starts from the resumed weights",
                       run.checkpoint_path)
    _set_rng_state(state["rng"])
    run.step = int(state["step"])
    # windows of checkpoints written before the region/slope terms are shorter: pad with 0
    run.window = [[*w, *[0.0] * (_N_LOSS_TERMS - len(w))] for w in state.get("window", [])]
    run.rows = _read_log(run.log_path, up_to_step=run.step)
    logger.info("resumed from %s at step %d", run.checkpoint_path, run.step)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Adam's learning rate for ``step``: ``config.lr``, replaced by the value of the last
    ``lr_milestones`` entry ``(from_step, lr)`` with ``from_step <= step`` (a step schedule;
    resuming a run with added milestones continues it at the new rate)."""
    rate = config.lr
    for from_step, value in sorted(config.lr_milestones):
        if step >= from_step:
            rate = value
    return float(rate)


def _correspondence_batch(run: _Session) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices (P, 1, H, W) at contour boundaries of training patients and their boundary ids
    (P,), drawn from (seed, step, rank); empty without the correspondence term."""
    import torch

    config = run.config
    size = int(run.train_set.entries[0].shape[-1]) if run.train_set.entries else 128
    empty = torch.zeros((0, 1, size, size)), torch.zeros(0, dtype=torch.long)
    if not (config.correspondence_weight and run.boundaries):
        return empty
    rng = np.random.default_rng([config.seed, run.step, run.dist.rank, 0xC0])
    drawn = sample_correspondence_batch(
        run.boundaries, rng, n_boundaries=config.correspondence_boundaries,
        n_patients=config.correspondence_patients)
    seeds = rng.integers(0, 2**62, size=len(drawn))
    slices = [run.train_set.slices_at(int(p), np.array([k]), seed=int(s))
              for p, k, s in zip(drawn.positions, drawn.slice_indices, seeds, strict=True)]
    return (torch.cat(slices), torch.from_numpy(drawn.boundary_ids)) if slices else empty


def _train_step(run: _Session) -> None:
    import torch

    config = run.config
    epoch, in_epoch = divmod(run.step, run.per_epoch)
    order = _epoch_order(run, epoch)
    positions = rank_batch(order, step_in_epoch=in_epoch, batch_size=config.batch_size,
                           rank=run.dist.rank, world_size=run.dist.world_size)
    seeds = np.random.SeedSequence([config.seed, run.step, run.dist.rank]).generate_state(
        len(positions))
    batch = run.train_set.collate([run.train_set[(int(p), int(s))]
                                   for p, s in zip(positions, seeds, strict=True)])
    device = run.device
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate_at(run.step, config)
    extra, extra_ids = _correspondence_batch(run)
    n_main = len(positions) * config.num_slices
    all_scores = run.model(torch.cat([batch["slices"], extra]).to(device)).reshape(-1)
    scores = all_scores[:n_main].reshape(len(positions), config.num_slices)
    terms = total_loss(
        scores, batch["delta_h_mm"].to(device), loss_order=config.loss_order,
        alpha_h=config.alpha_h, beta_h=config.beta_h, alpha=config.alpha,
        anchor_weight=config.anchor_weight, anchor_targets=batch["anchor_target"].to(device),
        anchor_mask=batch["anchor_mask"].to(device), region_weight=config.region_weight,
        region_low=batch["region_low"].to(device), region_high=batch["region_high"].to(device),
        region_slice_weight=batch["region_weight"].to(device),
        slope_weight=config.slope_weight, slope_band_per_mm=config.slope_band_per_mm,
        correspondence_weight=config.correspondence_weight,
        correspondence_scores=all_scores[n_main:], correspondence_ids=extra_ids.to(device),
    )
    run.optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    run.optimizer.step()
    if run.averaged is not None:
        run.averaged.update_parameters(run.network)
    run.step += 1
    run.window.append([float(terms.total.detach()), terms.order, terms.distance, terms.anchor,
                       terms.region, terms.slope, terms.correspondence])


def _log(run: _Session, *, started: float, validate: bool) -> None:
    mean = np.mean(np.asarray(run.window), axis=0)
    run.last_loss = float(mean[0])
    run.window = []
    row = {"step": run.step, "epoch": f"{run.step / run.per_epoch:.4g}", "loss": _fmt(mean[0]),
           "loss_order": _fmt(mean[1]), "loss_distance": _fmt(mean[2]),
           "loss_anchor": _fmt(mean[3]), "loss_region": _fmt(mean[4]),
           "loss_slope": _fmt(mean[5]), "loss_correspondence": _fmt(mean[6]),
           "val_order_accuracy": "", "val_landmark_spread": "",
           "seconds": f"{time.perf_counter() - started:.2f}"}
    if validate and len(run.val_set) and run.dist.is_main:
        run.metrics = _validate(run.scoring_network, run.val_set,
                                max_slices=run.config.val_max_slices, device=run.device)
        row.update({k: _fmt(v) for k, v in run.metrics.items()})
    run.rows.append(row)
    if run.dist.is_main:
        _write_log(run.log_path, run.rows)
        logger.info("step %d loss %.5f %s", run.step, run.last_loss, run.metrics)


def train(config: TrainConfig, *, out_dir: str | os.PathLike[str],
          resume: bool = True) -> TrainResult:
    """Train a body part regression network (module docstring).

    Parameters
    ----------
    config : TrainConfig
    out_dir : path
        Run folder (checkpoint, log, cache, package).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists.

    Returns
    -------
    TrainResult
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _setup(config, out)
    if resume and run.checkpoint_path.is_file():
        _resume(run)
    resumed_from = run.step
    run.model.train()
    while run.step < config.max_steps:
        _train_step(run)
        last = run.step == config.max_steps
        every = config.validate_every or run.per_epoch
        validate = run.step % every == 0 or last
        if run.step % config.log_every == 0 or validate:
            _log(run, started=started, validate=validate)
        if run.dist.is_main and (run.step % config.checkpoint_every == 0 or last):
            _save_checkpoint(run.checkpoint_path, {
                "step": run.step, "model": run.network.state_dict(),
                "optimizer": run.optimizer.state_dict(), "rng": _rng_state(),
                "window": run.window, "config": config.to_dict(),
                **({} if run.averaged is None
                   else {"weight_average": run.averaged.state_dict()}),
            })
    run.dist.barrier()
    package_dir: Path | None = None
    settings: InferenceSettings | None = None
    if run.dist.is_main and config.calibrate:
        package_dir, settings = _calibrate_and_package(run)
    run.dist.barrier()
    if run.dist.world_size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return TrainResult(
        out_dir=out, step=run.step, epoch=run.step / run.per_epoch, last_loss=run.last_loss,
        val_metrics=dict(run.metrics), package_dir=package_dir, settings=settings,
        log_path=run.log_path, checkpoint_path=run.checkpoint_path,
        seconds=time.perf_counter() - started, resumed_from=resumed_from,
    )


def _calibrate_and_package(run: _Session) -> tuple[Path | None, InferenceSettings | None]:
    from bodyscore.model.package import save_package
    from bodyscore.train.calibrate import calibrate_model

    config = run.config
    published = (InferenceSettings.from_file(config.published_settings)
                 if config.published_settings else None)
    try:
        settings = calibrate_model(run.scoring_network, run.manifest, run.cache_dir,
                                   published=published, device=run.device,
                                   include_synthetic=config.synthetic_supervision)
        if config.tag_min_present_landmarks:
            settings = dataclasses.replace(
                settings, tag_min_present_landmarks=dict(config.tag_min_present_landmarks))
    except ModelError as exc:
        logger.warning("no model package written: %s", exc)
        return None, None
    package = run.out / "model"
    save_package(package, state_dict=run.scoring_network.state_dict(),
                 config=_package_config(config, run.manifest), settings=settings,
                 model_card=_model_card(config, run.manifest, run.step, run.metrics),
                 export_onnx=config.export_onnx, overwrite=True)
    return package, settings


def run_training_from_file(config_path: str | os.PathLike[str], *,
                           out_dir: str | os.PathLike[str] | None = None,
                           resume: bool = True) -> TrainResult:
    """Load a YAML/JSON :class:`TrainConfig` and :func:`train`; default ``out_dir`` is
    ``./runs/<config name>``."""
    config = load_train_config(Path(config_path))
    return train(config, out_dir=out_dir or Path("runs") / config.name, resume=resume)

