"""bodyscore: self-supervised body part regression for CT.

Every axial slice of a CT gets a continuous score on an anatomical scale (0 = start of the
pelvis, 100 = end of the eyes; Schuhegger, *Body Part Regression for CT Images*, 2021). From the
scores bodyscore derives the examined body part, crops volumes to a known region and checks the
slice order and z-spacing.

>>> import bodyscore
>>> result = bodyscore.predict("ct.nii.gz")          # doctest: +SKIP
>>> result.body_part_examined_tag                    # doctest: +SKIP
'CHEST-ABDOMEN'

Heavy modules (the model backends, torch) are imported lazily: ``import bodyscore`` stays fast
and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BodyscoreError",
    "InputError",
    "ModelError",
    "ScoreModel",
    "ScoreResult",
    "Volume",
    "__version__",
    "load_model",
    "predict",
    "read_volume",
]

# public name -> module that defines it (imported on first access, PEP 562)
_LAZY: dict[str, str] = {
    "BodyscoreError": "bodyscore.errors",
    "InputError": "bodyscore.errors",
    "ModelError": "bodyscore.errors",
    "ScoreResult": "bodyscore.result",
    "Volume": "bodyscore.volume",
    "read_volume": "bodyscore.io",
    "load_model": "bodyscore.model",
    "ScoreModel": "bodyscore.model",
    "predict": "bodyscore.inference",
}

if TYPE_CHECKING:
    from bodyscore.errors import BodyscoreError, InputError, ModelError
    from bodyscore.inference import predict
    from bodyscore.io import read_volume
    from bodyscore.model import ScoreModel, load_model
    from bodyscore.result import ScoreResult
    from bodyscore.volume import Volume


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bodyscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
