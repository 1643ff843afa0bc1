"""Score models: network definitions, model packages, backends and the model registry.

>>> model = bodyscore.model.load_model("default")        # doctest: +SKIP
>>> model.predict_raw(slices)                              # doctest: +SKIP

Importing this package never imports torch: :mod:`bodyscore.model.network` (torch) is loaded
only when a torch backend runs, a package is saved or ONNX is exported.
"""

from __future__ import annotations

from bodyscore.model.backends import OnnxBackend, ScoreModel, TorchBackend, open_backend
from bodyscore.model.package import ModelPackage, load_package, save_package
from bodyscore.model.registry import ModelEntry, fetch_model, list_models, load_model

__all__ = [
    "ModelEntry",
    "ModelPackage",
    "OnnxBackend",
    "ScoreModel",
    "TorchBackend",
    "fetch_model",
    "list_models",
    "load_model",
    "load_package",
    "open_backend",
    "save_package",
]
