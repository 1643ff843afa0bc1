"""Shared pytest fixtures: the shared data folder and a tiny model package built on the fly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # make tests/helpers importable as `helpers`
    sys.path.insert(0, str(TESTS))

SHARED = TESTS.parents[1] / "shared"
CT_DIR = SHARED / "data" / "ct"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared folder (``../shared``); tests needing it skip when absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not available")
    return SHARED


@pytest.fixture(scope="session")
def ct_dir(shared_dir: Path) -> Path:
    """Folder with the real CT development volumes."""
    return shared_dir / "data" / "ct"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised model package (light backbone), built once per session."""
    from helpers.tiny_model import make_tiny_package

    return make_tiny_package(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def public_settings(shared_dir: Path):  # type: ignore[no-untyped-def]
    """Inference settings of bpreg's public model (the published score scale)."""
    from bodyscore.settings import InferenceSettings

    return InferenceSettings.from_file(
        shared_dir / "data" / "bpreg-public-model" / "inference-settings.json"
    )


@pytest.fixture(scope="session")
def default_model():  # type: ignore[no-untyped-def]
    """The bundled default model (ONNX backend); skips when the package is not installed."""
    from bodyscore.errors import ModelError
    from bodyscore.model import load_model

    try:
        return load_model("default")
    except ModelError:
        pytest.skip("the default model package is not installed")
