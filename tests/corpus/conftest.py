"""Fixtures of the bad-input corpus: the corpus is built once per session into a tmp folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # make make_corpus importable
    sys.path.insert(0, str(HERE))

from make_corpus import build_corpus  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Case name → input path of every corpus case (built from the shared data, or a phantom)."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))
