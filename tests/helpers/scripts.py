"""Import the repository's stand-alone scripts (``benchmarks/...``) as modules in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: The repository root (tests/helpers/ → tests/ → root).
REPO = Path(__file__).resolve().parents[2]


def load_script(relative_path: str, *, module_name: str) -> ModuleType:
    """Execute ``REPO / relative_path`` as module ``module_name`` and return it.

    The module is registered in :data:`sys.modules` first: dataclasses defined in the script
    resolve their annotations through it.

    Raises
    ------
    FileNotFoundError
        When the script does not exist.
    """
    path = REPO / relative_path
    if not path.is_file():
        raise FileNotFoundError(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
