"""A real Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) for end-to-end tests.

:func:`running_orthanc` starts Orthanc on a free loopback port with a temporary configuration
(DICOMweb plugin enabled, storage and index in a temporary folder, HTTP authentication on with one
test user, DICOM network server off) and stops it on exit. :func:`orthanc_or_skip` returns the
executable and plugin, or skips the test with the reason when they are not installed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so.1.7"),
)
TEST_USER = "bodyscore"
TEST_PASSWORD = "test-password-not-secret"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc.

    Attributes
    ----------
    http_url : str
        ``http://127.0.0.1:PORT`` (Orthanc REST API).
    dicomweb_root : str
        ``http://127.0.0.1:PORT/dicom-web``.
    user, password : str
        The test user's credentials (basic authentication).
    log : pathlib.Path
        Orthanc's stdout/stderr.
    """

    http_url: str
    dicomweb_root: str
    user: str
    password: str
    log: Path

    @property
    def dicomweb_scheme_root(self) -> str:
        """The DICOMweb root with bodyscore's scheme: ``dicomweb://127.0.0.1:PORT/dicom-web``."""
        return "dicomweb://" + self.dicomweb_root.split("://", 1)[1]

    def upload(self, files: list[Path]) -> list[str]:
        """POST each file to ``/instances``; return Orthanc's instance ids."""
        import requests

        ids = []
        with requests.Session() as session:
            session.auth = (self.user, self.password)
            for path in files:
                response = session.post(
                    f"{self.http_url}/instances", data=path.read_bytes(), timeout=30
                )
                response.raise_for_status()
                ids.append(str(response.json()["ID"]))
        return ids

    def delete_instance(self, orthanc_id: str) -> None:
        """DELETE one instance (to make a series incomplete)."""
        import requests

        response = requests.delete(
            f"{self.http_url}/instances/{orthanc_id}", auth=(self.user, self.password), timeout=30
        )
        response.raise_for_status()


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orthanc_or_skip() -> tuple[str, Path]:
    """(Orthanc executable, DICOMweb plugin path); skip the test when either is missing."""
    executable = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )
    if executable is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    plugin = next((p for p in PLUGIN_CANDIDATES if p.exists()), None)
    if plugin is None:
        pytest.skip("Orthanc DICOMweb plugin missing (apt-get install orthanc-dicomweb)")
    with contextlib.suppress(ImportError):
        import dicomweb_client  # noqa: F401

        return executable, plugin
    pytest.skip("dicomweb-client is not installed (pip install dicomweb-client)")
    raise AssertionError("unreachable")


def _config(folder: Path, http_port: int, plugin: Path) -> dict[str, object]:
    return {
        "Name": "bodyscore-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "StorageCompression": False,
        "HttpPort": http_port,
        "HttpServerEnabled": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {TEST_USER: TEST_PASSWORD},
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 8,
        "OverwriteInstances": True,
    }


def _wait_until_up(orthanc: Orthanc, process: subprocess.Popen[bytes]) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Orthanc exited with {process.returncode}: {orthanc.log.read_text()[-2000:]}"
            )
        with contextlib.suppress(requests.exceptions.RequestException):
            response = requests.get(
                f"{orthanc.http_url}/plugins", auth=(orthanc.user, orthanc.password), timeout=2
            )
            if response.ok and "dicom-web" in response.json():
                return
        time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not start in {START_TIMEOUT_S} s: {orthanc.log}")


@contextlib.contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    """Start Orthanc with storage under ``folder``; stop it (and only it) on exit."""
    executable, plugin = orthanc_or_skip()
    port = free_port()
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(_config(folder, port, plugin), indent=2))
    http_url = f"http://127.0.0.1:{port}"
    orthanc = Orthanc(
        http_url=http_url,
        dicomweb_root=f"{http_url}/dicom-web",
        user=TEST_USER,
        password=TEST_PASSWORD,
        log=folder / "orthanc.log",
    )
    with orthanc.log.open("wb") as log:
        process = subprocess.Popen([executable, str(config_path)], stdout=log, stderr=log)
        try:
            _wait_until_up(orthanc, process)
            yield orthanc
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
