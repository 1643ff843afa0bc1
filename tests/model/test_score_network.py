"""Tests of bodyscore.model.network: bpreg's VGG rebuilt by hand and the light backbone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bodyscore.errors import ModelError  # noqa: E402
from bodyscore.model.network import (  # noqa: E402
    BodyPartRegressionVGG,
    LightRegressionNet,
    build_network,
    count_parameters,
)

# bpreg-reference §3.4: conv layers of torchvision vgg16().features (first conv without bias)
_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def _bpreg_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 1
    for index, c_out in zip(_CONV_INDICES, _CHANNELS, strict=False):
        shapes[f"model.{index}.weight"] = (c_out, c_in, 3, 3)
        if index != 0:
            shapes[f"model.{index}.bias"] = (c_out,)
        c_in = c_out
    shapes.update({"conv6.weight": (512, 512, 1, 1), "conv6.bias": (512,),
                   "fc7.weight": (1, 512), "fc7.bias": (1,)})
    return shapes


@pytest.fixture(scope="module")
def vgg():
    return BodyPartRegressionVGG().eval()


def test_vgg_parameter_count(vgg):
    # 14,713,472 (features) + 262,656 (conv6) + 513 (fc7)
    assert count_parameters(vgg) == 14_976_641


def test_vgg_state_dict_matches_bpreg_keys_and_shapes(vgg):
    expected = _bpreg_state_dict_shapes()
    actual = {k: tuple(v.shape) for k, v in vgg.state_dict().items()}
    assert actual == expected
    pools = [i for i, m in enumerate(vgg.model) if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [4, 9, 16, 23, 30]


def test_bpreg_style_state_dict_loads_strictly(vgg):
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=generator) for k, s in _bpreg_state_dict_shapes().items()}
    fresh = BodyPartRegressionVGG()
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh.fc7.weight, state["fc7.weight"])


def test_vgg_forward_shape_and_batch_independence(vgg):
    x = torch.rand(3, 1, 64, 64) * 2 - 1  # 64 px keeps the test fast; the net is size-agnostic
    with torch.inference_mode():
        out = vgg(x)
        single = vgg(x[1:2])
    assert out.shape == (3, 1)
    torch.testing.assert_close(out[1:2], single, atol=1e-5, rtol=1e-5)


def test_light_network_size_and_head():
    net = LightRegressionNet()
    assert 200_000 <= count_parameters(net) <= 1_000_000
    assert set(net.state_dict()) >= {"conv6.weight", "fc7.weight", "fc7.bias"}
    with torch.inference_mode():
        assert net(torch.zeros(2, 1, 128, 128)).shape == (2, 1)


def test_build_network_from_config():
    assert isinstance(build_network({"base_model": "vgg"}), BodyPartRegressionVGG)
    light = build_network({"base_model": "light",
                           "backbone": {"widths": [4, 8, 8, 16, 16], "convs_per_stage": 1}})
    assert isinstance(light, LightRegressionNet)
    assert light.widths == (4, 8, 8, 16, 16)
    with pytest.raises(ModelError, match="unknown base_model"):
        build_network({"base_model": "resnet"})
    with pytest.raises(ModelError, match="invalid"):
        build_network({"base_model": "light", "backbone": {"widths": [0, 8]}})
