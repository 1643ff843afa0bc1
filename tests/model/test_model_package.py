"""Tests of bodyscore.model.package: save/load round trip, bpreg folders, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bodyscore.errors import ModelError  # noqa: E402
from bodyscore.model.network import BodyPartRegressionVGG, build_network  # noqa: E402
from bodyscore.model.package import file_sha256, load_package, save_package  # noqa: E402
from bodyscore.preprocess import PreprocessingConfig  # noqa: E402
from bodyscore.settings import InferenceSettings  # noqa: E402
from helpers.tiny_model import make_tiny_package, tiny_config, tiny_settings_dict  # noqa: E402


@pytest.fixture(scope="module")
def bpreg_folder(tmp_path_factory, shared_dir) -> Path:
    """bpreg public model folder: its config + settings, random VGG weights."""
    folder = tmp_path_factory.mktemp("bpreg") / "public_bpr_model"
    folder.mkdir()
    source = shared_dir / "data" / "bpreg-public-model"
    for name in ("config.json", "inference-settings.json"):
        shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    torch.save(BodyPartRegressionVGG().state_dict(), folder / "model.pt")
    return folder


def test_bpreg_public_folder_loads_unchanged(bpreg_folder):
    package = load_package(bpreg_folder)
    assert package.name == "public-model"
    assert package.base_model == "vgg"
    assert package.preprocessing == PreprocessingConfig()  # bpreg's numbers by default
    assert package.settings.transform_min == pytest.approx(-2.6928066412607827)
    assert package.sha256 == file_sha256(bpreg_folder / "model.pt")
    assert package.torch_path is not None
    assert package.onnx_path is None
    assert package.version is None
    assert package.licence is None


def test_save_load_round_trip(tmp_path):
    folder = make_tiny_package(tmp_path, seed=3)
    package = load_package(folder)
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "model.pt", "model.onnx", "inference-settings.json", "model-card.md"}
    assert package.name == "tiny-light"
    assert package.version == "0.0-test"
    assert package.licence == "CC0-1.0"
    assert package.config["bodyscore_version"]
    assert package.config["backbone"]["widths"] == [4, 8, 8, 16, 16]
    assert package.settings.slope_mean == pytest.approx(0.11943406374035223)
    state = torch.load(folder / "model.pt", weights_only=True)
    net = build_network(package.config)
    net.load_state_dict(state, strict=True)
    assert not list(tmp_path.glob(".tiny*"))  # no temporary folder left behind


def test_save_refuses_existing_folder_and_bad_weights(tmp_path):
    config = tiny_config()
    settings = InferenceSettings.from_bpreg_dict(tiny_settings_dict())
    state = build_network(config).state_dict()
    (tmp_path / "exists").mkdir()
    with pytest.raises(ModelError, match="already exists"):
        save_package(tmp_path / "exists", state_dict=state, config=config, settings=settings)
    bad = dict(state)
    bad.pop("fc7.bias")
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"missing keys \['fc7.bias'\].*extra.weight"):
        save_package(tmp_path / "new", state_dict=bad, config=config, settings=settings,
                     export_onnx=False)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exists"]


@pytest.fixture
def good_folder(tmp_path_factory) -> Path:
    return make_tiny_package(tmp_path_factory.mktemp("good"), export_onnx=False)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "config.json").unlink(), "config.json: missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "cannot read model configuration"),
        (lambda f: (f / "config.json").write_text("[1]"), "must be a JSON object"),
        (lambda f: (f / "inference-settings.json").unlink(), "inference-settings.json: missing"),
        (lambda f: (f / "inference-settings.json").write_text('{"a": 1}'),
         "not a valid inference settings"),
        (lambda f: (f / "model.pt").unlink(), "no model.pt or model.onnx"),
        (lambda f: (f / "model.pt").write_bytes(b""), "empty weights file"),
        (lambda f: (f / "config.json").write_text(json.dumps({"base_model": "resnet"})),
         "unknown base_model"),
        (lambda f: (f / "config.json").write_text(json.dumps({"preprocessing": {"x": 1}})),
         "invalid 'preprocessing'"),
    ],
)
def test_malformed_packages_raise_model_error(good_folder, damage, message):
    damage(good_folder)
    with pytest.raises(ModelError, match=message):
        load_package(good_folder)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        load_package(tmp_path / "nope")


def test_onnx_export_follows_the_preprocessing_size(tmp_path):
    """A package trained on 64² slices (input-resolution ablation) exports a 64² ONNX input."""
    import numpy as np

    from bodyscore.model import load_model

    config = {**tiny_config(), "preprocessing": {"size": 64, "target_spacing_mm": 7.0}}
    torch.manual_seed(0)
    network = build_network(config)
    package = save_package(tmp_path / "small", state_dict=network.state_dict(), config=config,
                          settings=InferenceSettings.from_bpreg_dict(tiny_settings_dict()))
    model = load_model(package.path, backend="onnx")
    scores = model.predict_raw(np.zeros((3, 1, 64, 64), np.float32))
    assert scores.shape == (3,)
    network.eval()
    with torch.no_grad():
        expected = network(torch.zeros(3, 1, 64, 64)).numpy().reshape(-1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
