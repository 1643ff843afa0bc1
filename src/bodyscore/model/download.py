"""Download and unpack model packages safely (never at import time).

A download is streamed to a temporary file in the cache folder with a size limit, checked
against the expected sha256 when one is known, unpacked with guards against path traversal,
links and zip bombs, and moved into place with an atomic rename. Every failure raises
:class:`~bodyscore.errors.DownloadError` with one line saying what went wrong.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bodyscore.errors import DownloadError

__all__ = ["DownloadLimits", "download_file", "safe_extract_zip"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DownloadLimits:
    """Safety limits of downloads and zip extraction.

    Attributes
    ----------
    max_download_bytes : int
        Largest accepted download (default 1 GiB).
    max_uncompressed_bytes : int
        Largest accepted total size of the unpacked files (default 2 GiB).
    max_ratio : float
        Largest accepted compression ratio of a zip member (zip bombs exceed 1000).
    max_members : int
        Largest accepted number of files in a zip.
    timeout_s : float
        Socket timeout in seconds.
    """

    max_download_bytes: int = 1 << 30
    max_uncompressed_bytes: int = 2 << 30
    max_ratio: float = 200.0
    max_members: int = 1000
    timeout_s: float = 60.0


def download_file(
    url: str,
    *,
    folder: Path,
    sha256: str | None = None,
    limits: DownloadLimits | None = None,
) -> tuple[Path, str]:
    """Stream ``url`` to a new temporary file in ``folder``.

    Parameters
    ----------
    url : str
        http(s) URL.
    folder : pathlib.Path
        Where the temporary file is created (the cache folder; same file system as the target).
    sha256 : str, optional
        Expected hex digest; checked when given.

    Returns
    -------
    path : pathlib.Path
        The downloaded file (the caller moves or deletes it).
    digest : str
        Its sha256.

    Raises
    ------
    DownloadError
        No network, HTTP error, timeout, truncated or oversized download, checksum mismatch.
    """
    limits = limits or DownloadLimits()
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"{url}: only http(s) URLs can be downloaded")
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=folder)
    path = Path(name)
    digest = hashlib.sha256()
    received = 0
    try:
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            url, headers={"User-Agent": "bodyscore"}
        )
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(  # noqa: S310 (scheme checked)
            request, timeout=limits.timeout_s
        ) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > limits.max_download_bytes:
                raise DownloadError(
                    f"{url}: file of {expected} bytes exceeds the limit of "
                    f"{limits.max_download_bytes} bytes"
                )
            while block := response.read(_CHUNK):
                received += len(block)
                if received > limits.max_download_bytes:
                    raise DownloadError(
                        f"{url}: download exceeds the limit of {limits.max_download_bytes} bytes"
                    )
                digest.update(block)
                out.write(block)
        if expected is not None and received != expected:
            raise DownloadError(
                f"{url}: download truncated ({received} of {expected} bytes); try again"
            )
    except DownloadError:
        path.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP error {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: cannot connect ({exc.reason}); check the network or pass --model PATH"
        ) from exc
    except http.client.IncompleteRead as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: download truncated ({received + len(exc.partial)} bytes received); try again"
        ) from exc
    except TimeoutError as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{url}: timed out after {limits.timeout_s} s; try again") from exc
    except (OSError, http.client.HTTPException) as exc:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{url}: download failed ({exc})") from exc
    hexdigest = digest.hexdigest()
    if sha256 is not None and hexdigest != sha256.lower():
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: checksum mismatch (sha256 {hexdigest}, expected {sha256}); the file is "
            "corrupt or was changed upstream"
        )
    logger.info("downloaded %s (%d bytes, sha256 %s)", url, received, hexdigest)
    return path, hexdigest


def _check_member(info: zipfile.ZipInfo, archive: Path, limits: DownloadLimits) -> None:
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or ":" in posix.parts[0] \
            or ".." in posix.parts:
        raise DownloadError(f"{archive}: unsafe path {name!r} in zip; refusing to extract")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive}: symbolic link {name!r} in zip; refusing to extract")
    if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
        raise DownloadError(
            f"{archive}: member {name!r} has a compression ratio above {limits.max_ratio:g} "
            "(zip bomb?); refusing to extract"
        )


def safe_extract_zip(archive: Path, destination: Path, *,
                     limits: DownloadLimits | None = None) -> None:
    """Extract ``archive`` into the (new, empty) folder ``destination`` with safety checks.

    Refuses absolute paths, ``..`` components, symbolic links, more than ``max_members``
    files, a total uncompressed size above ``max_uncompressed_bytes`` and compression ratios
    above ``max_ratio``; sizes are enforced while writing, not only from the zip header.

    Raises
    ------
    DownloadError
        If the file is not a valid zip or violates a limit.
    """
    limits = limits or DownloadLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > limits.max_members:
                raise DownloadError(f"{archive}: zip holds {len(members)} files; too many")
            total = 0
            for info in members:
                _check_member(info, archive, limits)
                total += info.file_size
            if total > limits.max_uncompressed_bytes:
                raise DownloadError(
                    f"{archive}: zip unpacks to {total} bytes, above the limit of "
                    f"{limits.max_uncompressed_bytes}"
                )
            written = 0
            root = destination.resolve()
            for info in members:
                target = (destination / info.filename).resolve()
                if root != target and root not in target.parents:
                    raise DownloadError(f"{archive}: unsafe path {info.filename!r} in zip")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    while block := src.read(_CHUNK):
                        written += len(block)
                        if written > limits.max_uncompressed_bytes:
                            raise DownloadError(
                                f"{archive}: zip unpacks to more than "
                                f"{limits.max_uncompressed_bytes} bytes"
                            )
                        dst.write(block)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise DownloadError(f"{archive}: not a valid zip file ({exc}); delete it and retry") \
            from exc
    except OSError as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc})") from exc


def remove_tree(path: Path) -> None:
    """Delete a folder tree, ignoring errors (cleanup of temporary folders)."""
    shutil.rmtree(path, ignore_errors=True)
