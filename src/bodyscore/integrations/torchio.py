"""TorchIO transform ``CropToBodyRegion``: crop a subject to a known body region (thesis
sec. 4.3.2), invertible through the subject's history.

>>> import torchio as tio
>>> from bodyscore.integrations.torchio import CropToBodyRegion
>>> transform = tio.Compose([CropToBodyRegion(region="abdomen"), tio.ZNormalization()])
>>> cropped = transform(subject)                                  # doctest: +SKIP
>>> restored = cropped.apply_inverse_transform()                  # doctest: +SKIP

The transform records the :class:`torchio.Crop` it applies (with the slices it found) in the
subject's history, so ``subject.apply_inverse_transform()`` / ``get_inverse_transform()`` pad a
prediction on the crop back into the full grid (zeros outside the region). Needs
``pip install bodyscore[torchio]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torchio as tio

from bodyscore.errors import InputError
from bodyscore.integrations._core import SCORES_KEY, BodyRegionCropper
from bodyscore.usecases.known_region import KnownRegion

if TYPE_CHECKING:
    from bodyscore.model.backends import BackendName

__all__ = ["SCORES_KEY", "CropToBodyRegion"]


class CropToBodyRegion(tio.SpatialTransform):
    r"""Crop every image of a subject to the slices of a known body region.

    The CT (``image_name``, default the subject's first scalar image; HU values, so place the
    transform before intensity transforms) is scored once with :func:`bodyscore.predict`. The
    scores are cached as JSON under the subject key ``SCORES_KEY`` (``"bodyscore_scores"``) and
    reused while they fit the image. All images, label maps included, are cropped on the same
    slices by a :class:`torchio.Crop`, which the subject's history records.

    Args:
        region: A region of thesis table 4.6 (``'pelvis'``, ``'abdomen'``, ``'chest'``,
            ``'shoulder-neck'``, ``'head'``, ``'legs'``).
        landmarks: Landmarks of the model's reference table spanning the region, e.g.
            ``('L5', 'Th8')``.
        scores: Score bounds $(s_{min}, s_{max})$ on the 0–100 scale.
        known_region: Path of a ``known-region.json`` (``bodyscore known-region fit``) or a
            :class:`~bodyscore.usecases.known_region.KnownRegion`.
        image_name: Name of the CT image in the subject.
        model: bodyscore model name or package folder (default: the bundled model).
        backend: ``'auto'``, ``'onnx'`` or ``'torch'``.
        on_empty: ``'raise'`` (default) or ``'keep'``: leave a subject without any slice in the
            region uncropped.
        **kwargs: See :class:`~torchio.transforms.Transform` for additional keyword arguments.

    Give exactly one of ``region``, ``landmarks``, ``scores`` and ``known_region``.
    """

    def __init__(
        self,
        region: str | None = None,
        *,
        landmarks: Sequence[str] | None = None,
        scores: tuple[float, float] | None = None,
        known_region: KnownRegion | str | os.PathLike[str] | None = None,
        image_name: str | None = None,
        model: str | os.PathLike[str] = "default",
        backend: BackendName = "auto",
        on_empty: str = "raise",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.region = region
        self.landmarks = landmarks
        self.scores = scores
        self.known_region = known_region
        self.image_name = image_name
        self.model = model
        self.backend = backend
        self.on_empty = on_empty
        self.region_cropper = BodyRegionCropper(
            region=region, landmarks=landmarks, scores=scores, known_region=known_region,
            model=model, backend=backend, on_empty=on_empty,
        )
        self.args_names = ["region", "landmarks", "scores", "known_region", "image_name",
                           "model", "backend", "on_empty"]

    def _ct(self, subject: tio.Subject) -> tuple[str, tio.Image]:
        if self.image_name is not None:
            if self.image_name not in subject:
                raise InputError(f"subject has no image {self.image_name!r}")
            return self.image_name, subject.get_image(self.image_name)
        scalars = subject.get_images_dict(intensity_only=True)
        if not scalars:
            raise InputError("subject has no scalar image to score; name it with image_name")
        name, image = next(iter(scalars.items()))
        return name, image

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        subject.check_consistent_space()
        name, image = self._ct(subject)
        found = self.region_cropper.crop(
            image.data[0].numpy(),
            image.affine,
            cache=subject.get(SCORES_KEY),
            source=str(image.path or name),
        )
        cropping = [0] * 6
        cropping[2 * found.axis] = found.start
        cropping[2 * found.axis + 1] = int(image.spatial_shape[found.axis]) - found.stop
        cropped = tio.Crop(tuple(cropping), **self._get_base_args())(subject)
        cropped[SCORES_KEY] = found.cache
        cropped.update_attributes()
        return cropped

    def _add_transform_to_subject_history(self, subject: tio.Subject) -> None:
        """Record nothing: the :class:`torchio.Crop` applied holds the slices (as TorchIO's own
        ``CropOrPad`` leaves its ``Crop`` and ``Pad`` in the history)."""
