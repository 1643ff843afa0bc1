"""Model packages: a folder holding a trained score model (compatible with bpreg's folders).

Layout (``DESIGN.md``, "Model package"):

* ``config.json`` — architecture and training hyper-parameters. bpreg's keys are kept
  (``base_model``, ``alpha``, ``lr``, ``transform_params``, ``model_name``, ...); bodyscore adds
  ``bodyscore_version``, ``model_version``, ``licence``, ``backbone`` (light network parameters)
  and ``preprocessing`` (:class:`~bodyscore.preprocess.PreprocessingConfig`; bpreg's values when
  absent).
* ``model.pt`` (torch state dict) and/or ``model.onnx`` (input ``slices`` (n, 1, size, size)
  float32 with ``size`` from ``preprocessing``, 128 for bpreg; output ``scores`` (n, 1)).
* ``inference-settings.json`` — :class:`~bodyscore.settings.InferenceSettings`.
* ``model-card.md`` — optional: data, training, calibration, accuracy, licence.

A bpreg public model folder (``config.json`` + ``inference-settings.json`` + ``model.pt``) loads
unchanged. Nothing here imports torch unless a package is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bodyscore.errors import ModelError
from bodyscore.preprocess import PreprocessingConfig
from bodyscore.settings import InferenceSettings

__all__ = [
    "CONFIG_FILE",
    "MODEL_CARD_FILE",
    "ONNX_FILE",
    "SETTINGS_FILE",
    "TORCH_FILE",
    "ModelPackage",
    "export_onnx_file",
    "file_sha256",
    "load_package",
    "load_state_dict_strict",
    "save_package",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TORCH_FILE = "model.pt"
ONNX_FILE = "model.onnx"
SETTINGS_FILE = "inference-settings.json"
MODEL_CARD_FILE = "model-card.md"

ONNX_INPUT = "slices"
ONNX_OUTPUT = "scores"
ONNX_OPSET = 17


def file_sha256(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelPackage:
    """A loaded (validated) model package folder; weights are not read into memory.

    Attributes
    ----------
    path : pathlib.Path
        The package folder.
    config : mapping
        Content of ``config.json`` (read-only).
    settings : InferenceSettings
        Content of ``inference-settings.json``.
    name : str
        ``config["model_name"]``, else the folder name.
    version : str or None
        ``config["model_version"]`` if given.
    sha256 : str
        sha256 of ``model.pt`` when present, else of ``model.onnx``: identifies the weights.
    licence : str or None
        ``config["licence"]`` if given (registry entries may know it otherwise).
    preprocessing : PreprocessingConfig
        ``config["preprocessing"]``, bpreg's values when absent.
    """

    path: Path
    config: Mapping[str, Any]
    settings: InferenceSettings
    name: str
    version: str | None
    sha256: str
    licence: str | None
    preprocessing: PreprocessingConfig

    @property
    def torch_path(self) -> Path | None:
        """``model.pt`` if the package has it."""
        path = self.path / TORCH_FILE
        return path if path.is_file() else None

    @property
    def onnx_path(self) -> Path | None:
        """``model.onnx`` if the package has it."""
        path = self.path / ONNX_FILE
        return path if path.is_file() else None

    @property
    def base_model(self) -> str:
        """Architecture name from ``config.json`` (``"vgg"`` for bpreg models)."""
        return str(self.config.get("base_model", "vgg"))


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: missing; a model package needs {CONFIG_FILE}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model configuration ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: model configuration must be a JSON object")
    return data


def load_package(path: str | os.PathLike[str]) -> ModelPackage:
    """Read and validate a model package folder.

    Parameters
    ----------
    path : str or path-like
        The folder (bpreg model folders work unchanged).

    Returns
    -------
    ModelPackage

    Raises
    ------
    ModelError
        If the folder, ``config.json``, ``inference-settings.json`` or both weight files are
        missing or malformed.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found; pass a model package folder")
    config = _read_config(folder)
    settings_path = folder / SETTINGS_FILE
    if not settings_path.is_file():
        raise ModelError(f"{settings_path}: missing; a model package needs {SETTINGS_FILE}")
    settings = InferenceSettings.from_file(settings_path)
    weights = next((folder / f for f in (TORCH_FILE, ONNX_FILE) if (folder / f).is_file()), None)
    if weights is None:
        raise ModelError(f"{folder}: no {TORCH_FILE} or {ONNX_FILE}; the package has no weights")
    if weights.stat().st_size == 0:
        raise ModelError(f"{weights}: empty weights file; re-download or re-export the model")
    try:
        preprocessing = PreprocessingConfig.from_dict(config.get("preprocessing"))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE}: invalid 'preprocessing' ({exc})") from exc
    base = config.get("base_model", "vgg")
    if base not in ("vgg", "light"):
        raise ModelError(
            f"{folder / CONFIG_FILE}: unknown base_model {base!r}; expected 'vgg' or 'light'"
        )
    version = config.get("model_version")
    licence = config.get("licence")
    return ModelPackage(
        path=folder.resolve(),
        config=MappingProxyType(config),
        settings=settings,
        name=str(config.get("model_name") or folder.name),
        version=None if version is None else str(version),
        sha256=file_sha256(weights),
        licence=None if licence is None else str(licence),
        preprocessing=preprocessing,
    )


