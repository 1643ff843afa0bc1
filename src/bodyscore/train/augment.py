"""Data augmentations of thesis sec. 4.1.5 / table 4.4, torch-native (no albumentations/OpenCV).

Every augmentation works on one *volume sample*: a float tensor of shape (m, 1, H, W) in
[-1, 1] holding the m sampled slices; one set of random parameters is drawn per sample and
applied to all m slices (as bpreg, which passes the m slices as the channels of one image;
the thesis text says "independently to each slice"), and the result is clamped to [-1, 1].

Each augmentation has ``p`` (probability to apply) and ``sample_params(generator)`` which returns
the drawn parameters as a dict, or None when the augmentation is skipped this time;
``apply(x, params)`` is deterministic. Parameters and defaults follow bpreg's published
``transform_params`` (``bpreg-public-model/config.json``):

============================  ===============================================================
GaussNoise                    std ~ U[0, 0.04] (0.04 ≙ 50 HU, eq. 4.10), p 0.5
ShiftHU (brightness)          shift ~ U[-0.08, 0.08] (≙ ±100 HU), p 0.5
ScaleHU (contrast)            factor ~ U[0.8, 1.2], p 0.5
AddFrame                      square (half-side r_square·W/2) or circle (radius r_circle·W/2
                              = 48 px) kept, outside set to fill_value −1, p 0.25
Flip                          vertical, horizontal or both (uniform, as albumentations), p 0.5
Transpose                     swap H and W, p 0.5
ShiftScaleRotate              scale ~ U[0.8, 1.2], angle ~ U[−10°, 10°], reflect border,
                              bilinear, no shift, p 0.5
GaussianBlur                  odd kernel in {3, 5, 7}, σ ~ U[0, 0.5] (σ = 0 → OpenCV's
                              0.3·((k−1)/2 − 1) + 0.8), reflect border, p 0.5
============================  ===============================================================

The AddFrame square/circle choice and radii are ours (bpreg's custom code is not public in the
notes); the circle radius matches the thesis' "about 48 pixels".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "AddFrame",
    "Augmentation",
    "Compose",
    "Flip",
    "GaussNoise",
    "GaussianBlur",
    "ScaleHU",
    "ShiftHU",
    "ShiftScaleRotate",
    "Transpose",
    "build_augmentations",
]

Params = dict[str, Any]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    import torch

    return low + (high - low) * float(torch.rand((), generator=generator))


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1.0, 1.0)


@dataclass(frozen=True)
class Augmentation:
    """Base class: ``p`` and the draw/apply protocol."""

    p: float = 0.5
    name: ClassVar[str] = "Augmentation"

    def sample_params(self, generator: torch.Generator) -> Params | None:
        """Draw whether to apply (probability p) and the parameters; None = skip."""
        import torch

        if self.p <= 0 or float(torch.rand((), generator=generator)) >= self.p:
            return None
        return self._draw(generator)

    def _draw(self, generator: torch.Generator) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply with given parameters; x has shape (m, 1, H, W)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        params = self.sample_params(generator)
        if params is None:
            return x
        return _clamp(self.apply(x, {**params, "generator": generator}))


@dataclass(frozen=True)
class GaussNoise(Augmentation):
    """Additive Gaussian noise, std ~ U[std_min, std_max] in [-1, 1] units."""

    std_min: float = 0.0
    std_max: float = 0.04
    name: ClassVar[str] = "GaussNoise"

    def _draw(self, generator: torch.Generator) -> Params:
        return {"std": _uniform(generator, self.std_min, self.std_max)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        import torch

        noise = torch.randn(x.shape, generator=params.get("generator"), dtype=x.dtype)
        return x + params["std"] * noise.to(x.device)


@dataclass(frozen=True)
class ShiftHU(Augmentation):
    """Brightness: add a constant ~ U[-limit, limit] (0.08 ≙ 100 HU)."""

    limit: float = 0.08
    name: ClassVar[str] = "ShiftHU"

    def _draw(self, generator: torch.Generator) -> Params:
        return {"shift": _uniform(generator, -self.limit, self.limit)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return x + params["shift"]


@dataclass(frozen=True)
class ScaleHU(Augmentation):
    """Contrast: multiply by a factor ~ U[1 − scale_delta, 1 + scale_delta]."""

    scale_delta: float = 0.2
    name: ClassVar[str] = "ScaleHU"

    def _draw(self, generator: torch.Generator) -> Params:
        return {"factor": _uniform(generator, 1 - self.scale_delta, 1 + self.scale_delta)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return x * params["factor"]


@dataclass(frozen=True)
class AddFrame(Augmentation):
    """Mask everything outside a centred square or circle with ``fill_value`` (fig. 4.7)."""

    p: float = 0.25
    r_square: float = 0.6
    r_circle: float = 0.75
    fill_value: float = -1.0
    name: ClassVar[str] = "AddFrame"

    def _draw(self, generator: torch.Generator) -> Params:
        import torch

        shape = "circle" if int(torch.randint(0, 2, (), generator=generator)) else "square"
        return {"shape": shape}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        import torch

        h, w = x.shape[-2:]
        yy = torch.arange(h, dtype=x.dtype, device=x.device).reshape(-1, 1) - (h - 1) / 2
        xx = torch.arange(w, dtype=x.dtype, device=x.device).reshape(1, -1) - (w - 1) / 2
        if params["shape"] == "circle":
            keep = yy**2 + xx**2 <= (self.r_circle * w / 2) ** 2
        else:
            half = self.r_square * w / 2
            keep = (yy.abs() <= half) & (xx.abs() <= half)
        return torch.where(keep, x, torch.full_like(x, self.fill_value))


@dataclass(frozen=True)
class Flip(Augmentation):
    """Flip vertically, horizontally or both (each 1/3, as albumentations ``Flip``)."""

    name: ClassVar[str] = "Flip"

    def _draw(self, generator: torch.Generator) -> Params:
        import torch

        return {"mode": ("vertical", "horizontal", "both")[
            int(torch.randint(0, 3, (), generator=generator))]}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        dims = {"vertical": [-2], "horizontal": [-1], "both": [-2, -1]}[params["mode"]]
        return x.flip(dims)


@dataclass(frozen=True)
class Transpose(Augmentation):
    """Swap the two in-plane axes."""

    name: ClassVar[str] = "Transpose"

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return x.transpose(-2, -1)


@dataclass(frozen=True)
class ShiftScaleRotate(Augmentation):
    """Zoom by a factor in 1 + scale_limit and rotate by an angle in rotate_limit (degrees).

    Bilinear interpolation, reflected border (bpreg: ``border_mode=4`` = reflect-101), about
    the image centre; no shift (bpreg's ``shift_limit`` is 0).
    """

    scale_limit: tuple[float, float] = (-0.2, 0.2)
    rotate_limit: tuple[float, float] = (-10.0, 10.0)
    name: ClassVar[str] = "ShiftScaleRotate"

    def _draw(self, generator: torch.Generator) -> Params:
        return {
            "scale": 1 + _uniform(generator, *self.scale_limit),
            "angle_deg": _uniform(generator, *self.rotate_limit),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        angle = math.radians(params["angle_deg"])
        scale = params["scale"]
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype,
                             device=x.device).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)


@dataclass(frozen=True)
class GaussianBlur(Augmentation):
    """Separable Gaussian blur with an odd kernel size in blur_limit and σ in sigma_limit."""

    blur_limit: tuple[int, int] = (3, 7)
    sigma_limit: tuple[float, float] = (0.0, 0.5)
    name: ClassVar[str] = "GaussianBlur"

    def _draw(self, generator: torch.Generator) -> Params:
        import torch

        sizes = [k for k in range(self.blur_limit[0], self.blur_limit[1] + 1) if k % 2 == 1]
        size = sizes[int(torch.randint(0, len(sizes), (), generator=generator))]
        return {"kernel_size": size, "sigma": _uniform(generator, *self.sigma_limit)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        import torch
        import torch.nn.functional as F  # noqa: N812

        size = int(params["kernel_size"])
        sigma = float(params["sigma"])
        if sigma <= 0:  # OpenCV's rule for sigma = 0
            sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
        offsets = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        pad = size // 2
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.conv2d(y, kernel.reshape(1, 1, 1, size))
        return F.conv2d(y, kernel.reshape(1, 1, size, 1))


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order; each draws its own parameters once per sample."""

    transforms: tuple[Augmentation, ...]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return _clamp(x)


_ORDER: tuple[type[Augmentation], ...] = (
    GaussNoise, ShiftHU, ScaleHU, AddFrame, Flip, Transpose, ShiftScaleRotate, GaussianBlur,
)
_IGNORED_KEYS = {"always_apply", "min_value", "max_value", "dimension", "interpolation",
                 "border_mode", "value", "shift_limit_x", "shift_limit_y"}


def build_augmentations(transform_params: Mapping[str, Mapping[str, Any]]) -> Compose:
    """Build the pipeline from bpreg's ``transform_params`` layout.

    Order as bpreg: intensity/custom transforms first (noise, brightness, contrast, frame),
    then the geometric ones and blur. Keys bpreg stores for albumentations that have a fixed
    value here (``border_mode``, ``interpolation``, ``min_value``...) are ignored. A
    scalar ``sigma_limit`` v means (0, v), ``blur_limit`` (3, v), ``scale_limit`` and
    ``rotate_limit`` (−v, v).
    """
    by_name = {cls.name: cls for cls in _ORDER}
    unknown = sorted(set(transform_params) - set(by_name))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; known: {sorted(by_name)}")
    transforms: list[Augmentation] = []
    for cls in _ORDER:
        if cls.name not in transform_params:
            continue
        kwargs: dict[str, Any] = {
            k: v for k, v in transform_params[cls.name].items() if k not in _IGNORED_KEYS
        }
        for key, low in (("scale_limit", None), ("rotate_limit", None),
                         ("sigma_limit", 0.0), ("blur_limit", 3)):
            if key in kwargs:
                kwargs[key] = _as_range(kwargs[key], low=low)
        transforms.append(cls(**kwargs))
    return Compose(tuple(transforms))


def _as_range(value: float | Sequence[float], *, low: float | None) -> tuple[Any, Any]:
    """(low, high) from a pair, or from one number: (−v, v) if low is None else (low, v)."""
    if isinstance(value, (int, float)):
        return (-value, value) if low is None else (low, value)
    low, high = value
    return (low, high)
