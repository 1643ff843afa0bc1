"""The score networks (torch): bpreg's VGG16 regressor and a light CPU backbone.

Thesis sec. 4.1.2: a VGG16 feature extractor (first convolution 1 → 64 channels) on 128 × 128
slices, then a 1 × 1 convolution with 512 channels, ReLU, global average pooling and one
fully connected layer giving the raw slice score. :class:`BodyPartRegressionVGG` rebuilds
bpreg's ``BodyPartRegression`` module by hand (no torchvision) with the same state-dict keys
(``notes/bpreg-reference.md`` §3.4), so bpreg's ``model.pt`` loads with ``strict=True``.

This module imports torch at top level; nothing imported by ``import bodyscore`` imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bodyscore.errors import ModelError

__all__ = [
    "VGG16_LAYOUT",
    "BodyPartRegressionVGG",
    "LightRegressionNet",
    "build_network",
    "count_parameters",
]

#: torchvision ``vgg16().features`` layout: channel counts, "M" = MaxPool2d(2, 2).
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def _vgg_features(layout: Sequence[int | str], *, in_channels: int = 1,
                  first_bias: bool = False) -> nn.Sequential:
    """VGG-style feature stack: conv3×3 (padding 1) + ReLU per number, max-pool per "M"."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = int(item)
        bias = first_bias or bool(layers)
        layers += [nn.Conv2d(channels, out, kernel_size=3, stride=1, padding=1, bias=bias),
                   nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers)


class _ScoreNet(nn.Module):
    """Backbone ``model`` + bpreg's head: ``conv6`` 1×1 → ReLU → mean over (h, w) → ``fc7``."""

    model: nn.Sequential

    def __init__(self, features: nn.Sequential, channels: int) -> None:
        super().__init__()
        self.model = features
        self.conv6 = nn.Conv2d(channels, channels, kernel_size=1, stride=1, padding=0)
        self.fc7 = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores of slices.

        Parameters
        ----------
        x : torch.Tensor, shape (n, 1, 128, 128)
            Preprocessed slices in [-1, 1].

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        x = self.model(x.float())
        x = torch.relu(self.conv6(x))
        x = torch.mean(x, dim=(2, 3))
        return self.fc7(x)


class BodyPartRegressionVGG(_ScoreNet):
    """bpreg's network: VGG16 features (first conv 1 → 64, no bias) + 1×1 conv 512 head.

    14,976,641 parameters (≈ 60 MB float32). State-dict keys: ``model.{0,2,5,7,10,12,14,17,19,
    21,24,26,28}.weight`` (and ``.bias`` except ``model.0``), ``conv6.*``, ``fc7.*``.
    """

    def __init__(self) -> None:
        super().__init__(_vgg_features(VGG16_LAYOUT, first_bias=False), 512)


class LightRegressionNet(_ScoreNet):
    """A small VGG-style backbone for CPU inference, with bpreg's head.

    Five stages of ``convs_per_stage`` conv3×3 + ReLU followed by 2×2 max-pooling (128 → 4 px),
    channel widths ``widths``. The defaults give about 0.6 M parameters and ~4 % of the VGG's
    multiply-adds. Optional batch normalisation after each convolution (``batch_norm``).

    Parameters
    ----------
    widths : sequence of int
        Output channels of the five stages.
    convs_per_stage : int
        Convolutions per stage (the first stage uses one less when > 1 to save compute).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 128),
                 convs_per_stage: int = 2, *, batch_norm: bool = False) -> None:
        if len(widths) < 1 or any(int(w) < 1 for w in widths) or convs_per_stage < 1:
            raise ModelError(f"light backbone: invalid widths {widths} / convs {convs_per_stage}")
        layout: list[int | str] = []
        for stage, width in enumerate(widths):
            n_convs = max(1, convs_per_stage - 1) if stage == 0 else convs_per_stage
            layout += [int(width)] * n_convs + ["M"]
        features = _vgg_features(layout, first_bias=True)
        if batch_norm:
            features = _with_batch_norm(features)
        super().__init__(features, int(widths[-1]))
        self.widths = tuple(int(w) for w in widths)
        self.convs_per_stage = convs_per_stage
        self.batch_norm = batch_norm


def _with_batch_norm(features: nn.Sequential) -> nn.Sequential:
    """Insert BatchNorm2d after every convolution (training converges much faster from
    scratch; in eval mode the scores do not depend on the batch, and the layers fold into
    the convolutions when exported to ONNX)."""
    layers: list[nn.Module] = []
    for layer in features:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            layers.append(nn.BatchNorm2d(layer.out_channels))
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """Build the network a package's ``config.json`` describes (random weights).

    ``base_model``: ``"vgg"`` (bpreg) or ``"light"``; the light backbone reads
    ``backbone: {"widths": [...], "convs_per_stage": n, "batch_norm": bool}``.
    """
    base = config.get("base_model", "vgg")
    if base == "vgg":
        return BodyPartRegressionVGG()
    if base == "light":
        params = dict(config.get("backbone") or {})
        try:
            return LightRegressionNet(
                widths=tuple(params.get("widths", (16, 32, 64, 128, 128))),
                convs_per_stage=int(params.get("convs_per_stage", 2)),
                batch_norm=bool(params.get("batch_norm", False)),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"config.json: invalid backbone parameters {params} ({exc})") from exc
    raise ModelError(
        f"config.json: unknown base_model {base!r}; expected 'vgg' or 'light'"
    )
