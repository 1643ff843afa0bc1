"""Tests of bodyscore.model.backends: ONNX vs torch, backend choice, ONNX export cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bodyscore.model.backends as backends  # noqa: E402
from bodyscore.errors import ModelError  # noqa: E402
from bodyscore.model import ScoreModel, load_model, load_package  # noqa: E402
from bodyscore.model.network import BodyPartRegressionVGG  # noqa: E402
from helpers.tiny_model import make_tiny_package  # noqa: E402


def _slices(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 128, 128)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_package(tmp_path_factory.mktemp("tiny"), seed=1)


def test_onnx_and_torch_agree_light(tiny):
    onnx_model = load_model(tiny, backend="onnx")
    torch_model = load_model(tiny, backend="torch")
    x = _slices(5)
    a, b = onnx_model.predict_raw(x), torch_model.predict_raw(x)
    assert a.shape == (5,)
    assert a.dtype == np.float64
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert onnx_model.info["backend"] == "onnx"
    assert torch_model.info["backend"] == "torch"


def test_vgg_only_model_pt_is_exported_once_and_agrees(tmp_path, monkeypatch):
    folder = tmp_path / "bpreg_like"
    folder.mkdir()
    tiny_src = make_tiny_package(tmp_path / "src", export_onnx=False)
    shutil.copy(tiny_src / "inference-settings.json", folder)
    (folder / "config.json").write_text('{"base_model": "vgg", "model_name": "public-model"}')
    torch.manual_seed(0)
    torch.save(BodyPartRegressionVGG().state_dict(), folder / "model.pt")
    cache = tmp_path / "cache"
    auto = load_model(folder, cache_dir=cache)
    assert auto.info["backend"] == "onnx"
    sha = load_package(folder).sha256
    assert (cache / "onnx" / f"{sha}.onnx").is_file()
    x = _slices(2, seed=4)
    np.testing.assert_allclose(auto.predict_raw(x), load_model(folder, backend="torch")
                               .predict_raw(x), atol=1e-4)

    def no_export(*args, **kwargs):
        raise AssertionError("exported twice")

    monkeypatch.setattr(backends, "export_onnx_file", no_export)
    assert load_model(folder, cache_dir=cache).info["backend"] == "onnx"  # from the cache


def test_empty_slice_score_is_all_air_prediction(tiny):
    model = load_model(tiny)
    air = np.full((1, 1, 128, 128), -1.0, dtype=np.float32)
    assert model.empty_slice_score() == pytest.approx(float(model.predict_raw(air)[0]))


def test_info_and_settings(tiny):
    model = load_model(tiny)
    assert isinstance(model, ScoreModel)
    assert set(model.info) >= {"name", "version", "sha256", "backend"}
    assert model.info["sha256"] == model.package.sha256
    assert model.settings is model.package.settings
    assert model.predict_raw(np.empty((0, 1, 128, 128), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match=r"\(n, 1, h, w\)"):
        model.predict_raw(np.zeros((2, 128, 128), np.float32))


def test_auto_without_torch_and_without_onnx_asks_for_torch(tmp_path, monkeypatch):
    folder = make_tiny_package(tmp_path, export_onnx=False)
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ModelError, match=r"install bodyscore\[torch\]"):
        load_model(folder, cache_dir=tmp_path / "cache")


def test_auto_falls_back_to_torch_when_export_fails(tmp_path, monkeypatch):
    folder = make_tiny_package(tmp_path, export_onnx=False)

    def failing(*args, **kwargs):
        raise ModelError("export broken")

    monkeypatch.setattr(backends, "export_onnx_file", failing)
    model = load_model(folder, cache_dir=tmp_path / "cache")
    assert model.info["backend"] == "torch"


def test_wrong_weights_give_model_error_naming_keys(tmp_path):
    folder = make_tiny_package(tmp_path, export_onnx=False)
    state = torch.load(folder / "model.pt", weights_only=True)
    state["surprise"] = torch.zeros(1)
    del state["conv6.weight"]
    torch.save(state, folder / "model.pt")
    with pytest.raises(ModelError, match=r"missing keys \['conv6.weight'\].*surprise"):
        load_model(folder, backend="torch")
    (folder / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read torch weights"):
        load_model(folder, backend="torch")


def test_broken_onnx_file(tmp_path):
    folder = make_tiny_package(tmp_path)
    (folder / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        load_model(folder, backend="onnx")
    with pytest.raises(ModelError, match="unknown backend"):
        load_model(folder, backend="tpu")  # type: ignore[arg-type]
