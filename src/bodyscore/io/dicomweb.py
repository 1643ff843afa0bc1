"""DICOMweb in and out: find a CT series (QIDO-RS), fetch it (WADO-RS), store results (STOW-RS).

A series on a DICOMweb server is named by a URL::

    dicomweb://HOST:PORT/PATH?study=STUDY_UID&series=SERIES_UID     (plain HTTP)
    dicomwebs://HOST:PORT/PATH?series=SERIES_UID                    (HTTPS; study optional)

``PATH`` is the server's DICOMweb root (Orthanc: ``/dicom-web``). An ``http(s)://`` root plus a
separate series UID works too (``--dicomweb URL --series UID`` on the command line).

Credentials never appear in URLs, command lines or logs: :class:`DicomwebAuth` reads a bearer
token or a user + password from a file or an environment variable
(``BODYSCORE_DICOMWEB_TOKEN``/``..._TOKEN_FILE``, ``BODYSCORE_DICOMWEB_USER`` with
``..._PASSWORD``/``..._PASSWORD_FILE``). Every request has a timeout; connection failures, read
timeouts and 429/502/503/504 answers are retried a bounded number of times with exponential
back-off. Server problems become one-line :class:`~bodyscore.errors.InputError` messages.

The instances are written to a folder and read with :func:`bodyscore.io.read_volume`, so the slice
order (position along the slice normal) is exactly that of a local DICOM folder. bpreg has no
DICOMweb input (it reads NIfTI only); Imaging Data Commons converts with dcm2niix first
(``notes/bpreg-reference.md`` sec. 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bodyscore.errors import (
    DicomSeriesError,
    InputError,
    MultipleSeriesError,
    OutputError,
    UnsupportedModalityError,
)

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient
    from pydicom import Dataset

    from bodyscore.volume import Volume

__all__ = [
    "DicomwebAuth",
    "DicomwebOptions",
    "DicomwebSeries",
    "FetchedSeries",
    "fetch_series",
    "is_dicomweb_url",
    "parse_dicomweb_url",
    "read_dicomweb",
    "store_instances",
]

logger = logging.getLogger(__name__)

SCHEMES = {"dicomweb": "http", "dicomwebs": "https", "http": "http", "https": "https"}
ENV_PREFIX = "BODYSCORE_DICOMWEB_"
RETRY_STATUS = (429, 502, 503, 504)
#: WADO-RS accept header: the instances in their stored transfer syntax (no server transcoding).
STORED_TRANSFER_SYNTAX = (("application/dicom", "*"),)


def is_dicomweb_url(text: object) -> bool:
    """True for ``dicomweb://`` / ``dicomwebs://`` strings (the input syntax of bodyscore)."""
    return isinstance(text, str) and text.lower().startswith(("dicomweb://", "dicomwebs://"))


