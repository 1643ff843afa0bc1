"""k-fold cross-validation of a training recipe on the real CT set (issue 11: honest evaluation).

Run from the repository root::

    python benchmarks/accuracy/cross_validate.py --config configs/default.yaml --folds 5 \
        --steps 500 --threads 1 -o runs/cv/default
    cp runs/cv/default/cv.md runs/cv/default/cv.json benchmarks/accuracy/cv/

1. The real volumes are the config's ``sources``; volumes of one ``groups`` entry (one body,
   e.g. ``vhf_head`` + ``vhf_knee_leg``) stay together. Groups are dealt to k folds
   (:func:`assign_folds`): seeded order within each body region (the region with most labelled
   slices in ``landmarks.json``), regions in anatomical order, each group to the fold with the
   fewest volumes (then the fewest of its region), so heads, chests and pelvis crops spread
   over the folds. The table is written to ``<out>/folds.json``; a changed table in an existing
   output folder is an error (use a new folder).
2. Fold i trains with ``holdout`` = its volumes (never trained, validated or calibrated on) and
   ``train_only`` = every other real volume, ``--steps`` steps with the base learning-rate
   milestones scaled by ``steps / base max_steps`` (:func:`scale_milestones`), validation
   only at the end, and one data cache shared by all runs with the same preprocessing and
   synthetic settings (``<out>/../cache-<hash>``, :func:`cache_key`). Training resumes from
   ``<out>/fold-i/checkpoint.pt``; a fold with ``<out>/fold-i/result.json`` is skipped.
3. The fold's package is evaluated on its held-out volumes with the per-volume evaluation of
   ``evaluate_model.py`` (landmark MAE vs the published scale, LMSE eq. 4.13–4.15, 5-class
   accuracy table 4.5, region accuracy, monotonicity, flip checks, body-part tag).
4. ``<out>/cv.json`` and ``<out>/cv.md`` aggregate the folds present (:func:`aggregate`):
   landmark MAE ± SE over landmarks (pooled over all held-out volumes), LMSE and accuracies
   ± SE over volumes, check counts and MAE per body region (:func:`landmark_region`).

Variants (``--variant``, presets of config overrides; ``--set key=JSON`` adds more, applied
after the preset): see :data:`VARIANTS`. Each variant belongs in its own output folder.
Two processes may run disjoint folds at once (``--only-folds 0,2 --threads 1``): the shared
cache is prepared under a file lock.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import hashlib
import importlib.util
import json
import logging
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from bodyscore.errors import BodyscoreError, InputError  # noqa: E402
from bodyscore.evaluate import metrics as m  # noqa: E402
from bodyscore.evaluate.landmarks import (  # noqa: E402
    VolumeAnnotation,
    read_landmark_files,
    volume_id_from_path,
)
from bodyscore.export.atomic import atomic_write_text  # noqa: E402
from bodyscore.preprocess import PreprocessingConfig  # noqa: E402
from bodyscore.train.config import TrainConfig, load_train_config  # noqa: E402

log = logging.getLogger("cross_validate")


def load_benchmark_module(name: str) -> ModuleType:
    """A module of this folder (``evaluate_model.py``, ``real_checks.py``), imported by path
    (benchmarks is no package)."""
    path = Path(__file__).resolve().with_name(name)
    spec = importlib.util.spec_from_file_location(f"bodyscore_benchmark_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot import the shared evaluation")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


em = load_benchmark_module("evaluate_model.py")
rc = load_benchmark_module("real_checks.py")

#: Config overrides of each ``--variant`` (ablations of issue 11).
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no-synthetic": {"synthetic_volumes": 0},
    "with-synthetic": {"synthetic_volumes": 40},
    "no-anchors": {"anchor_weight": 0.0, "region_weight": 0.0},
    "no-regions": {"region_weight": 0.0},
    "no-augment": {"transform_params": {}},
    "vgg": {"model": {"base_model": "vgg"}},
    "res64": {"preprocessing": {"size": 64, "target_spacing_mm": 7.0}},
    "slope-band": {"slope_weight": 1.0},
    "slope-band-synthetic": {"slope_weight": 1.0, "synthetic_volumes": 8},
    "slope-band-synthetic-share": {"slope_weight": 1.0, "synthetic_volumes": 40,
                                   "synthetic_share": 0.15},
    "slope-band-synthetic-order": {"slope_weight": 1.0, "synthetic_volumes": 40,
                                   "synthetic_share": 0.3, "synthetic_supervision": False},
    # issue 17 (fifth round), against configs/default.yaml 2026.12.1 (paths relative to the
    # repository root)
    "no-correspondence": {"correspondence_weight": 0.0},
    "no-lung-anchors": {"auto_lung_anchors": False},
    "no-new-signals": {"correspondence_weight": 0.0, "auto_lung_anchors": False},
    "uniform-sampling": {"unlabelled_share": None, "batch_size": 8,
                         "correspondence_weight": 0.0, "auto_lung_anchors": False},
    "annotated-only": {"unlabelled_sources": [], "weak_label_files": [],
                       "region_balanced": False, "unlabelled_share": None, "batch_size": 8,
                       "correspondence_weight": 0.0, "auto_lung_anchors": False},
    "res128": {"preprocessing": {}},
}

#: Coarse regions of landmarks.json in anatomical order (caudal → cranial).
REGION_ORDER: tuple[str, ...] = ("legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head")

#: Body regions of the per-region MAE, with the published landmark that ends each (inclusive
#: upper bound ``<=`` or exclusive ``<``); above the last bound: "head".
REGION_BOUNDS: tuple[tuple[str, str, bool], ...] = (
    ("legs", "pelvis_start", False),   # score < pelvis_start
    ("pelvis", "pelvis_end", True),    # pelvis_start <= score <= pelvis_end
    ("abdomen", "lung_start", False),  # pelvis_end < score < lung_start
    ("chest", "lung_end", True),       # lung_start <= score <= lung_end
    ("neck", "C1", True),              # lung_end < score <= C1
)

VALIDATE_NEVER_BEFORE_END = 10**9

#: OpenKBP contour extents of the shared data (independence figure, thesis table 5.10).
SHARED_STRUCTURES = (ROOT.parent / "shared" / "data" / "ct-unlabelled" / "openkbp"
                     / "structures.json")


# -- folds ---------------------------------------------------------------------------------------
def volume_region(annotation: VolumeAnnotation | None) -> str:
    """The coarse region with the most labelled slices of a volume; "unknown" without labels.

    Ties go to the more caudal region (:data:`REGION_ORDER`).
    """
    counts: dict[str, int] = {}
    for region in annotation.regions if annotation is not None else ():
        counts[region.label] = counts.get(region.label, 0) + region.k_last - region.k_first + 1
    if not counts:
        return "unknown"
    return max(sorted(counts, key=_region_rank), key=lambda label: counts[label])


def _region_rank(region: str) -> int:
    return REGION_ORDER.index(region) if region in REGION_ORDER else len(REGION_ORDER)


def assign_folds(groups: Mapping[str, Sequence[str]], regions: Mapping[str, str], *,
                 n_folds: int, seed: int) -> dict[str, int]:
    """Deal groups of volumes to folds, keeping each group whole (module docstring, point 1).

    Parameters
    ----------
    groups : mapping of str to sequence of str
        Group name → its volume ids.
    regions : mapping of str to str
        Group name → body region (:data:`REGION_ORDER`; others sort last).
    n_folds : int
        k, at least 2 and at most the number of groups.
    seed : int
        Seeds the order of the groups within a region.

    Returns
    -------
    dict of str to int
        Group name → fold index in [0, k).
    """
    if not 2 <= n_folds <= len(groups):
        raise InputError(f"--folds {n_folds}: need 2 <= folds <= {len(groups)} groups; "
                         "choose fewer folds")
    names = sorted(groups)
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    ordered = sorted(shuffled, key=lambda g: _region_rank(regions.get(g, "unknown")))
    size = [0] * n_folds
    per_region: list[dict[str, int]] = [{} for _ in range(n_folds)]
    out: dict[str, int] = {}
    for group in ordered:
        region = regions.get(group, "unknown")
        fold = min(range(n_folds), key=lambda f: (size[f], per_region[f].get(region, 0), f))
        out[group] = fold
        size[fold] += len(groups[group])
        per_region[fold][region] = per_region[fold].get(region, 0) + 1
    return out


def _group_members(ids: Sequence[str], groups: Mapping[str, str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for vid in ids:
        members.setdefault(groups.get(vid, vid), []).append(vid)
    return members


def _group_regions(members: Mapping[str, Sequence[str]],
                   annotations: Mapping[str, VolumeAnnotation]) -> dict[str, str]:
    out = {}
    for group, vids in members.items():
        merged = tuple(r for v in vids for r in (annotations[v].regions if v in annotations
                                                   else ()))
        out[group] = volume_region(VolumeAnnotation(group, None, {}, merged))
    return out


def fold_table(config: TrainConfig, annotations: Mapping[str, VolumeAnnotation], *,
               n_folds: int, weak: Mapping[str, VolumeAnnotation] | None = None
               ) -> list[dict[str, Any]]:
    """Folds of the config's real volumes: ``[{"fold", "groups", "volumes", "regions",
    "unlabelled"}]``.

    The annotated ``sources`` are dealt first, exactly as without unlabelled volumes (so the
    annotated folds of older cross-validations stay comparable, volume by volume); then the
    ``unlabelled_sources``: a volume of a group already dealt joins its fold (one body, one
    fold), the other groups are dealt the same way among themselves (regions from the weak
    labels ``weak``). ``volumes`` lists every held-out volume, ``unlabelled`` those without
    landmarks.
    """
    ids = [volume_id_from_path(s) for s in config.sources]
    if not ids:
        raise InputError("train config: no real volumes in 'sources'; list the CT files")
    members = _group_members(ids, config.groups)
    assignment = assign_folds(members, _group_regions(members, annotations),
                              n_folds=n_folds, seed=config.seed)
    unlabelled = [volume_id_from_path(s) for s in config.unlabelled_sources]
    loose = _group_members(unlabelled, config.groups)
    joined = {g: assignment[g] for g in loose if g in assignment}
    free = {g: v for g, v in loose.items() if g not in joined}
    if len(free) == 1:  # assign_folds needs two groups: the lone one goes to fold 0
        joined |= dict.fromkeys(free, 0)
    elif free:
        joined |= assign_folds(free, _group_regions(free, weak or {}),
                               n_folds=min(n_folds, len(free)), seed=config.seed)
    everyone = {**members, **{g: [*members.get(g, []), *v] for g, v in loose.items()}}
    labels = {**(weak or {}), **annotations}
    return [{
        "fold": f,
        "groups": sorted(g for g, a in {**joined, **assignment}.items() if a == f),
        "volumes": sorted(v for g, a in {**joined, **assignment}.items() if a == f
                          for v in everyone[g]),
        "regions": {v: volume_region(labels.get(v)) for g, a in sorted(assignment.items())
                    if a == f for v in members[g]},
        "unlabelled": sorted(v for g, a in joined.items() if a == f for v in loose[g]),
    } for f in range(n_folds)]


# -- configs -------------------------------------------------------------------------------------
def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["key=JSON", ...]`` → ``{key: value}`` (``--set lr=0.0003``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=JSON; e.g. --set lr=0.0003")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--set {item!r}: the value is not JSON ({exc.msg}); quote "
                             "strings, e.g. --set 'device=\"cpu\"'") from exc
    return out


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with plain-JSON ``overrides`` (validated as a config file is)."""
    if not overrides:
        return config
    return TrainConfig.from_dict({**config.to_dict(), **overrides}, where="overrides")


