"""Tests of the torch-native augmentations (thesis sec. 4.1.5, table 4.4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bodyscore.train.augment import (
    AddFrame,
    Flip,
    GaussianBlur,
    GaussNoise,
    ScaleHU,
    ShiftHU,
    ShiftScaleRotate,
    Transpose,
    build_augmentations,
)
from bodyscore.train.config import BPREG_TRANSFORM_PARAMS

ALL = [GaussNoise(), ShiftHU(), ScaleHU(), AddFrame(), Flip(), Transpose(), ShiftScaleRotate(),
       GaussianBlur()]


@pytest.fixture
def sample() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((4, 1, 32, 32), generator=g) * 2 - 1
    x[:, :, 10:20, 5:25] = 0.95  # structure, values near the upper bound
    return x


def draws(aug, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [aug.sample_params(g) for _ in range(n)]


@pytest.mark.parametrize("aug", ALL, ids=lambda a: a.name)
def test_shape_range_and_probability(aug, sample):
    params = draws(aug)
    applied = [p for p in params if p is not None]
    assert abs(len(applied) / len(params) - aug.p) < 0.1
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        y = aug(sample, g)
        assert y.shape == sample.shape
        assert y.dtype == sample.dtype
        assert float(y.min()) >= -1
        assert float(y.max()) <= 1


@pytest.mark.parametrize("aug", ALL, ids=lambda a: a.name)
def test_identity_when_p_zero(aug, sample):
    off = type(aug)(p=0.0)
    g = torch.Generator().manual_seed(0)
    assert all(off.sample_params(g) is None for _ in range(50))
    assert torch.equal(off(sample, g), sample)


def test_parameter_ranges_table_4_4():
    stds = [p["std"] for p in draws(GaussNoise()) if p]
    assert min(stds) >= 0
    assert max(stds) <= 0.04
    assert max(stds) > 0.03
    shifts = [p["shift"] for p in draws(ShiftHU()) if p]
    assert -0.08 <= min(shifts) < -0.06
    assert 0.06 < max(shifts) <= 0.08
    factors = [p["factor"] for p in draws(ScaleHU()) if p]
    assert 0.8 <= min(factors) < 0.85
    assert 1.15 < max(factors) <= 1.2
    ssr = [p for p in draws(ShiftScaleRotate()) if p]
    assert all(0.8 <= p["scale"] <= 1.2 and -10 <= p["angle_deg"] <= 10 for p in ssr)
    blur = [p for p in draws(GaussianBlur()) if p]
    assert {p["kernel_size"] for p in blur} == {3, 5, 7}
    assert all(0 <= p["sigma"] <= 0.5 for p in blur)
    assert {p["mode"] for p in draws(Flip()) if p} == {"vertical", "horizontal", "both"}
    assert {p["shape"] for p in draws(AddFrame()) if p} == {"square", "circle"}


def test_same_parameters_for_all_slices():
    x = torch.linspace(-1, 1, 32 * 32).reshape(1, 1, 32, 32).repeat(3, 1, 1, 1)
    for aug in (ShiftHU(p=1), ScaleHU(p=1), AddFrame(p=1), Flip(p=1), Transpose(p=1),
                ShiftScaleRotate(p=1), GaussianBlur(p=1)):
        y = aug(x, torch.Generator().manual_seed(5))
        assert torch.equal(y[0], y[1]), aug.name
        assert torch.equal(y[1], y[2]), aug.name


def test_hand_worked_intensity_and_geometry():
    x = torch.tensor([[[[0.5, -0.5], [0.0, 0.9]]]])
    assert torch.allclose(ShiftHU().apply(x, {"shift": 0.05}), x + 0.05)
    y = ScaleHU(p=1)(x * 0 + 0.9, torch.Generator().manual_seed(0))
    assert float(y.max()) <= 1.0  # clamped
    assert torch.equal(Flip().apply(x, {"mode": "vertical"}), x.flip(-2))
    assert torch.equal(Flip().apply(x, {"mode": "both"}), x.flip(-2).flip(-1))
    assert torch.equal(Transpose().apply(x, {}), x.transpose(-1, -2))
    big = torch.rand(2, 1, 16, 16)
    same = ShiftScaleRotate().apply(big, {"scale": 1.0, "angle_deg": 0.0})
    assert torch.allclose(same, big, atol=1e-5)
    # rotation by 90° (outside the drawn range, exact check of the rotation direction-free)
    rot = ShiftScaleRotate().apply(big, {"scale": 1.0, "angle_deg": 90.0})
    assert torch.allclose(rot, big.rot90(1, (-2, -1)), atol=1e-4) or torch.allclose(
        rot, big.rot90(-1, (-2, -1)), atol=1e-4)


def test_blur_preserves_constant_and_mean_and_frame_geometry():
    const = torch.full((1, 1, 16, 16), 0.3)
    blurred = GaussianBlur().apply(const, {"kernel_size": 7, "sigma": 0.5})
    assert torch.allclose(blurred, const, atol=1e-6)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1
    out = GaussianBlur().apply(impulse, {"kernel_size": 3, "sigma": 0.5})
    w = torch.exp(torch.tensor(-1 / (2 * 0.25)))
    assert float(out[0, 0, 4, 4]) == pytest.approx(float(1 / (1 + 2 * w) ** 2), rel=1e-5)
    ones = torch.ones(1, 1, 128, 128)
    circle = AddFrame().apply(ones, {"shape": "circle"})
    kept = int((circle == 1).sum())
    assert kept == pytest.approx(3.14159 * 48**2, rel=0.02)  # radius 0.75·64 = 48 px
    assert float(circle[0, 0, 0, 0]) == -1
    assert float(circle[0, 0, 64, 64]) == 1
    square = AddFrame().apply(ones, {"shape": "square"})
    assert int((square == 1).sum()) == 76**2  # |offset| <= 38.4 px from the centre 63.5


def test_build_from_bpreg_config(shared_dir: Path):
    params = json.loads((shared_dir / "data/bpreg-public-model/config.json").read_text())
    pipeline = build_augmentations(params["transform_params"])
    names = [t.name for t in pipeline.transforms]
    assert names == ["GaussNoise", "ShiftHU", "ScaleHU", "AddFrame", "Flip", "Transpose",
                     "ShiftScaleRotate", "GaussianBlur"]
    by_name = {t.name: t for t in pipeline.transforms}
    assert by_name["ShiftScaleRotate"].scale_limit == pytest.approx((-0.2, 0.2))
    assert by_name["AddFrame"].p == 0.25
    default = build_augmentations(BPREG_TRANSFORM_PARAMS)
    assert [t.name for t in default.transforms] == names
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    y = pipeline(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1
    with pytest.raises(ValueError, match="unknown augmentations"):
        build_augmentations({"Elastic": {}})


@pytest.fixture
def shared_dir() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared"
    if not path.is_dir():
        pytest.skip("shared data not available")
    return path
