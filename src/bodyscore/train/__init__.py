"""Training flow (thesis sec. 4.1): data cache → Δh sampling → losses → augmentations → trainer
→ calibration → model package.

Modules: :mod:`~bodyscore.train.config` (:class:`TrainConfig`, YAML/JSON),
:mod:`~bodyscore.train.data` (:func:`prepare_data`, manifest, Dataset),
:mod:`~bodyscore.train.sampling`, :mod:`~bodyscore.train.losses`,
:mod:`~bodyscore.train.augment`, :mod:`~bodyscore.train.trainer` (:func:`train`,
:func:`run_training_from_file`), :mod:`~bodyscore.train.calibrate`.

Names are imported lazily; torch is imported only when training or scoring runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Manifest",
    "TrainConfig",
    "TrainResult",
    "calibrate_model",
    "load_train_config",
    "prepare_data",
    "run_training_from_file",
    "train",
]

_LAZY = {
    "Manifest": "bodyscore.train.data",
    "prepare_data": "bodyscore.train.data",
    "TrainConfig": "bodyscore.train.config",
    "load_train_config": "bodyscore.train.config",
    "TrainResult": "bodyscore.train.trainer",
    "train": "bodyscore.train.trainer",
    "run_training_from_file": "bodyscore.train.trainer",
    "calibrate_model": "bodyscore.train.calibrate",
}

if TYPE_CHECKING:
    from bodyscore.train.calibrate import calibrate_model
    from bodyscore.train.config import TrainConfig, load_train_config
    from bodyscore.train.data import Manifest, prepare_data
    from bodyscore.train.trainer import TrainResult, run_training_from_file, train


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bodyscore.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