def export_onnx_file(state_dict: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> None:
    """Export the network of ``config`` with ``state_dict`` to ONNX (dynamic batch axis).

    Needs torch (``pip install bodyscore[torch]``). Uses the TorchScript-based exporter, which
    needs no extra packages.
    """
    import warnings

    try:
        import torch
    except ImportError as exc:
        raise ModelError(
            f"{path}: exporting to ONNX needs torch; install bodyscore[torch]"
        ) from exc
    from bodyscore.model.network import build_network

    network = build_network(config)
    load_state_dict_strict(network, state_dict, where=str(path))
    network.eval()
    size = PreprocessingConfig.from_dict(config.get("preprocessing")).size
    example = torch.zeros(2, 1, size, size, dtype=torch.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                (example,),
                str(path),
                dynamo=False,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "n"}, ONNX_OUTPUT: {0: "n"}},
                opset_version=ONNX_OPSET,
            )
    except Exception as exc:  # torch raises many unrelated types here
        raise ModelError(f"{path}: ONNX export failed ({exc})") from exc


def load_state_dict_strict(network: Any, state_dict: Mapping[str, Any], *, where: str) -> None:
    """``network.load_state_dict(strict=True)`` with a ModelError naming wrong keys.

    Differs from bpreg, which loads with ``strict=False`` and so silently runs a random network
    when the weights file does not match.
    """
    expected = set(network.state_dict())
    given = set(state_dict)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        raise ModelError(
            f"{where}: weights do not match the network (missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}); check base_model in config.json"
        )
    try:
        network.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{where}: weights do not match the network ({exc})") from exc


def save_package(
    folder: str | os.PathLike[str],
    *,
    state_dict: Mapping[str, Any],
    config: Mapping[str, Any],
    settings: InferenceSettings,
    model_card: str | None = None,
    export_onnx: bool = True,
    overwrite: bool = False,
) -> ModelPackage:
    """Write a model package atomically (temporary folder next to ``folder``, then rename).

    Parameters
    ----------
    folder : str or path-like
        Destination folder; must not exist unless ``overwrite``.
    state_dict : mapping of str to torch.Tensor
        Network weights, checked against ``build_network(config)`` (strict).
    config : mapping
        ``config.json`` content; ``bodyscore_version`` is added.
    settings : InferenceSettings
        Written as ``inference-settings.json``.
    model_card : str, optional
        Markdown text for ``model-card.md``.
    export_onnx : bool
        Also write ``model.onnx`` (recommended: fast inference without torch).

    Returns
    -------
    ModelPackage
        The package read back from ``folder``.
    """
    try:
        import torch
    except ImportError as exc:
        raise ModelError("saving a model package needs torch; install bodyscore[torch]") from exc
    from bodyscore import __version__

    target = Path(folder).expanduser()
    if target.exists() and not overwrite:
        raise ModelError(f"{target}: already exists; choose a new folder or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    full_config = {**dict(config), "bodyscore_version": __version__}
    full_config.setdefault("preprocessing", PreprocessingConfig().to_dict())
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        from bodyscore.model.network import build_network

        load_state_dict_strict(build_network(full_config), state_dict, where=str(target))
        (tmp / CONFIG_FILE).write_text(json.dumps(full_config, indent=2) + "\n", encoding="utf-8")
        (tmp / SETTINGS_FILE).write_text(
            json.dumps(settings.to_bpreg_dict(), indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp / TORCH_FILE)
        if export_onnx:
            export_onnx_file(state_dict, full_config, tmp / ONNX_FILE)
        if model_card is not None:
            (tmp / MODEL_CARD_FILE).write_text(model_card, encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved model package %s", target)
    return load_package(target)
