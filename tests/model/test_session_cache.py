"""The ONNX session is opened once per process and model file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bodyscore.model import load_model


def test_loading_twice_reuses_the_session(tiny_model_dir: Path) -> None:
    first = load_model(tiny_model_dir, backend="onnx")
    second = load_model(tiny_model_dir, backend="onnx")
    assert first._backend._session is second._backend._session  # type: ignore[attr-defined]
    other_threads = load_model(tiny_model_dir, backend="onnx", threads=1)
    if (os.cpu_count() or 1) > 1:
        assert other_threads._backend._session is not first._backend._session  # type: ignore[attr-defined]


def test_a_changed_file_is_reopened(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    first = load_model(copy, backend="onnx")
    onnx = copy / "model.onnx"
    stat = onnx.stat()
    os.utime(onnx, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = load_model(copy, backend="onnx")
    assert second._backend._session is not first._backend._session  # type: ignore[attr-defined]
