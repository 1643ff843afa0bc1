"""End-to-end against a real Orthanc: QIDO + WADO in, scores equal the local folder, STOW out."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from bodyscore.cli import main
from dicomweb.orthanc import running_orthanc

GE = ("data", "ct", "dicom", "ge_head_tilt18.5_varspacing")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path):
    files = sorted(shared_dir.joinpath(*GE).glob("*.dcm"))
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(files)
        yield server


@pytest.fixture
def auth_env(orthanc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BODYSCORE_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("BODYSCORE_DICOMWEB_PASSWORD", orthanc.password)


def _series_uid(shared_dir: Path) -> str:
    import pydicom

    first = sorted(shared_dir.joinpath(*GE).glob("*.dcm"))[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)


def test_fetch_score_and_stow(orthanc, auth_env, shared_dir, tiny_model_dir, tmp_path) -> None:
    uid = _series_uid(shared_dir)
    url = f"{orthanc.dicomweb_scheme_root}?series={uid}"
    local, remote = tmp_path / "local", tmp_path / "remote"
    model = ["--model", str(tiny_model_dir)]
    assert main(["dicom", str(shared_dir.joinpath(*GE)), "-o", str(local), *model]) == 0
    assert main(["dicom", url, "-o", str(remote), "--sr", "--stow",
                 orthanc.dicomweb_scheme_root, *model]) == 0
    a = json.loads((local / f"{GE[-1]}.json").read_text())
    b = json.loads((remote / f"{uid}.json").read_text())
    assert a["unprocessed slice scores"] == b["unprocessed slice scores"]
    assert a["cleaned slice scores"] == b["cleaned slice scores"]
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.dicomweb_root, session=session)
    found = client.search_for_series(search_filters={"Modality": "SR"})
    assert len(found) == 1


def test_server_errors_are_one_line(orthanc, shared_dir, tiny_model_dir, tmp_path,
                                    monkeypatch, capsys) -> None:
    uid = _series_uid(shared_dir)
    model = ["--model", str(tiny_model_dir), "--retries", "0", "--timeout", "2"]
    out = tmp_path / "out"
    # 401: no credentials
    assert main(["dicom", f"{orthanc.dicomweb_scheme_root}?series={uid}", "-o", str(out),
                 *model]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    monkeypatch.setenv("BODYSCORE_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("BODYSCORE_DICOMWEB_PASSWORD", orthanc.password)
    # wrong UID
    assert main(["dicom", f"{orthanc.dicomweb_scheme_root}?series=1.2.3.4", "-o", str(out),
                 *model]) == 1
    assert "not found on the server" in capsys.readouterr().err
    # server down: a port nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["dicom", f"dicomweb://127.0.0.1:{port}/dicom-web?series={uid}", "-o",
                 str(out), *model]) == 1
    assert "cannot connect" in capsys.readouterr().err
    # timeout: a server that accepts and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    stop = threading.Event()
    try:
        port = silent.getsockname()[1]
        assert main(["dicom", f"dicomweb://127.0.0.1:{port}/x?series={uid}", "-o", str(out),
                     "--model", str(tiny_model_dir), "--retries", "0", "--timeout", "0.5"]) == 1
        assert "timed out" in capsys.readouterr().err
    finally:
        stop.set()
        silent.close()
    assert not out.exists() or not any(out.iterdir())


def test_half_uploaded_series(orthanc, auth_env, shared_dir, tiny_model_dir, tmp_path,
                              monkeypatch, capsys) -> None:
    import bodyscore.io.dicomweb as dw

    original = dw._find_series

    def one_more(*args, **kwargs):  # QIDO says one instance more than WADO returns
        study, series, count = original(*args, **kwargs)
        return study, series, (count or 0) + 1

    monkeypatch.setattr(dw, "_find_series", one_more)
    uid = _series_uid(shared_dir)
    out = tmp_path / "out"
    assert main(["dicom", f"{orthanc.dicomweb_scheme_root}?series={uid}", "-o", str(out),
                 "--model", str(tiny_model_dir)]) == 1
    assert "may still be uploading" in capsys.readouterr().err
    assert not out.exists()


def test_seg_and_sr_of_the_default_model_round_trip_through_orthanc(
    orthanc, auth_env, shared_dir, tmp_path
) -> None:
    """With a trained model the head series has body regions: the SEG and the SR are stored
    with STOW-RS, found again with QIDO, and read back with highdicom."""
    import highdicom as hd
    import requests
    from dicomweb_client.api import DICOMwebClient

    import bodyscore
    from bodyscore.errors import ModelError

    try:
        bodyscore.load_model("default")
    except ModelError:
        pytest.skip("the default model package is not installed")
    uid = _series_uid(shared_dir)
    url = f"{orthanc.dicomweb_scheme_root}?series={uid}"
    out = tmp_path / "out"
    assert main(["dicom", url, "-o", str(out), "--seg", "--sr", "--stow",
                 orthanc.dicomweb_scheme_root]) == 0
    seg = hd.seg.segread(out / f"{uid}_seg.dcm")
    assert seg.number_of_segments >= 1
    session = requests.Session()
    session.auth = (orthanc.user, orthanc.password)
    client = DICOMwebClient(orthanc.dicomweb_root, session=session)
    stored = client.search_for_series(search_filters={"Modality": "SEG"})
    assert [s["0020000E"]["Value"][0] for s in stored] == [seg.SeriesInstanceUID]
    fetched = client.retrieve_series(seg.StudyInstanceUID, seg.SeriesInstanceUID)
    assert fetched[0].SOPInstanceUID == seg.SOPInstanceUID
