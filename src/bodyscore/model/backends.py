"""Inference backends and :class:`ScoreModel`, the public handle of a loaded model.

Two backends run a package's network on preprocessed slices (n, 1, 128, 128) float32:

* :class:`OnnxBackend` — onnxruntime on the CPU (default; no torch needed);
* :class:`TorchBackend` — torch, ``inference_mode``, strict state-dict loading.

``backend="auto"`` uses ``model.onnx`` when the package has one; for packages with only
``model.pt`` (bpreg folders) it exports ONNX once, caches it in the user cache folder keyed by the
sha256 of ``model.pt``, and falls back to torch when the export is impossible.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from bodyscore.errors import ModelError
from bodyscore.model.package import (
    ONNX_FILE,
    ModelPackage,
    export_onnx_file,
    load_state_dict_strict,
)
from bodyscore.settings import InferenceSettings

__all__ = [
    "Backend",
    "BackendName",
    "OnnxBackend",
    "ScoreModel",
    "TorchBackend",
    "default_cache_dir",
    "open_backend",
]

logger = logging.getLogger(__name__)

BackendName = Literal["auto", "onnx", "torch"]


def default_cache_dir() -> Path:
    """bodyscore's user cache folder (platformdirs ``user_cache_dir("bodyscore")``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("bodyscore"))


def _check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"expected slices of shape (n, 1, h, w), got {batch.shape}")
    return batch


class Backend(Protocol):
    """What :class:`ScoreModel` needs from a backend."""

    name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores (n,) float64 of slices (n, 1, h, w) float32."""
        ...


#: Sessions opened in this process: (file, size, mtime, threads) → InferenceSession. A model is
#: loaded once per process (cohort workers, repeated :func:`bodyscore.predict` calls) and a
#: changed file is reopened. ``InferenceSession.run`` is thread-safe.
_SESSIONS: dict[tuple[str, int, int, int], Any] = {}


def _session_options(ort: Any, threads: int) -> Any:
    """The settings chosen by measurement (``benchmarks/ONNX_SETTINGS.md``).

    All graph optimisations (fastest of basic / extended / all); ``threads`` intra-op threads
    (default: the cores); no spin-waiting between operators, which would take the CPU from the
    reading and preprocessing threads that run beside the network.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxBackend:
    """onnxruntime (CPUExecutionProvider) on an ONNX file with a dynamic batch axis.

    Parameters
    ----------
    path : pathlib.Path
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads; default ``os.cpu_count()``.

    Notes
    -----
    The session is opened once per process and file (:data:`_SESSIONS`); int8 dynamic
    quantisation was measured and rejected (10× slower on this CPU and scores off by 0.5
    units, over the 0.3 limit; ``benchmarks/ONNX_SETTINGS.md``).
    """

    name = "onnx"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(
                f"{path}: onnxruntime is not installed; pip install onnxruntime"
            ) from exc
        n_threads = int(threads or os.cpu_count() or 1)
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, n_threads)
            session = _SESSIONS.get(key)
            if session is None:
                session = ort.InferenceSession(
                    str(path), sess_options=_session_options(ort, n_threads),
                    providers=["CPUExecutionProvider"],
                )
                _SESSIONS[key] = session
        except Exception as exc:  # onnxruntime raises its own non-exported types
            raise ModelError(f"{path}: cannot load ONNX model ({exc}); re-export it") from exc
        self._session = session
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: ONNX model must have exactly one input, has {len(inputs)}")
        self._input = inputs[0].name
        self.path = path

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores (n,) float64 of slices (n, 1, h, w) float32."""
        batch = _check_batch(batch)
        if batch.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        (out,) = self._session.run(None, {self._input: batch})[:1]
        return np.asarray(out, dtype=np.float64).reshape(-1)


class TorchBackend:
    """torch on the package's ``model.pt`` (CPU, ``model.eval()``, ``inference_mode``).

    Parameters
    ----------
    package : ModelPackage
    threads : int, optional
        ``torch.set_num_threads`` value; default leaves torch's setting alone.
    """

    name = "torch"

    def __init__(self, package: ModelPackage, *, threads: int | None = None) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelError(
                f"{package.path}: running model.pt needs torch; install bodyscore[torch]"
            ) from exc
        from bodyscore.model.network import build_network

        weights = package.torch_path
        if weights is None:
            raise ModelError(f"{package.path}: no model.pt; use the onnx backend")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle/zip errors of every kind
            raise ModelError(f"{weights}: cannot read torch weights ({exc})") from exc
        if isinstance(state, dict) and "state_dict" in state:  # Lightning checkpoint
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ModelError(f"{weights}: expected a state dict, got {type(state).__name__}")
        network = build_network(package.config)
        load_state_dict_strict(network, state, where=str(weights))
        network.eval()
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._network = network

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores (n,) float64 of slices (n, 1, h, w) float32."""
        batch = _check_batch(batch)
        if batch.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        with self._torch.inference_mode():
            out = self._network(self._torch.from_numpy(batch))
        return out.numpy().astype(np.float64).reshape(-1)


