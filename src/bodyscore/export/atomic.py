"""Atomic file writing: write to a temporary file beside the target, then rename.

An interrupted run (kill, disk full) therefore never leaves a half-written output: either the
old file (or nothing) or the complete new file is there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bodyscore.errors import OutputError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only or not writable)"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    Raises
    ------
    OutputError
        When the folder cannot be created or written (read-only, disk full).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({_describe(exc)})") from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.replace(target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({_describe(exc)})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically."""
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return _write(target, write)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return _write(target, write)
