"""Per-volume training signals besides the landmark annotations (issue 17).

* :func:`sampling_region` — the body region a volume is drawn under by the region-balanced
  sampling (:func:`bodyscore.train.sampling.region_epoch_order`);
* :func:`with_lung_anchors` — automatic ``lung_start`` / ``lung_end`` anchors from HU
  (:mod:`bodyscore.train.auto_anchors`), cached next to the training cache;
* :func:`training_boundaries` — the OpenKBP contour boundaries of the training volumes for the
  correspondence term (:mod:`bodyscore.train.correspondence`; thesis sec. 4.1.3, the
  independence condition).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.export.atomic import atomic_write_text
from bodyscore.preprocess import PreprocessingConfig
from bodyscore.train.config import TrainConfig
from bodyscore.train.data import VolumeEntry, is_synthetic
from bodyscore.train.sources import dominant_region, match_rule

__all__ = ["LUNG_ANCHOR_CACHE", "sampling_region", "training_boundaries", "with_lung_anchors"]

logger = logging.getLogger(__name__)


def sampling_region(entry: VolumeEntry, rules: Mapping[str, str]) -> str:
    """Body region of a training volume for the region-balanced sampling: the config's rule
    (``volume_regions``), else its dominant coarse region label, else ``"synthetic"`` or
    ``"unlabelled"``."""
    if is_synthetic(entry.volume_id):
        return "synthetic"
    return (match_rule(rules, entry.volume_id) or dominant_region(entry.regions)
            or "unlabelled")


LUNG_ANCHOR_CACHE = "lung-anchors.json"


def with_lung_anchors(entries: Sequence[VolumeEntry], cache_dir: Path,
                      preprocessing: Mapping[str, Any]) -> tuple[VolumeEntry, ...]:
    """The entries with ``lung_start`` / ``lung_end`` found from HU added where a volume does
    not annotate them and the image makes them unambiguous
    (:func:`bodyscore.train.auto_anchors.lung_anchors_from_cache`). Only the training
    dataset gets them: the calibration keeps to the annotated landmarks. Detections are
    stored in ``cache_dir/lung-anchors.json`` (keyed by the cached file's source size,
    mtime and slice count), so folds sharing a cache detect once."""
    from bodyscore.train.auto_anchors import lung_anchors_from_cache

    config = PreprocessingConfig.from_dict(dict(preprocessing))
    store_path = cache_dir / LUNG_ANCHOR_CACHE
    try:
        store = json.loads(store_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        store = {}
    out, added, changed = [], 0, False
    for entry in entries:
        if is_synthetic(entry.volume_id) or {"lung_start", "lung_end"} <= set(entry.landmarks):
            out.append(entry)
            continue
        key = f"{entry.source_bytes}:{entry.source_mtime_ns}:{entry.n_slices}"
        known = store.get(entry.volume_id)
        if not (isinstance(known, dict) and known.get("key") == key):
            found = lung_anchors_from_cache(
                np.load(cache_dir / entry.file, mmap_mode="r"), preprocessing=config,
                z_spacing_mm=entry.z_spacing_mm)
            known = store[entry.volume_id] = {"key": key, "anchors": found}
            changed = True
        new = {k: float(v) for k, v in known["anchors"].items() if k not in entry.landmarks}
        added += len(new)
        out.append(dataclasses.replace(entry, landmarks={**entry.landmarks, **new}))
    if changed:
        atomic_write_text(store_path, json.dumps(store, indent=1, sort_keys=True))
    logger.info("automatic lung anchors: %d added to %d training volumes", added, len(entries))
    return tuple(out)


def training_boundaries(config: TrainConfig, entries: Sequence[VolumeEntry]
                         ) -> dict[int, dict[str, float]]:
    """Dataset position → contour boundary → cached slice index, for the correspondence
    term (the stored index k of ``structures.json`` is the canonical index of the RAS+
    volumes it describes)."""
    if not (config.correspondence_weight and config.structure_files):
        return {}
    from bodyscore.train.correspondence import read_structure_boundaries

    n_slices = {e.volume_id: e.n_slices for e in entries}
    found: dict[str, dict[str, float]] = {}
    for path in config.structure_files:
        found.update(read_structure_boundaries(path, n_slices=n_slices))
    out = {i: dict(found[e.volume_id]) for i, e in enumerate(entries)
           if found.get(e.volume_id)}
    logger.info("correspondence term: %d training volumes with contour boundaries", len(out))
    return out