def _cached_onnx(package: ModelPackage, cache_dir: Path | None) -> Path:
    """Export ``model.pt`` to ONNX once; cached under ``<cache>/onnx/<sha256>.onnx``."""
    folder = (cache_dir or default_cache_dir()) / "onnx"
    target = folder / f"{package.sha256}.onnx"
    if target.is_file():
        return target
    import torch

    assert package.torch_path is not None
    state = torch.load(package.torch_path, map_location="cpu", weights_only=True)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        export_onnx_file(state, package.config, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %s to ONNX (cached at %s)", package.torch_path, target)
    return target


def open_backend(
    package: ModelPackage,
    backend: BackendName = "auto",
    *,
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> Backend:
    """Open the backend that runs ``package`` (see the module docstring for ``"auto"``)."""
    if backend == "torch":
        return TorchBackend(package, threads=threads)
    if backend == "onnx":
        if package.onnx_path is not None:
            return OnnxBackend(package.onnx_path, threads=threads)
        if package.torch_path is not None and importlib.util.find_spec("torch") is not None:
            return OnnxBackend(_cached_onnx(package, cache_dir), threads=threads)
        raise ModelError(f"{package.path}: no {ONNX_FILE}; install bodyscore[torch] to export it")
    if backend != "auto":
        raise ModelError(f"unknown backend {backend!r}; use 'auto', 'onnx' or 'torch'")
    if package.onnx_path is not None:
        return OnnxBackend(package.onnx_path, threads=threads)
    if importlib.util.find_spec("torch") is None:
        raise ModelError(
            f"{package.path}: the package has only model.pt and torch is not installed; "
            "install bodyscore[torch]"
        )
    try:
        return OnnxBackend(_cached_onnx(package, cache_dir), threads=threads)
    except (ModelError, OSError) as exc:
        logger.warning("%s: ONNX export failed (%s); using torch", package.path, exc)
    return TorchBackend(package, threads=threads)


class ScoreModel:
    """A model package ready to score preprocessed slices.

    Parameters
    ----------
    package : ModelPackage
    backend : Backend
        An opened backend (see :func:`open_backend`); :func:`bodyscore.load_model` does both.

    Examples
    --------
    >>> model = bodyscore.load_model("default")                # doctest: +SKIP
    >>> model.predict_raw(np.full((2, 1, 128, 128), -1, np.float32))  # doctest: +SKIP
    """

    def __init__(self, package: ModelPackage, backend: Backend) -> None:
        self._package = package
        self._backend = backend
        self._empty_score: float | None = None

    @property
    def package(self) -> ModelPackage:
        """The model package."""
        return self._package

    @property
    def settings(self) -> InferenceSettings:
        """Inference settings (reference table, slopes, transform)."""
        return self._package.settings

    @property
    def backend_name(self) -> str:
        """``"onnx"`` or ``"torch"``."""
        return self._backend.name

    @property
    def info(self) -> dict[str, Any]:
        """Identification of the model for results: name, version, sha256, backend, licence."""
        return {
            "name": self._package.name,
            "version": self._package.version,
            "sha256": self._package.sha256,
            "backend": self._backend.name,
            "licence": self._package.licence,
        }

    def predict_raw(self, batch: np.ndarray) -> np.ndarray:
        """Raw network scores of preprocessed slices.

        Parameters
        ----------
        batch : numpy.ndarray, shape (n, 1, 128, 128), float32
            Output of :func:`bodyscore.preprocess.preprocess_slices`.

        Returns
        -------
        numpy.ndarray, shape (n,), float64
        """
        return self._backend.run(batch)

    def empty_slice_score(self) -> float:
        """Raw score s0 of an all-air slice (every pixel -1; thesis sec. 4.3 step 1)."""
        if self._empty_score is None:
            size = self._package.preprocessing.size
            air = np.full((1, 1, size, size), -1.0, dtype=np.float32)
            self._empty_score = float(self.predict_raw(air)[0])
        return self._empty_score

    def __repr__(self) -> str:
        return (f"ScoreModel(name={self._package.name!r}, backend={self._backend.name!r}, "
                f"path={str(self._package.path)!r})")