def variant_config(base: TrainConfig, variant: str,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The base config with the preset of ``variant`` (:data:`VARIANTS`), then ``overrides``."""
    if variant not in VARIANTS:
        raise InputError(f"--variant {variant!r}: unknown; choose one of {sorted(VARIANTS)}")
    return apply_overrides(apply_overrides(base, VARIANTS[variant]), overrides or {})


def scale_milestones(milestones: Sequence[tuple[int, float]], *, steps: int,
                     base_steps: int) -> tuple[tuple[int, float], ...]:
    """Learning-rate milestones moved proportionally: step s → round(s · steps / base_steps)."""
    return tuple((round(step * steps / base_steps), float(rate))
                 for step, rate in milestones)


def cache_key(config: TrainConfig) -> str:
    """Hash of what the prepared data depend on: the volume files, preprocessing and the
    synthetic volumes (count, settings, seed). Same key → the cache can be shared (recipes
    with other volumes get their own: a run rewrites the cache's manifest with its own
    volumes, and another run's volumes would be prepared again)."""
    content = {
        "sources": sorted(map(str, (*config.sources, *config.unlabelled_sources))),
        "preprocessing": PreprocessingConfig.from_dict(config.preprocessing).to_dict(),
        "synthetic_volumes": config.synthetic_volumes,
        "synthetic_config": dict(config.synthetic_config) if config.synthetic_volumes else {},
        "seed": config.seed if config.synthetic_volumes else None,
    }
    text = json.dumps(content, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fold_config(config: TrainConfig, fold: Mapping[str, Any], *, steps: int, out: Path,
                variant: str, threads: int | None = None) -> TrainConfig:
    """The training config of one fold (module docstring, point 2)."""
    held = list(fold["volumes"])
    real = [volume_id_from_path(s) for s in (*config.sources, *config.unlabelled_sources)]
    return config.replace(
        name=f"{config.name}-cv-{variant}-fold{fold['fold']}",
        holdout=tuple(held),
        train_only=tuple(v for v in real if v not in held),
        max_steps=steps,
        lr_milestones=scale_milestones(config.lr_milestones, steps=steps,
                                       base_steps=config.max_steps),
        checkpoint_every=min(config.checkpoint_every, steps),
        validate_every=VALIDATE_NEVER_BEFORE_END,
        cache_dir=str(out.resolve().parent / f"cache-{cache_key(config)}"),
        num_threads=threads if threads is not None else config.num_threads,
    )


# -- training and evaluation of one fold --------------------------------------------------------
@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_cache_preparation() -> None:
    """Serialise the trainer's cache preparation between processes sharing a cache.

    Two folds preparing one cache at once would both generate the synthetic volumes and
    rewrite ``manifest.json`` (each fold keeps the manifest it made, ``trainer._prepare``, so
    the split itself cannot leak; the lock keeps the work from being done twice).
    """
    from bodyscore.train import trainer

    original = trainer._prepare
    if getattr(original, "_cv_locked", False):
        return

    def locked(config: TrainConfig, cache_dir: Path, dist_info: Any) -> Any:
        with _file_lock(Path(cache_dir).with_name(Path(cache_dir).name + ".lock")):
            return original(config, cache_dir, dist_info)

    locked._cv_locked = True  # type: ignore[attr-defined]
    trainer._prepare = locked


def run_training(config: TrainConfig, out_dir: Path) -> Any:
    """:func:`bodyscore.train.trainer.train` (resumes from its checkpoint); a seam for tests."""
    from bodyscore.train.trainer import train

    _lock_cache_preparation()
    return train(config, out_dir=out_dir)


def _finished_training(fold_dir: Path) -> Any:
    """What :func:`run_training` returned for a fold whose ``result.json`` exists."""
    from types import SimpleNamespace

    previous = json.loads((fold_dir / "result.json").read_text(encoding="utf-8"))
    train = previous["train"]
    return SimpleNamespace(package_dir=previous["model_dir"], seconds=train["seconds"],
                           step=train["step"], log_path=fold_dir / "train_log.csv",
                           resumed_from=train["resumed_from"], last_loss=train["last_loss"])


def _check_no_leak(package: Path, held: Sequence[str]) -> None:
    """Fail when the package's model card lists a held-out volume in another split."""
    card = package / "model-card.md"
    if not card.is_file():
        log.warning("%s: no model card; split of the held-out volumes not verified", package)
        return
    for line in card.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in held and cells[1] != "test":
            raise InputError(f"{card}: held-out volume {cells[0]} is in split {cells[1]!r}; "
                             "the fold leaked, delete the fold folder and run it again")


def _logged_seconds(log: Path) -> float | None:
    """Seconds the training log records at its last step (``None`` without a log). Unlike the
    seconds of the last :func:`train` call, it survives re-packaging a finished fold."""
    try:
        with log.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return None
    return float(rows[-1]["seconds"]) if rows and rows[-1].get("seconds") else None


def _training_seconds(train: dict[str, Any]) -> float | None:
    logged = train.get("logged_seconds")
    return logged if logged is not None else train.get("seconds")


def run_fold(config: TrainConfig, fold: Mapping[str, Any], *, annotations: Mapping[str, Any],
             files: Mapping[str, Path], out: Path, steps: int, variant: str,
             boundaries: Mapping[str, Mapping[str, float]] | None = None,
             weak_labels: Mapping[str, VolumeAnnotation] | None = None,
             train: bool = True) -> dict[str, Any]:
    """Train (or resume) one fold, evaluate it on its held-out volumes, write result.json.

    Annotated volumes get the landmark metrics and checks of ``evaluate_model.py`` and the
    z-spacing replay; unlabelled ones the monotony checks and, with ``boundaries`` (volume
    id → contour boundary → slice index) and ``weak_labels`` (their coarse regions), the
    scores at their contour boundaries and the region checks. ``train`` False re-evaluates
    the package of a finished fold (``--re-evaluate``) without training.
    """
    from bodyscore.model import load_model

    fold_dir = out / f"fold-{fold['fold']}"
    result = run_training(config, fold_dir) if train else _finished_training(fold_dir)
    if result.package_dir is None:
        raise InputError(f"{fold_dir}: training wrote no model package (calibration failed, "
                         "see the log); fix the recipe and run the fold again")
    package = Path(result.package_dir)
    _check_no_leak(package, fold["volumes"])
    model = load_model(package, threads=config.num_threads)
    held = {v: annotations[v] for v in fold["volumes"] if v in annotations}
    evaluation = em.evaluate_volumes(
        model, held, {v: files[v] for v in held}, published=em.published_table(),
        cache=fold_dir / "eval-cache", split=dict.fromkeys(held, "test"))
    evaluation["z_spacing_replay"] = {
        v: rc.z_spacing_replay(files[v], model) for v in sorted(held)
        if evaluation["volumes"][v]["z_extent_mm"] >= rc.MIN_EXTENT_MM}
    evaluation["unlabelled"] = {}
    for vid in fold.get("unlabelled", ()):
        log.info("monotony checks on held-out %s", vid)
        weak = weak_labels.get(vid) if weak_labels else None
        evaluation["unlabelled"][vid] = rc.monotony_checks(
            files[vid], model, positions=(boundaries or {}).get(vid),
            regions=[(r.k_first, r.k_last, r.label) for r in (weak.regions if weak else ())])
    data = {
        "fold": fold["fold"], "variant": variant, "volumes": list(fold["volumes"]),
        "groups": list(fold["groups"]), "steps": steps, "model_dir": str(package),
        "train": {"seconds": round(float(result.seconds), 1), "step": int(result.step),
                  "logged_seconds": _logged_seconds(Path(result.log_path)),
                  "resumed_from": int(result.resumed_from),
                  "last_loss": _num(result.last_loss)},
        "evaluation": evaluation,
    }
    atomic_write_text(fold_dir / "result.json", json.dumps(data, indent=2, allow_nan=False))
    return data


# -- aggregation ---------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _mean_se(values: Sequence[float]) -> dict[str, Any]:
    return m.mean_with_se(values).to_dict()


def landmark_region(name: str, published: Mapping[str, float]) -> str:
    """Body region of a landmark by its published score (:data:`REGION_BOUNDS`)."""
    table = m.canonical_table(published)
    score = table[m.canonical_landmark_name(name)]
    for region, boundary, inclusive in REGION_BOUNDS:
        if score < table[boundary] or (inclusive and score == table[boundary]):
            return region
    return "head"


def _landmarks(fold: Mapping[str, Any], confidence: str, reference: str) -> dict[str, Any]:
    block = fold["evaluation"]["landmarks"].get(confidence, {})
    return dict(block.get(reference, {}).get("per_volume", {}))


def aggregate_real(folds: Mapping[int, Mapping[str, Any]], regions: Mapping[str, str]
                   ) -> dict[str, Any]:
    """Figures over every held-out real volume, annotated or not (issue 17, item 3).

    ``monotony``: increasing / reversed copy flagged (volumes >= 10 cm) overall, per body
    region (``regions``) and per slice-thickness class; ``independence``: thesis table 5.10
    over the held-out volumes with contour boundaries; ``z_spacing_replay``: the check's
    verdicts with the header's z spacing scaled by 1 + γ (annotated volumes >= 10 cm);
    ``mae_per_thickness``: landmark MAE (medium/high confidence) per thickness class.
    """
    checks: dict[str, Mapping[str, Any]] = {}
    boundary_scores: dict[str, Mapping[str, float | None]] = {}
    replays: dict[str, Mapping[str, bool | None]] = {}
    unlabelled_replays: dict[str, Mapping[str, bool | None]] = {}
    thickness_errors: dict[str, list[float]] = {}
    for fold in folds.values():
        evaluation = fold["evaluation"]
        checks.update(evaluation["volumes"])
        checks.update(evaluation.get("unlabelled", {}))
        boundary_scores.update({v: c["position_scores"] for v, c in
                                evaluation.get("unlabelled", {}).items()
                                if c.get("position_scores")})
        replays.update(evaluation.get("z_spacing_replay", {}))
        unlabelled_replays.update({v: c["z_spacing_replay"] for v, c in
                                   evaluation.get("unlabelled", {}).items()
                                   if c.get("z_spacing_replay")})
        for vid, v in _landmarks(fold, "medium_high", "vs_published").items():
            spacing = evaluation["volumes"].get(vid, {}).get("z_spacing_mm")
            if spacing is not None:
                thickness_errors.setdefault(rc.thickness_class(spacing), []).extend(
                    abs(e) for e in v["errors"].values() if e is not None)
    thickness = {v: rc.thickness_class(c["z_spacing_mm"]) for v, c in checks.items()
                 if c.get("z_spacing_mm") is not None}
    return {
        "monotony": {
            "overall": rc.group_rates(checks, dict.fromkeys(checks, "all"))["all"]
            if checks else {},
            "per_region": rc.group_rates(checks, {v: regions.get(v, "unknown") for v in checks}),
            "per_thickness": rc.group_rates(checks, thickness),
        },
        "independence": rc.independence_table(boundary_scores),
        "z_spacing_replay": rc.replay_rates(replays),
        "z_spacing_replay_unlabelled": rc.replay_rates(unlabelled_replays),
        "legs": rc.legs_summary(checks),
        "mae_per_thickness": {k: _mean_se(v) for k, v in sorted(thickness_errors.items())},
    }


def aggregate(folds: Mapping[int, Mapping[str, Any]], *, n_folds: int,
              published: Mapping[str, float], header: Mapping[str, Any],
              regions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Pool the fold results (``result.json`` contents) into the cross-validation summary.

    Landmark MAE is the mean of |error| over every (held-out volume, landmark) pair vs the
    published scale, ± SE over those pairs; LMSE (vs each fold's own reference table), 5-class
    and region accuracy are means over volumes ± SE over volumes (eq. 4.14–4.15).
    """
    rows: dict[str, dict[str, Any]] = {}
    errors: dict[str, list[tuple[str, float]]] = {"medium_high": [], "low": []}
    lmse: list[float] = []
    accuracy: list[float] = []
    region_acc: list[float] = []
    checks: list[dict[str, Any]] = []
    for index in sorted(folds):
        fold = folds[index]
        own = _landmarks(fold, "medium_high", "vs_own_table")
        for conf in errors:
            for v in _landmarks(fold, conf, "vs_published").values():
                errors[conf] += [(name, abs(e)) for name, e in v["errors"].items()
                                 if e is not None]
        for vid, c in sorted(fold["evaluation"]["volumes"].items()):
            pub = _landmarks(fold, "medium_high", "vs_published").get(vid, {})
            low = _landmarks(fold, "low", "vs_published").get(vid, {})
            row = {"fold": index, **{k: c.get(k) for k in (
                "tag", "tag_ok", "increasing", "reversed_copy_flagged",
                "consistent_flip_flagged", "consistent_flip_same_scores", "z_extent_mm")},
                "mae": pub.get("mae"), "n_landmarks": pub.get("n_landmarks", 0),
                "mae_low": low.get("mae"), "lmse": own.get(vid, {}).get("lmse"),
                "accuracy": pub.get("accuracy"),
                "region_accuracy": c.get("region_accuracy", pub.get("region_accuracy"))}
            rows[vid] = row
            checks.append(c)
            for values, key in ((lmse, "lmse"), (accuracy, "accuracy"),
                                (region_acc, "region_accuracy")):
                if row[key] is not None:
                    values.append(row[key])
    per_region: dict[str, list[float]] = {}
    for name, err in errors["medium_high"]:
        per_region.setdefault(landmark_region(name, published), []).append(err)
    present = sorted(folds)
    missing = [f for f in range(n_folds) if f not in folds]
    return {
        **header,
        "folds_present": present,
        "incomplete": bool(missing),
        "missing_folds": missing,
        "train_seconds": {str(f): _training_seconds(folds[f].get("train", {})) for f in present},
        "overall": {
            "mae": _mean_se([e for _, e in errors["medium_high"]]),
            "mae_low_confidence": _mean_se([e for _, e in errors["low"]]),
            "lmse": _mean_se(lmse),
            "accuracy_5class": _mean_se(accuracy),
            "region_accuracy": _mean_se(region_acc),
            "checks": em.set_checks(checks) if checks else {},
        },
        "per_region_mae": {r: _mean_se(per_region[r]) for r in
                           (*(b[0] for b in REGION_BOUNDS), "head") if r in per_region},
        "landmark_regions": {n: landmark_region(n, published)
                             for n in sorted(m.canonical_table(published))},
        "volumes": rows,
        "real_volumes": aggregate_real(folds, regions or {}),
    }


def _fmt(x: Any, digits: int = 2, scale: float = 1.0) -> str:
    return "–" if x is None else f"{scale * x:.{digits}f}"


def _pm(stat: Mapping[str, Any], digits: int = 2, scale: float = 1.0) -> str:
    return (f"{_fmt(stat['mean'], digits, scale)} ± {_fmt(stat['se'], digits, scale)} "
            f"(n={stat['n']})")


def _yes(flag: Any, yes: str = "✓", no: str = "✗") -> str:
    return "–" if flag is None else (yes if flag else no)


def render_markdown(cv: Mapping[str, Any]) -> str:
    """``cv.md``: header, overall rows, per-region MAE and the per-volume table."""
    lines = [f"# Cross-validation: variant `{cv['variant']}`, {cv['folds']} folds, "
             f"{cv['steps']} steps", ""]
    if cv["incomplete"]:
        lines += [f"**incomplete: folds {', '.join(map(str, cv['missing_folds']))} missing**", ""]
    lines += [f"- date: {cv['date']}", f"- git commit: {cv['git_commit']}",
              f"- data: landmarks.json sha256 {cv['data_version']['landmarks_sha256'][:16]}…, "
              f"sources sha256 {cv['data_version']['sources_sha256'][:16]}…",
              f"- command: `{cv['command']}`",
              "- train seconds per fold: " + ", ".join(
                  f"{f}: {_fmt(s, 0)}" for f, s in cv["train_seconds"].items()), ""]
    o = cv["overall"]
    lines += ["## Overall (held-out volumes of all folds)", "", "| metric | value |", "|---|---|",
              f"| landmark MAE vs published scale, medium/high confidence (score units, ± SE "
              f"over landmarks) | {_pm(o['mae'])} |",
              f"| landmark MAE, low confidence | {_pm(o['mae_low_confidence'])} |",
              f"| LMSE vs own table (eq. 4.13–4.15, ± SE over volumes) | {_pm(o['lmse'], 3)} |",
              f"| 5-class accuracy (table 4.5), % | {_pm(o['accuracy_5class'], 1, 100)} |",
              f"| region accuracy per slice, % | {_pm(o['region_accuracy'], 1, 100)} |"]
    lines += [f"| {k} | {v} |" for k, v in o["checks"].items()]
    lines += ["", "## Landmark MAE per body region (medium/high confidence)", "",
              "| region | MAE ± SE (n landmarks) |", "|---|---|"]
    lines += [f"| {r} | {_pm(s)} |" for r, s in cv["per_region_mae"].items()]
    lines += _real_markdown(cv.get("real_volumes"))
    lines += ["", "Region of a landmark: by its published score — legs < pelvis_start ≤ pelvis ≤ "
              "pelvis_end < abdomen < lung_start ≤ chest ≤ lung_end < neck ≤ C1 < head.", "",
              "## Per volume", "",
              "| volume | fold | MAE (n) | MAE low | LMSE | 5-class acc. % | region acc. % | tag "
              "| increasing | reversed copy flagged | flipped copy not flagged / same |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for vid, r in sorted(cv["volumes"].items()):
        lines.append(
            f"| {vid} | {r['fold']} | {_fmt(r['mae'])} ({r['n_landmarks']}) | "
            f"{_fmt(r['mae_low'])} | {_fmt(r['lmse'], 3)} | {_fmt(r['accuracy'], 1, 100)} | "
            f"{_fmt(r['region_accuracy'], 1, 100)} | {r['tag']} {_yes(r['tag_ok'])} | "
            f"{_yes(r['increasing'])} | {_yes(r['reversed_copy_flagged'])} | "
            f"{_yes(not r['consistent_flip_flagged'])} / "
            f"{_yes(r['consistent_flip_same_scores'])} |")
    return "\n".join(lines) + "\n"


def _real_markdown(real: Mapping[str, Any] | None) -> list[str]:
    """The sections of :func:`aggregate_real` (none for older results without them)."""
    if not real:
        return []
    mono = real["monotony"]
    lines = ["", "## Every held-out real volume (annotated and unlabelled, >= 10 cm)", "",
             "| group | volumes | increasing | reversed copy flagged |", "|---|---|---|---|"]
    rows = [("all", mono["overall"])] if mono["overall"] else []
    rows += [(f"region: {k}", v) for k, v in mono["per_region"].items()]
    rows += [(f"slices {k}", v) for k, v in mono["per_thickness"].items()]
    lines += [f"| {name} | {r.get('n_volumes', '–')} | {rc.format_rate(r.get('increasing'))} | "
              f"{rc.format_rate(r.get('reversed_copy_flagged'))} |" for name, r in rows]
    lines += ["", "## Landmark MAE per slice thickness (annotated volumes)", "",
              "| slices | MAE ± SE (n landmarks) |", "|---|---|"]
    lines += [f"| {k} | {_pm(v)} |" for k, v in real["mae_per_thickness"].items()]
    lines += ["", "## z-spacing check, header z spacing × (1 + γ) (annotated volumes >= 10 cm; "
              "thesis sec. 5.2.3)", "", "| γ | flagged / defined (of total) |", "|---|---|"]
    lines += [f"| {g} | {r['flagged']}/{r['defined']} ({r['total']}) |"
              for g, r in real["z_spacing_replay"].items()]
    if real.get("z_spacing_replay_unlabelled"):
        lines += ["", "The same on the held-out unlabelled volumes >= 10 cm:", "",
                  "| γ | flagged / defined (of total) |", "|---|---|"]
        lines += [f"| {g} | {r['flagged']}/{r['defined']} ({r['total']}) |"
                  for g, r in real["z_spacing_replay_unlabelled"].items()]
    legs = real.get("legs", {})
    if legs.get("slices"):
        lines += ["", f"Slices labelled legs scoring below 0 (pelvis_start): "
                  f"{legs['below_zero']}/{legs['slices']} ("
                  + ", ".join(f"{v}: {r['below_zero']}/{r['slices']}"
                              for v, r in legs["per_volume"].items()) + ")"]
    ind = real["independence"]
    lines += ["", "## Independence: score std at contour boundaries over held-out patients "
              "(thesis table 5.10)", "",
              f"mean std over boundaries: {_fmt(ind['mean_std'])}", "",
              "| boundary | std | mean score | patients |", "|---|---|---|---|"]
    lines += [f"| {b} | {_fmt(r['std'])} | {_fmt(r['mean'])} | {r['n']} |"
              for b, r in ind["per_boundary"].items()]
    return lines


# -- provenance ----------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_version(config: TrainConfig) -> dict[str, str]:
    """sha256 of the landmark files and of the sorted "name size" lines of the sources."""
    lines = sorted(f"{Path(s).name} {Path(s).stat().st_size}" for s in config.sources)
    landmarks = hashlib.sha256()
    for path in config.landmark_files:
        landmarks.update(_sha256(Path(path)).encode())
    return {"landmarks_sha256": landmarks.hexdigest(),
            "sources_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository, plus " dirty" when the tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} dirty" if dirty else head


# -- command line --------------------------------------------------------------------------------
def _write_or_check_folds(out: Path, folds: list[dict[str, Any]]) -> None:
    """Write ``folds.json``, or check that an existing one has the same folds."""
    path = out / "folds.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if [f["volumes"] for f in old] != [f["volumes"] for f in folds]:
            raise InputError(f"{path}: the fold table differs from this config's; use a new "
                             "output folder (or delete the old one)")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(folds, indent=2))


def _present_results(out: Path, n_folds: int) -> dict[int, dict[str, Any]]:
    return {f: json.loads((out / f"fold-{f}" / "result.json").read_text(encoding="utf-8"))
            for f in range(n_folds) if (out / f"fold-{f}" / "result.json").is_file()}


def _parser() -> argparse.ArgumentParser:
    variants = "; ".join(f"{k}: {json.dumps(v) if v else 'config as is'}"
                         for k, v in VARIANTS.items())
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=f"Variants (config overrides): {variants}.")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500, help="training steps per fold")
    parser.add_argument("--variant", default="baseline", choices=sorted(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=JSON", help="extra config override (repeatable)")
    parser.add_argument("--only-folds", default=None, help="comma-separated fold indices")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (num_threads)")
    parser.add_argument("--label", default=None,
                        help="name of the run in cv.json and the ablation table (default: the "
                        "variant)")
    parser.add_argument("--re-evaluate", action="store_true",
                        help="evaluate the packages of finished folds again (no training)")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="only rebuild cv.json / cv.md from the fold results present")
    parser.add_argument("--structures", type=Path, action="append",
                        default=[SHARED_STRUCTURES] if SHARED_STRUCTURES.is_file() else [],
                        help="contour extents (structures.json) for the independence figure "
                        "when the config names none")
    parser.add_argument("-o", "--output", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring); 0 = all requested folds done, 1 = some fold failed,
    2 = bad input (message logged, no traceback)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return _run(args, argv)
    except BodyscoreError as exc:
        log.error("%s", exc)
        return 2


def _boundaries(files: Sequence[str | Path]) -> dict[str, dict[str, float]]:
    """Volume id → contour boundary → slice index, from ``structures.json`` files."""
    from bodyscore.train.correspondence import read_structure_boundaries

    out: dict[str, dict[str, float]] = {}
    for path in files:
        out.update(read_structure_boundaries(Path(path)))
    return out


def volume_regions(config: TrainConfig, labels: Mapping[str, VolumeAnnotation]
                   ) -> dict[str, str]:
    """Body region of every real volume for the per-region figures: the config's
    ``volume_regions`` rule, else the coarse region with most labelled slices."""
    from bodyscore.train.sources import match_rule

    ids = [volume_id_from_path(s) for s in (*config.sources, *config.unlabelled_sources)]
    return {v: match_rule(config.volume_regions, v) or volume_region(labels.get(v))
            for v in ids}


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    base = load_train_config(args.config)
    config = variant_config(base, args.variant, parse_overrides(args.overrides))
    # the protocol (folds, held-out volumes, their labels) is the base config's; a variant
    # changes what trains, so "no-unlabelled" is still checked on the held-out unlabelled CT
    annotations = read_landmark_files(base.landmark_files)
    weak = read_landmark_files(base.weak_label_files)
    folds = fold_table(base, annotations, n_folds=args.folds, weak=weak)
    out: Path = args.output
    _write_or_check_folds(out, folds)
    files = {volume_id_from_path(s): Path(s)
             for s in (*base.sources, *base.unlabelled_sources)}
    boundaries = _boundaries(base.structure_files or config.structure_files or args.structures)
    failed: list[int] = []
    if not args.aggregate_only:
        wanted = (range(args.folds) if args.only_folds is None
                  else [int(f) for f in args.only_folds.split(",") if f.strip()])
        for index in wanted:
            fold = folds[index]
            done = (out / f"fold-{index}" / "result.json").is_file()
            if done and not args.re_evaluate:
                log.info("fold %d: result.json present, skipped", index)
                continue
            cfg = fold_config(config, fold, steps=args.steps, out=out, variant=args.variant,
                              threads=args.threads)
            log.info("fold %d: training on %d real volumes, holding out %s", index,
                     len(cfg.train_only), ", ".join(fold["volumes"]))
            try:
                run_fold(cfg, fold, annotations=annotations, files=files, out=out,
                         steps=args.steps, variant=args.variant, boundaries=boundaries,
                         weak_labels=weak, train=not done)
            except InputError as exc:
                log.error("fold %d failed: %s", index, exc)
                failed.append(index)
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": git_commit(),
        "data_version": data_version(config),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None
        else shlex.join(["cross_validate.py", *argv]),
        "variant": args.label or args.variant, "preset": args.variant,
        "overrides": parse_overrides(args.overrides),
        "folds": args.folds, "steps": args.steps, "fold_table": folds,
        "config": config.to_dict(),
    }
    cv = aggregate(_present_results(out, args.folds), n_folds=args.folds,
                   published=em.published_table(), header=header,
                   regions=volume_regions(config, {**weak, **annotations}))
    atomic_write_text(out / "cv.json", json.dumps(cv, indent=2, allow_nan=False))
    atomic_write_text(out / "cv.md", render_markdown(cv))
    log.info("wrote %s and %s%s", out / "cv.json", out / "cv.md",
             f" (incomplete: folds {cv['missing_folds']} missing)" if cv["incomplete"] else "")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
