"""Tests of bodyscore.model.registry / download against a local HTTP server (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

from bodyscore.errors import DownloadError, ModelError
from bodyscore.model import registry
from bodyscore.model.download import DownloadLimits, safe_extract_zip
from bodyscore.model.registry import ModelEntry, fetch_model, list_models, load_model
from helpers.tiny_model import make_tiny_package


def _zip_folder(folder: Path, prefix: str = "public_bpr_model") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{prefix}/{path.name}")
    return buffer.getvalue()


def _zip_members(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class _Server:
    """Serves ``routes[path] = bytes``; ``/truncated`` announces more bytes than it sends."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                announced = len(body) * 2 if self.path.startswith("/truncated") else len(body)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory) -> bytes:
    return _zip_folder(make_tiny_package(tmp_path_factory.mktemp("pkg"), seed=2))


@pytest.fixture
def server(package_zip) -> Iterator[_Server]:
    srv = _Server()
    srv.routes["/model.zip"] = package_zip
    srv.routes["/truncated.zip"] = package_zip
    yield srv
    srv.close()


def _entry(url: str, sha256: str | None = None, name: str = "test-model") -> ModelEntry:
    return ModelEntry(name=name, description="test", url=url, sha256=sha256, licence="CC0-1.0")


def test_download_success_and_cache_reuse(server, package_zip, tmp_path):
    digest = hashlib.sha256(package_zip).hexdigest()
    entry = _entry(server.url + "/model.zip", sha256=digest)
    assert not entry.is_available(cache_dir=tmp_path)
    folder = fetch_model(entry, cache_dir=tmp_path)
    assert folder == tmp_path / "models" / "test-model"
    assert (folder / "config.json").is_file()
    assert (folder / "model.onnx").is_file()
    assert entry.is_available(cache_dir=tmp_path)
    assert fetch_model(entry, cache_dir=tmp_path) == folder
    assert server.requests == ["/model.zip"]  # second call served from the cache
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]


def test_unknown_sha256_is_recorded_and_checked_later(server, tmp_path):
    entry = _entry(server.url + "/model.zip")
    folder = fetch_model(entry, cache_dir=tmp_path)
    record = (tmp_path / "models" / "test-model.download.json").read_text()
    assert '"archive_sha256"' in record
    (folder / "model.pt").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="cached weights changed"):
        fetch_model(entry, cache_dir=tmp_path)


def test_truncated_download(server, tmp_path):
    with pytest.raises(DownloadError, match="truncated"):
        fetch_model(_entry(server.url + "/truncated.zip"), cache_dir=tmp_path)
    assert not list((tmp_path / "models").glob("*"))


def test_wrong_checksum(server, tmp_path):
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_model(_entry(server.url + "/model.zip", sha256="0" * 64), cache_dir=tmp_path)
    assert not (tmp_path / "models" / "test-model").exists()


def test_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP error 404"):
        fetch_model(_entry(server.url + "/missing.zip"), cache_dir=tmp_path)


def test_connection_refused_is_a_download_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect"):
        fetch_model(_entry(f"http://127.0.0.1:{port}/model.zip"), cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../evil.txt": b"x"}, "unsafe path"),
        ({"/abs/evil.txt": b"x"}, "unsafe path"),
        ({"pkg/config.json": b"{}"}, "not a valid model package"),
        ({"a/config.json": b"{}", "b/config.json": b"{}"}, "exactly one model package"),
    ],
)
def test_bad_archives(server, tmp_path, members, message):
    server.routes["/bad.zip"] = _zip_members(members)
    with pytest.raises(DownloadError, match=message):
        fetch_model(_entry(server.url + "/bad.zip"), cache_dir=tmp_path)
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/abs/evil.txt").exists()


def test_not_a_zip(server, tmp_path):
    server.routes["/junk.zip"] = b"this is no zip file"
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch_model(_entry(server.url + "/junk.zip"), cache_dir=tmp_path)


def test_zip_guards_symlink_bomb_and_size(tmp_path):
    link = zipfile.ZipInfo("pkg/link")
    link.external_attr = (0o120777 << 16)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "link.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract_zip(tmp_path / "link.zip", tmp_path / "out1")
    (tmp_path / "bomb.zip").write_bytes(_zip_members({"zeros": b"\0" * 5_000_000}))
    with pytest.raises(DownloadError, match="compression ratio"):
        safe_extract_zip(tmp_path / "bomb.zip", tmp_path / "out2")
    (tmp_path / "big.zip").write_bytes(_zip_members({"a": bytes(range(256)) * 100}))
    with pytest.raises(DownloadError, match="above the limit"):
        safe_extract_zip(tmp_path / "big.zip", tmp_path / "out3",
                         limits=DownloadLimits(max_uncompressed_bytes=1000))


def test_download_size_limit(server, tmp_path):
    limits = DownloadLimits(max_download_bytes=100)
    with pytest.raises(DownloadError, match="exceeds the limit"):
        fetch_model(_entry(server.url + "/model.zip"), cache_dir=tmp_path, limits=limits)


def test_registry_entries_and_name_resolution(tmp_path, monkeypatch):
    names = {e.name: e for e in list_models()}
    public = names["bpreg-public"]
    assert public.url == "https://zenodo.org/record/5113483/files/public_bpr_model.zip?download=1"
    assert public.licence == "CC BY-SA 4.0"
    assert "Schuhegger" in public.attribution
    assert names["default"].url is None
    assert names["synthetic"].url is None
    with pytest.raises(ModelError, match=r"real-only: model 2026\.11\.3 was retired"):
        load_model("real-only")
    with pytest.raises(ModelError, match="not a model folder nor a known model name"):
        load_model(str(tmp_path / "nothing"))
    monkeypatch.setattr(registry.resources, "files", lambda _: tmp_path)
    assert not names["default"].is_available()
    with pytest.raises(ModelError, match="bundled model 'default' is not installed"):
        load_model("default")
    with pytest.raises(ModelError, match="bundled model 'synthetic' is not installed"):
        load_model("synthetic")


def test_known_name_downloads_through_fetch(server, tmp_path, monkeypatch):
    entry = _entry(server.url + "/model.zip", name="bpreg-public")
    monkeypatch.setitem(registry.KNOWN_MODELS, "bpreg-public", entry)
    model = load_model("bpreg-public", cache_dir=tmp_path)
    assert model.info["name"] == "tiny-light"
    assert model.info["licence"] == "CC0-1.0"
