"""Streaming gzip inflation for the readers: ISA-L (python-isal) when installed, else zlib.

``isal.isal_zlib`` (Intel ISA-L's igzip through python-isal) inflates about twice as fast as the
standard library's zlib and has the same ``decompressobj`` interface; both check the CRC-32 and
the length in each gzip member's trailer and release the GIL while they inflate, so a reader
thread inflating the next slab overlaps with preprocessing and scoring in the others. Without
python-isal the standard library is used, with the same checks and the same messages.

:class:`GzipStream` inflates straight into the caller's buffers (a numpy array's bytes), block
by block, so a ``.nii.gz`` never exists twice in memory; it refuses a stream that inflates to
more than the caller expects before it can take gigabytes.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from types import ModuleType, TracebackType
from typing import BinaryIO, cast

import numpy as np

from bodyscore.errors import InputError
from bodyscore.io._common import one_line

__all__ = ["GzipStream", "inflater"]

logger = logging.getLogger(__name__)

_BLOCK = 2**20  # compressed bytes read per step
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def inflater() -> tuple[ModuleType, tuple[type[BaseException], ...]]:
    """The zlib-compatible module to inflate with and the exceptions it raises on bad data.

    Returns
    -------
    module : module
        ``isal.isal_zlib`` when python-isal is installed, else :mod:`zlib`.
    errors : tuple of exception types
        What its ``decompress`` raises on a corrupt stream or a wrong CRC/length.
    """
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib, (zlib.error,)
    isal_error = cast("type[BaseException]", isal_zlib.error)  # its stub types it as an instance
    return isal_zlib, (isal_error, zlib.error)


class GzipStream:
    """Sequential reader of a gzip file's inflated bytes, checked against its trailers.

    Parameters
    ----------
    path : pathlib.Path
        The ``.gz`` file.
    limit_bytes : int
        Most inflated bytes accepted (header + image data + slack); more is an
        :class:`~bodyscore.errors.InputError` ("holds more data than the header declares").
    expected_bytes : int
        What the header declares, for that message.

    Notes
    -----
    Concatenated gzip members are read as one stream (as :mod:`gzip` does). The CRC-32 and
    length of a member are checked by the inflater when its end is reached; :meth:`finish`
    reads to the end of the file so that every trailer is checked.
    """

    def __init__(self, path: Path, *, limit_bytes: int, expected_bytes: int) -> None:
        self._path = path
        self._limit = limit_bytes
        self._expected = expected_bytes
        self._module, self._errors = inflater()
        self._inflater = self._module.decompressobj(wbits=_GZIP_WBITS)
        self._pending = b""  # compressed bytes not yet given to the inflater
        self._produced = 0
        self._file: BinaryIO = path.open("rb")

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._file.close()

    def _corrupt(self, exc: BaseException) -> InputError:
        return InputError(
            f"{self._path}: the gzip stream is corrupt ({one_line(exc)}); the file is damaged, "
            "download or export it again"
        )

    def _early_end(self) -> InputError:
        return InputError(
            f"{self._path}: the gzip stream ends early; the file is truncated or damaged, "
            "download or export it again"
        )

    def _inflate(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` (> 0) inflated bytes; ``b""`` only at the end of the file."""
        while True:
            if self._inflater.eof:
                # everything fed after the member's end (zlib repeats it in unconsumed_tail)
                rest = self._inflater.unused_data
                self._pending = b""
                if not rest:
                    rest = self._file.read(_BLOCK)
                if not rest.strip(b"\0"):  # end of file (or zero padding after the last member)
                    return b""
                self._inflater = self._module.decompressobj(wbits=_GZIP_WBITS)  # next member
                self._pending = rest
            if not self._pending:
                self._pending = self._file.read(_BLOCK)
                if not self._pending:
                    raise self._early_end()
            try:
                out = self._inflater.decompress(self._pending, max_bytes)
            except self._errors as exc:
                raise self._corrupt(exc) from exc
            self._pending = self._inflater.unconsumed_tail
            if out:
                self._produced += len(out)
                return out

    def readinto(self, buffer: np.ndarray) -> None:
        """Fill ``buffer`` (any C-contiguous array; its bytes are written) from the stream.

        Raises
        ------
        InputError
            The stream ends before ``buffer`` is full, or is corrupt.
        """
        view = buffer.reshape(-1).view(np.uint8)
        position = 0
        try:
            while position < view.size:
                chunk = self._inflate(min(view.size - position, _BLOCK * 8))
                if not chunk:
                    raise self._early_end()
                view[position : position + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                position += len(chunk)
        except OSError as exc:
            raise self._corrupt(exc) from exc

    def skip(self, n_bytes: int) -> None:
        """Inflate and drop ``n_bytes`` (e.g. the header before the image data)."""
        if n_bytes > 0:
            self.readinto(np.empty(n_bytes, dtype=np.uint8))

    def finish(self) -> None:
        """Inflate the rest of the file, checking every trailer and the size limit.

        Raises
        ------
        InputError
            More data than ``limit_bytes``, a corrupt stream, a wrong CRC-32/length, or a
            stream that ends inside a member.
        """
        try:
            while chunk := self._inflate(_BLOCK):
                if self._produced > self._limit:
                    raise InputError(
                        f"{self._path}: the gzip stream holds more data than the header "
                        f"declares ({self._expected} bytes); the file is damaged"
                    )
                del chunk
        except OSError as exc:
            raise self._corrupt(exc) from exc
        logger.debug("%s: inflated %d bytes with %s", self._path, self._produced,
                     self._module.__name__)
