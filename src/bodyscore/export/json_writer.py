"""Strict JSON export of a :class:`~bodyscore.result.ScoreResult` (thesis table 4.7)."""

from __future__ import annotations

import os
from pathlib import Path

from bodyscore.export.atomic import atomic_write_text
from bodyscore.result import ScoreResult

__all__ = ["write_json"]


def write_json(result: ScoreResult, path: str | os.PathLike[str]) -> Path:
    """Write the result as strict UTF-8 JSON (no NaN/Infinity) atomically."""
    return atomic_write_text(path, result.to_json(indent=2) + "\n")