# -- authentication and options -------------------------------------------------------------------
def _read_secret(path: str | os.PathLike[str], what: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc
    if not text:
        raise InputError(f"{path}: the {what} file is empty")
    return text


@dataclass(frozen=True)
class DicomwebAuth:
    """Credentials for a DICOMweb server; the secret never shows in ``repr`` or logs.

    Attributes
    ----------
    kind : str
        ``"none"``, ``"basic"`` (user + password) or ``"bearer"`` (token).
    username : str or None
        User name for basic authentication.
    secret : str or None
        Password (basic) or token (bearer).
    """

    kind: str = "none"
    username: str | None = None
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("none", "basic", "bearer"):
            raise InputError(f"DICOMweb auth kind {self.kind!r} is not none/basic/bearer")
        if self.kind == "basic" and (not self.username or self.secret is None):
            raise InputError("DICOMweb basic authentication needs a user and a password")
        if self.kind == "bearer" and not self.secret:
            raise InputError("DICOMweb bearer authentication needs a token")

    @classmethod
    def from_sources(
        cls,
        *,
        username: str | None = None,
        password_file: str | os.PathLike[str] | None = None,
        password_env: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        token_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> DicomwebAuth:
        """Build credentials from files or named environment variables (never literal secrets).

        Parameters
        ----------
        username : str, optional
            User for basic authentication; its password comes from ``password_file`` or the
            environment variable named ``password_env``.
        token_file, token_env : optional
            Bearer token from a file or the environment variable of that name.
        environ : mapping, optional
            Environment to read (default ``os.environ``).

        Returns
        -------
        DicomwebAuth
            ``kind="none"`` when nothing is given.
        """
        env = os.environ if environ is None else environ
        if token_file is not None or token_env is not None:
            if username is not None:
                raise InputError("DICOMweb: give either a bearer token or a user, not both")
            if token_file is not None:
                return cls("bearer", None, _read_secret(token_file, "token"))
            assert token_env is not None
            token = env.get(token_env, "").strip()
            if not token:
                raise InputError(f"DICOMweb: environment variable {token_env} is empty or unset")
            return cls("bearer", None, token)
        if username is None:
            if password_file is not None or password_env is not None:
                raise InputError("DICOMweb: a password was given without a user (--auth-user)")
            return cls()
        if password_file is not None:
            return cls("basic", username, _read_secret(password_file, "password"))
        if password_env is not None:
            if password_env not in env:
                raise InputError(f"DICOMweb: environment variable {password_env} is unset")
            return cls("basic", username, env[password_env])
        raise InputError(
            f"DICOMweb: user {username} needs a password file or environment variable"
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> DicomwebAuth:
        """Credentials from the ``BODYSCORE_DICOMWEB_*`` environment variables (module doc)."""
        env = os.environ if environ is None else environ
        p = ENV_PREFIX
        if env.get(p + "TOKEN_FILE"):
            return cls.from_sources(token_file=env[p + "TOKEN_FILE"], environ=env)
        if env.get(p + "TOKEN"):
            return cls.from_sources(token_env=p + "TOKEN", environ=env)
        user = env.get(p + "USER") or None
        if user is None:
            return cls()
        if env.get(p + "PASSWORD_FILE"):
            return cls.from_sources(
                username=user, password_file=env[p + "PASSWORD_FILE"], environ=env
            )
        return cls.from_sources(username=user, password_env=p + "PASSWORD", environ=env)


@dataclass(frozen=True)
class DicomwebOptions:
    """How to talk to a DICOMweb server.

    Attributes
    ----------
    timeout_s : float
        Seconds to wait for a connection and for each read.
    retries : int
        Extra attempts after a connection failure, read timeout or 429/502/503/504 answer.
    backoff_s : float
        Back-off factor: waits ``backoff_s * 2**(attempt-1)`` seconds between attempts.
    auth : DicomwebAuth
        Credentials (default: none).
    """

    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.5
    auth: DicomwebAuth = field(default_factory=DicomwebAuth)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or self.retries < 0 or self.backoff_s < 0:
            raise InputError(
                f"DICOMweb options: timeout_s must be > 0, retries and backoff_s >= 0 "
                f"(got {self.timeout_s}, {self.retries}, {self.backoff_s})"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> DicomwebOptions:
        """Defaults with credentials and ``BODYSCORE_DICOMWEB_TIMEOUT`` from the environment."""
        env = os.environ if environ is None else environ
        timeout = env.get(ENV_PREFIX + "TIMEOUT")
        try:
            timeout_s = float(timeout) if timeout else cls.timeout_s
        except ValueError as exc:
            raise InputError(f"{ENV_PREFIX}TIMEOUT={timeout!r} is not a number") from exc
        return cls(timeout_s=timeout_s, auth=DicomwebAuth.from_environment(env))


# -- addresses ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DicomwebSeries:
    """A series on a DICOMweb server.

    Attributes
    ----------
    base_url : str
        ``http(s)://host:port/path`` DICOMweb root.
    study_uid : str or None
        StudyInstanceUID (optional for finding; QIDO fills it in).
    series_uid : str or None
        SeriesInstanceUID; None lets :func:`fetch_series` pick the study's only CT series.
    """

    base_url: str
    study_uid: str | None = None
    series_uid: str | None = None

    def __str__(self) -> str:
        parts = [f"study={self.study_uid}"] if self.study_uid else []
        parts += [f"series={self.series_uid}"] if self.series_uid else []
        return f"{self.base_url}" + (f"?{'&'.join(parts)}" if parts else "")


def parse_dicomweb_url(
    url: str, *, study_uid: str | None = None, series_uid: str | None = None
) -> DicomwebSeries:
    """Parse ``dicomweb[s]://HOST:PORT/PATH?study=UID&series=UID`` (or ``http[s]://...``).

    Parameters
    ----------
    url : str
        Series URL or DICOMweb root.
    study_uid, series_uid : str, optional
        UIDs given separately (e.g. ``--series``); they must not contradict the URL's.

    Returns
    -------
    DicomwebSeries

    Raises
    ------
    InputError
        Unknown scheme, no host, credentials inside the URL, unknown or conflicting parameters.
    """
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise InputError(
            f"{url}: not a DICOMweb address; use dicomweb://HOST:PORT/PATH?series=UID "
            "(dicomwebs:// for HTTPS)"
        )
    if parts.username or parts.password:
        raise InputError(
            f"{parts.scheme}://{parts.hostname}: credentials inside the URL are not accepted; "
            "use a token/password file or environment variable"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"study", "series"})
    if unknown:
        raise InputError(f"{url}: unknown parameter(s) {unknown}; only study= and series=")
    uids: dict[str, str | None] = {"study": study_uid, "series": series_uid}
    for key in ("study", "series"):
        values = query.get(key, [])
        if len(values) > 1 or (values and not values[0]):
            raise InputError(f"{url}: give {key}= once with a UID")
        if values:
            if uids[key] not in (None, values[0]):
                raise InputError(f"{url}: {key} UID in the URL differs from {uids[key]}")
            uids[key] = values[0]
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/")
    return DicomwebSeries(f"{scheme}://{netloc}{path}", uids["study"], uids["series"])


# -- client and error translation -----------------------------------------------------------------
def make_client(base_url: str, options: DicomwebOptions) -> DICOMwebClient:
    """A :class:`dicomweb_client.api.DICOMwebClient` with auth, timeouts and bounded retries."""
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
        from urllib3.util.retry import Retry
    except ImportError as exc:
        raise InputError(
            "DICOMweb needs the dicomweb-client package; pip install bodyscore[dicom]"
        ) from exc
    session = requests.Session()
    retry = Retry(
        total=options.retries,
        connect=options.retries,
        read=options.retries,
        status=options.retries,
        status_forcelist=RETRY_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        backoff_factor=options.backoff_s,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    adapter = requests.adapters.HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    auth = options.auth
    if auth.kind == "basic":
        session.auth = (str(auth.username), str(auth.secret))
    elif auth.kind == "bearer":
        session.headers["Authorization"] = f"Bearer {auth.secret}"
    client = DICOMwebClient(base_url, session=session, timeout=options.timeout_s)
    client.set_http_retry_params(retry=False)  # the session's adapter does the bounded retries
    return client


@contextlib.contextmanager
def _server_errors(where: str, action: str, options: DicomwebOptions) -> Iterator[None]:
    """Turn requests/HTTP failures into one-line InputErrors (no headers, no secrets)."""
    import requests

    try:
        yield
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise InputError(f"{where}: {action} failed: {_http_advice(status)}") from exc
    except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
        if not isinstance(exc, requests.exceptions.Timeout) and not _is_timeout(exc):
            raise InputError(
                f"{where}: {action} failed: cannot connect to the DICOMweb server "
                f"({options.retries + 1} attempts); check the URL and that the server is running"
            ) from exc
        raise InputError(
            f"{where}: {action} timed out (no answer within {options.timeout_s:g} s, "
            f"{options.retries + 1} attempts); check the server or raise --timeout"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise InputError(f"{where}: {action} failed ({type(exc).__name__})") from exc


def _is_timeout(exc: BaseException) -> bool:
    """True when a requests ConnectionError wraps a urllib3 read/connect timeout."""
    from urllib3.exceptions import NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3 derives NewConnectionError (refused) from ConnectTimeoutError
    return isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError)


def _http_advice(status: int) -> str:
    if status == 401:
        return (
            "HTTP 401, authentication required or rejected; give credentials with "
            "--auth-user/--password-file, --token-file or BODYSCORE_DICOMWEB_* variables"
        )
    if status == 403:
        return "HTTP 403, access denied; this user may not read or store here"
    if status == 404:
        return "HTTP 404, not found; check the DICOMweb root path (e.g. /dicom-web) and the UIDs"
    return f"HTTP {status} from the server"


# -- QIDO + WADO ----------------------------------------------------------------------------------
def _tag(record: Mapping[str, Any], tag: str) -> Any:
    values = record.get(tag, {}).get("Value") or [None]
    return values[0]


def _find_series(
    client: DICOMwebClient, target: DicomwebSeries, options: DicomwebOptions
) -> tuple[str, str, int | None]:
    """(study UID, series UID, NumberOfSeriesRelatedInstances or None) of the target series."""
    filters: dict[str, Any] = {}
    if target.series_uid:
        filters["SeriesInstanceUID"] = target.series_uid
    with _server_errors(str(target), "QIDO series search", options):
        records = client.search_for_series(
            study_instance_uid=target.study_uid,
            search_filters=filters,
            fields=["NumberOfSeriesRelatedInstances", "Modality", "SeriesDescription"],
        )
    records = [r for r in records if target.series_uid in (None, _tag(r, "0020000E"))]
    if target.series_uid is None:
        if target.study_uid is None:
            raise InputError(f"{target}: no series given; add ?series=UID (or study=UID)")
        records = [r for r in records if _tag(r, "00080060") == "CT"]
        if len(records) > 1:
            listing = tuple(
                (str(_tag(r, "0020000E")), str(_tag(r, "0008103E") or "")) for r in records
            )
            raise MultipleSeriesError(
                f"{target}: {len(records)} CT series in the study; choose one with series=UID",
                series=listing,
            )
    if not records:
        what = f"series {target.series_uid}" if target.series_uid else "CT series"
        raise InputError(f"{target}: {what} not found on the server; check the UIDs")
    record = records[0]
    modality = _tag(record, "00080060")
    if modality not in (None, "CT"):
        raise UnsupportedModalityError(
            f"{target}: series has modality {modality}; bodyscore scores CT only"
        )
    count = _tag(record, "00201209")
    study = target.study_uid or _tag(record, "0020000D")
    if not study:
        raise InputError(f"{target}: the server did not report the StudyInstanceUID; add study=UID")
    return str(study), str(_tag(record, "0020000E")), None if count is None else int(count)


@dataclass(frozen=True)
class FetchedSeries:
    """A series retrieved into a local folder.

    Attributes
    ----------
    folder : pathlib.Path
        Folder holding one ``.dcm`` file per instance.
    series : DicomwebSeries
        The series with both UIDs filled in.
    n_instances : int
        Instances written.
    """

    folder: Path
    series: DicomwebSeries
    n_instances: int


def fetch_series(
    target: DicomwebSeries | str,
    folder: str | os.PathLike[str],
    *,
    options: DicomwebOptions | None = None,
) -> FetchedSeries:
    """Find a series with QIDO-RS and write all its instances into ``folder`` with WADO-RS.

    Parameters
    ----------
    target : DicomwebSeries or str
        The series, or its ``dicomweb://`` URL.
    folder : str or os.PathLike
        Existing empty folder (e.g. a temporary one) receiving ``00000.dcm``, ``00001.dcm`` ...
    options : DicomwebOptions, optional
        Timeouts, retries, credentials (default: from the environment).

    Returns
    -------
    FetchedSeries

    Raises
    ------
    InputError
        Server down, timeout, HTTP 401/403/404, unknown UID.
    DicomSeriesError
        Fewer (or more) instances retrieved than QIDO's NumberOfSeriesRelatedInstances — a
        series still being uploaded.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    options = DicomwebOptions.from_environment() if options is None else options
    if isinstance(target, str):
        target = parse_dicomweb_url(target)
    client = make_client(target.base_url, options)
    study, series, expected = _find_series(client, target, options)
    target = DicomwebSeries(target.base_url, study, series)
    folder = Path(folder)
    n = 0
    with _server_errors(str(target), "WADO-RS retrieval", options):
        for n, ds in enumerate(
            client.iter_series(study, series, media_types=STORED_TRANSFER_SYNTAX), start=1
        ):
            if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
                ds.ensure_file_meta()
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.save_as(folder / f"{n - 1:05d}.dcm", enforce_file_format=True)
    logger.info("%s: retrieved %d instances", target, n)
    if expected is not None and n != expected:
        raise DicomSeriesError(
            f"{target}: the server lists {expected} instances but returned {n}; the series "
            "may still be uploading; retry when the upload is complete"
        )
    if n == 0:
        raise InputError(f"{target}: the server returned no instances for this series")
    return FetchedSeries(folder, target, n)


def read_dicomweb(
    url: str | DicomwebSeries,
    *,
    series_uid: str | None = None,
    options: DicomwebOptions | None = None,
) -> Volume:
    """Read a CT series from a DICOMweb server as a canonical volume.

    Parameters
    ----------
    url : str or DicomwebSeries
        ``dicomweb[s]://HOST:PORT/PATH?study=UID&series=UID``.
    series_uid : str, optional
        SeriesInstanceUID when the URL has none.
    options : DicomwebOptions, optional
        Default: :meth:`DicomwebOptions.from_environment`.

    Returns
    -------
    Volume
        As :func:`bodyscore.io.read_volume` returns for the same series in a local folder,
        with ``source`` = the URL and ``meta['dicomweb_url']``; ``meta['files']`` is dropped
        (the temporary copy is deleted).
    """
    from bodyscore.io import read_volume

    target = url if isinstance(url, DicomwebSeries) else parse_dicomweb_url(
        url, series_uid=series_uid
    )
    with tempfile.TemporaryDirectory(prefix="bodyscore-dicomweb-") as tmp:
        fetched = fetch_series(target, tmp, options=options)
        volume = read_volume(fetched.folder, series_uid=fetched.series.series_uid)
    return with_dicomweb_source(volume, fetched.series)


def with_dicomweb_source(volume: Volume, series: DicomwebSeries) -> Volume:
    """The volume with ``source`` = the series URL and no local file names in ``meta``."""
    meta = {k: v for k, v in volume.meta.items() if k != "files"}
    meta["dicomweb_url"] = str(series)
    return dataclasses.replace(volume, source=str(series), meta=meta)


# -- STOW -----------------------------------------------------------------------------------------
def store_instances(
    url: str,
    datasets: Sequence[Dataset],
    *,
    options: DicomwebOptions | None = None,
) -> None:
    """Store instances (e.g. a SEG and an SR) on a DICOMweb server with STOW-RS.

    Parameters
    ----------
    url : str
        DICOMweb root, ``dicomweb[s]://HOST:PORT/PATH`` or ``http(s)://...``.
    datasets : sequence of pydicom.Dataset
        Complete instances.
    options : DicomwebOptions, optional
        Default: from the environment.

    Raises
    ------
    OutputError
        The server refused or could not be reached; the message says which.
    """
    options = DicomwebOptions.from_environment() if options is None else options
    target = parse_dicomweb_url(url)
    client = make_client(target.base_url, options)
    try:
        with _server_errors(target.base_url, "STOW-RS store", options):
            response = client.store_instances(list(datasets))
    except InputError as exc:
        raise OutputError(str(exc)) from exc
    failed = response.get("00081198", {}).get("Value") if response else None
    if failed:
        raise OutputError(
            f"{target.base_url}: STOW-RS store: the server refused {len(failed)} of "
            f"{len(datasets)} instances"
        )
