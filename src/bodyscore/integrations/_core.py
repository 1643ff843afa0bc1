"""What the MONAI and TorchIO transforms share: the known region, scoring one image tensor
through the public API, and the per-subject score cache (no torch, MONAI or TorchIO here).

The cache is a JSON string (so that data loaders collate it like a file name): the model's
``sha256``, the image's spatial shape and slice axis and the cleaned scores along that axis. A
subject whose cache fits its image is not scored again; after a crop the cache holds the scores
of the kept slices.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bodyscore.errors import InputError
from bodyscore.usecases.crop import CropBounds, slices_in_scores
from bodyscore.usecases.known_region import KnownRegion, resolve_bounds

if TYPE_CHECKING:
    from bodyscore.model.backends import BackendName

__all__ = ["SCORES_KEY", "BodyRegionCropper", "SliceCrop"]

#: Metadata key (MONAI ``MetaTensor.meta``; TorchIO subject key) of the cached scores.
SCORES_KEY = "bodyscore_scores"

_ON_EMPTY = ("raise", "keep")


@dataclass(frozen=True)
class SliceCrop:
    """Slices ``[start, stop)`` along spatial axis ``axis`` (0, 1, 2 of (i, j, k)) to keep, and
    the cache to store with the cropped image."""

    axis: int
    start: int
    stop: int
    cache: str


def _scores_from_cache(
    cache: Any, shape: tuple[int, ...], model_sha: str | None
) -> tuple[int, np.ndarray] | None:
    if not isinstance(cache, str):
        return None
    try:
        data = json.loads(cache)
        if data["model"] != model_sha or tuple(data["shape"]) != tuple(shape):
            return None
        scores = np.array([np.nan if v is None else v for v in data["cleaned"]], dtype=float)
        axis = int(data["slice_axis"])
    except (ValueError, KeyError, TypeError):
        return None
    return (axis, scores) if scores.shape == (shape[axis],) else None


def _cache(model_sha: str | None, shape: Sequence[int], axis: int, scores: np.ndarray) -> str:
    cleaned = [float(v) if math.isfinite(v) else None for v in scores.tolist()]
    return json.dumps(
        {"model": model_sha, "shape": [int(s) for s in shape], "slice_axis": axis,
         "cleaned": cleaned},
        allow_nan=False,
    )


class BodyRegionCropper:
    """Known region + model; finds the slices of an image tensor to keep.

    Parameters
    ----------
    region : str, optional
        Region of thesis table 4.6 (``"abdomen"``, ``"chest"``, ...).
    landmarks : sequence of str, optional
        Two or more landmarks of the model's reference table (``["L5", "Th8"]``).
    scores : (float, float), optional
        Score bounds.
    known_region : KnownRegion or path, optional
        A ``known-region.json`` (``bodyscore known-region fit``).
    model : str or path
        Model name or package folder (default: the bundled model), loaded on first use.
    backend : str
        ``"auto"``, ``"onnx"`` or ``"torch"``.
    on_empty : str
        ``"raise"`` (default): an image without any slice in the region raises
        :class:`~bodyscore.errors.InputError`; ``"keep"``: it is left uncropped.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        landmarks: Sequence[str] | None = None,
        scores: tuple[float, float] | None = None,
        known_region: KnownRegion | str | os.PathLike[str] | None = None,
        model: str | os.PathLike[str] = "default",
        backend: BackendName = "auto",
        on_empty: str = "raise",
    ) -> None:
        if on_empty not in _ON_EMPTY:
            raise InputError(f"on_empty: expected one of {_ON_EMPTY}, got {on_empty!r}")
        self.region = region
        self.landmarks = None if landmarks is None else tuple(landmarks)
        self.scores = None if scores is None else (float(scores[0]), float(scores[1]))
        self.known_region = known_region
        self.model_name = str(model)
        self.backend = backend
        self.on_empty = on_empty
        self._model: Any = None
        self._bounds: CropBounds | None = None
        self.bounds  # noqa: B018 - a wrong region spec fails when the transform is built

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deep-copy without the loaded model (an ONNX session does not pickle); it is
        loaded again on first use, e.g. in each data-loader worker."""
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    @property
    def model(self) -> Any:
        """The scoring model (loaded once)."""
        if self._model is None:
            from bodyscore.model import load_model

            self._model = load_model(self.model_name, backend=self.backend)
        return self._model

    @property
    def bounds(self) -> CropBounds:
        """The known region [s_min, s_max]."""
        if self._bounds is None:
            if self.scores is not None and self.region is None and self.landmarks is None \
                    and self.known_region is None:
                self._bounds = CropBounds(*self.scores)  # no model needed
            else:
                self._bounds = resolve_bounds(
                    lookup_table=self.model.settings.lookup_table,
                    model_info=self.model.info,
                    region=self.region,
                    landmarks=self.landmarks,
                    scores=self.scores,
                    known_region=self.known_region,
                )
        return self._bounds

    def _score(self, data_ijk: np.ndarray, affine: np.ndarray, source: str
               ) -> tuple[int, np.ndarray]:
        from bodyscore.inference import predict
        from bodyscore.io._common import volume_from_ijk

        volume = volume_from_ijk(
            np.asarray(data_ijk), np.asarray(affine, dtype=np.float64), source=source,
            meta={"format": "array"}, warnings=[],
        )
        result = predict(volume, self.model)
        return int(volume.meta["slice_axis"]), result.cleaned

    def crop(
        self,
        data_ijk: np.ndarray,
        affine: np.ndarray,
        *,
        cache: Any = None,
        source: str = "<tensor>",
    ) -> SliceCrop:
        """Slices to keep of one CT image.

        Parameters
        ----------
        data_ijk : numpy.ndarray, shape (i, j, k)
            HU values in the image's own voxel order (one channel of a (C, i, j, k) tensor).
        affine : numpy.ndarray, shape (4, 4)
            Voxel (i, j, k) → RAS+ mm.
        cache : str, optional
            The subject's cached scores (:data:`SCORES_KEY`), used when they fit the image.
        source : str
            Name used in messages.

        Returns
        -------
        SliceCrop
        """
        shape = tuple(int(s) for s in data_ijk.shape)
        sha = self.model.info.get("sha256")
        cached = _scores_from_cache(cache, shape, sha)
        axis, scores = cached if cached is not None else self._score(data_ijk, affine, source)
        selected = slices_in_scores(scores, self.bounds)
        if selected is None:
            if self.on_empty == "raise":
                raise InputError(
                    f"{source}: no slice scores within {self.bounds.score_min:.1f}.."
                    f"{self.bounds.score_max:.1f}; nothing to crop to (on_empty='keep' leaves "
                    "such images whole)"
                )
            return SliceCrop(axis, 0, shape[axis], _cache(sha, shape, axis, scores))
        kept_shape = list(shape)
        kept_shape[axis] = len(selected)
        kept = scores[selected.as_slice()]
        return SliceCrop(axis, selected.start, selected.stop, _cache(sha, kept_shape, axis, kept))

    def describe(self) -> Mapping[str, Any]:
        """The region specification, for ``repr``."""
        given = {
            "region": self.region,
            "landmarks": self.landmarks,
            "scores": self.scores,
            "known_region": None if self.known_region is None else str(self.known_region),
        }
        return {k: v for k, v in given.items() if v is not None}
