"""MONAI dictionary transform ``CropToBodyRegiond``: crop image and label to a known body
region (thesis sec. 4.3.2), invertible through MONAI's applied-operations metadata.

>>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
>>> from bodyscore.integrations.monai import CropToBodyRegiond
>>> pre = Compose([
...     LoadImaged(keys=["image", "label"]),
...     EnsureChannelFirstd(keys=["image", "label"]),
...     CropToBodyRegiond(keys=["image", "label"], region="abdomen"),
... ])                                                           # doctest: +SKIP

After inference, ``Invertd(keys="pred", transform=pre, orig_keys="image")`` pastes the
prediction on the crop back into the full grid (zeros outside the region), the way MONAI inverts
its own ``CropForegroundd``. Needs ``pip install bodyscore[monai]``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Crop, Cropd

from bodyscore.integrations._core import SCORES_KEY, BodyRegionCropper
from bodyscore.usecases.known_region import KnownRegion

if TYPE_CHECKING:
    from bodyscore.model.backends import BackendName

__all__ = ["SCORES_KEY", "CropToBodyRegiond"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ras_affine(image: Any) -> np.ndarray:
    """Voxel → RAS+ affine of a MetaTensor (MONAI readers give RAS unless told otherwise)."""
    if not isinstance(image, MetaTensor):
        return np.eye(4)
    affine = np.asarray(image.affine, dtype=np.float64)
    space = str(image.meta.get("space", "RAS")).upper()
    return _LPS_TO_RAS @ affine if space == "LPS" else affine


class CropToBodyRegiond(Cropd):
    """Crop the ``keys`` of a dictionary to the slices of a known body region.

    The CT under ``image_key`` (channel-first, ``(C, i, j, k)`` HU; place the transform before
    intensity transforms) is scored once with :func:`bodyscore.predict`; its scores are cached
    as JSON in ``meta[SCORES_KEY]`` of the image and reused while they fit it. Every key is then
    cropped on the same slices with MONAI's :class:`~monai.transforms.Crop`, which records the
    operation so that :meth:`inverse` (and ``Invertd``) pads it back.

    Args:
        keys: keys to crop together (image, label, ...), all on one grid.
        image_key: the CT to score; default the first of ``keys``.
        region: a region of thesis table 4.6 (``"pelvis"``, ``"abdomen"``, ``"chest"``,
            ``"shoulder-neck"``, ``"head"``, ``"legs"``).
        landmarks: landmarks of the model's reference table spanning the region
            (``["L5", "Th8"]``).
        scores: score bounds ``(s_min, s_max)`` on the 0–100 scale.
        known_region: a ``known-region.json`` (``bodyscore known-region fit``) or
            :class:`~bodyscore.usecases.known_region.KnownRegion`.
        model: bodyscore model name or package folder (default: the bundled model).
        backend: ``"auto"``, ``"onnx"`` or ``"torch"``.
        on_empty: ``"raise"`` (default) or ``"keep"`` (leave an image without any slice in
            the region uncropped).
        allow_missing_keys: do not raise for missing keys.

    Give exactly one of ``region``, ``landmarks``, ``scores`` and ``known_region``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str | None = None,
        *,
        region: str | None = None,
        landmarks: Sequence[str] | None = None,
        scores: tuple[float, float] | None = None,
        known_region: KnownRegion | str | os.PathLike[str] | None = None,
        model: str | os.PathLike[str] = "default",
        backend: BackendName = "auto",
        on_empty: str = "raise",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, cropper=Crop(), allow_missing_keys=allow_missing_keys, lazy=False)
        self.image_key = image_key if image_key is not None else self.keys[0]
        self.region_cropper = BodyRegionCropper(
            region=region, landmarks=landmarks, scores=scores, known_region=known_region,
            model=model, backend=backend, on_empty=on_empty,
        )

    def __call__(
        self, data: Mapping[Hashable, Any], lazy: bool | None = None
    ) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        meta = image.meta if isinstance(image, MetaTensor) else {}
        found = self.region_cropper.crop(
            np.asarray(image[0].detach().cpu().numpy() if hasattr(image, "detach") else image[0]),
            _ras_affine(image),
            cache=meta.get(SCORES_KEY),
            source=str(meta.get("filename_or_obj", self.image_key)),
        )
        slices = [slice(None)] * 3
        slices[found.axis] = slice(found.start, found.stop)
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], tuple(slices), lazy=False)
        if isinstance(d[self.image_key], MetaTensor):
            d[self.image_key].meta[SCORES_KEY] = found.cache
        return d

    def __repr__(self) -> str:
        spec = ", ".join(f"{k}={v!r}" for k, v in self.region_cropper.describe().items())
        return f"{type(self).__name__}(keys={list(self.keys)}, {spec})"
