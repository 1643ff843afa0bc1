"""Atomic file writing: write to a temporary file beside the target, then rename.

An interrupted run (kill, disk full) therefore never leaves a half-written output: either the
old file (or nothing) or the complete new file is there. The data is flushed to disk (fsync)
before the rename. A run killed with SIGKILL cannot remove its temporary file
(``.<name>.<random>.part``); the next successful write of the same target removes such leftovers
once they have not changed for :data:`STALE_PART_AGE_S` (younger ones may belong to another
process writing the same target at the same time, e.g. two cross-validation processes on one
output folder).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bodyscore.errors import OutputError

__all__ = [
    "apply_umask",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "describe_os_error",
    "remove_stale_parts",
]

#: A temporary file unchanged for this long (s) is a killed run's leftover, not a write in
#: progress.
STALE_PART_AGE_S = 600.0


def apply_umask(path: Path) -> None:
    """Give a ``mkstemp`` file (always 0600) the permissions a plain ``open`` would give."""
    mask = os.umask(0)
    os.umask(mask)
    path.chmod(0o666 & ~mask)


def describe_os_error(exc: OSError) -> str:
    """Short human description of a write failure (disk full, read-only, ...)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only or not writable)"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    ``suffix`` ends the temporary name (e.g. ``".nii.gz"``) for writers that pick the format
    from the file name (nibabel, SimpleITK). The data are flushed to disk before the rename,
    and temporary files a killed run left behind are removed afterwards.

    Raises
    ------
    OutputError
        When the folder cannot be created or written (read-only, disk full).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".part{suffix}", dir=target.parent
        )
        os.close(fd)
        apply_umask(Path(tmp_name))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({describe_os_error(exc)})") from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write output ({describe_os_error(exc)})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    remove_stale_parts(target)


def _fsync(path: Path) -> None:
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_parts(target: str | os.PathLike[str], *,
                       min_age_s: float = STALE_PART_AGE_S) -> list[Path]:
    """Delete temporary files (``.<target name>.*.part[suffix]``) a killed run left beside
    ``target``: those unchanged for at least ``min_age_s`` seconds (a younger one may be
    another process's write in progress).

    Called after each successful atomic write; returns the files removed.
    """
    target = Path(target)
    removed = []
    now = time.time()
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime < min_age_s:
                continue
            stale.unlink()
            removed.append(stale)
    return removed


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
