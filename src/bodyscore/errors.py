"""One exception hierarchy for everything bodyscore raises on purpose.

Every error message names the file (or object) and the problem, and where possible what to
do, in one line: ``"<file>: <what is wrong>; <what to do>"``. Library code raises these
(chaining the original exception with ``raise ... from exc``); only :mod:`bodyscore.cli`
turns them into exit codes.

The classes also derive from the matching built-in exception (``ValueError``, ``OSError``,
``RuntimeError``) so that callers who catch the standard types keep working.
"""

from __future__ import annotations

__all__ = [
    "BodyscoreError",
    "DicomSeriesError",
    "DownloadError",
    "InputError",
    "ModelError",
    "MultipleSeriesError",
    "OutputError",
    "UnsupportedModalityError",
]


class BodyscoreError(Exception):
    """Base class of every error bodyscore raises deliberately."""


class InputError(BodyscoreError, ValueError):
    """An input image cannot be read or is not a usable CT volume."""


class UnsupportedModalityError(InputError):
    """The input is an image, but not CT (e.g. a PET, MR or SEG DICOM series)."""


class DicomSeriesError(InputError):
    """A DICOM folder cannot be assembled into one consistent series."""


class MultipleSeriesError(DicomSeriesError):
    """A DICOM folder holds several CT series and none was chosen.

    Attributes
    ----------
    series : tuple of (str, str)
        ``(SeriesInstanceUID, one-line description)`` of each series found.
    """

    def __init__(self, message: str, series: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.series = series


class ModelError(BodyscoreError, RuntimeError):
    """A model package is missing, incomplete, inconsistent or cannot be run."""


class DownloadError(ModelError, OSError):
    """A model download failed (no network, truncated file, checksum mismatch)."""


class OutputError(BodyscoreError, OSError):
    """An output cannot be written (read-only folder, disk full, would overwrite an input)."""
