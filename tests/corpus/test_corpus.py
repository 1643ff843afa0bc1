"""Every case of the bad-input corpus (``make_corpus.py``) gives its exact expected outcome.

Through :func:`bodyscore.io.read_volume`: a result of the right shape with exactly the expected
warnings, or the expected bodyscore exception (exact type) whose one-line message names the file
and the problem — never a dependency's exception, never a hang (pytest-timeout), never more than
a few hundred MB of memory. Cases marked ``end_to_end`` also go through ``bodyscore predict``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import resource
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from make_corpus import CASES, Case

from bodyscore.cli import main
from bodyscore.errors import InputError
from bodyscore.io import read_volume

MAX_TRACED_BYTES = 200 * 2**20  # numpy/python allocations of one read
MAX_RSS_GROWTH_KB = 600 * 2**10  # whole-process peak growth (C++ readers included)

CATEGORIES = {
    "truncated/corrupted gzip",
    "header dims disagree with data",
    "zero/negative/NaN spacing",
    "non-orthogonal/singular affine",
    "NaN/inf/extreme voxel values",
    "all-air/all-bone volumes",
    "1-3 slices",
    "2D/4D",
    "huge header dims, little data",
    "DICOM missing tags",
    "mixed series/modalities",
    "duplicate/missing slices",
    "varying slice thickness",
    "gantry tilt",
    "non-CT modality",
    "wrong/unknown transfer syntax",
    "non-DICOM files in the folder",
    "symlink loops",
    "paths with spaces and non-ASCII names",
}


def _names_in_message(case: Case, path: Path) -> list[str]:
    """Names of which at least one must appear in the error message."""
    names = [path.name]
    if path.is_dir():
        names += [p.name for p in path.rglob("*")]
    return names


def _read(path: Path) -> tuple[Any, BaseException | None, int, int]:
    """Read under tracemalloc; return (volume, exception, traced peak bytes, RSS growth kB)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    volume, error = None, None
    try:
        volume = read_volume(path)
    except Exception as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    return volume, error, peak, rss_growth


def test_corpus_size_and_categories() -> None:
    assert len(CASES) >= 50
    assert {c.category for c in CASES.values()} >= CATEGORIES
    formats = Counter(c.fmt for c in CASES.values())
    assert formats["nifti"] >= 15
    assert formats["itk"] >= 10
    assert formats["dicom"] >= 15


def test_corpus_is_small(corpus: dict[str, Path]) -> None:
    root = next(iter(corpus.values())).parents[1]
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    assert total < 8 * 2**20


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(CASES))
def test_case_outcome(name: str, corpus: dict[str, Path]) -> None:
    case = CASES[name]
    path = corpus[name]
    volume, error, peak, rss_growth = _read(path)
    assert peak < MAX_TRACED_BYTES, f"{name}: traced peak {peak / 2**20:.0f} MB"
    assert rss_growth < MAX_RSS_GROWTH_KB, f"{name}: RSS grew {rss_growth / 2**10:.0f} MB"
    expect = case.expect
    if expect.error is not None:
        assert error is not None, f"{name}: expected {expect.error.__name__}, got a result"
        assert type(error) is expect.error, f"{name}: {type(error).__name__}: {error}"
        message = str(error)
        assert "\n" not in message
        assert any(n in message for n in _names_in_message(case, path)), message
        for part in expect.message:
            assert part in message.lower(), f"{name}: {part!r} not in {message!r}"
        return
    assert error is None, f"{name}: unexpected {type(error).__name__}: {error}"
    assert volume.shape == expect.shape
    assert np.all(np.isfinite(volume.array))
    assert volume.is_superior_up()
    assert np.all(np.asarray(volume.spacing_mm) > 0)
    assert sorted(volume.slice_order.tolist()) == list(range(volume.shape[0]))
    text = " | ".join(volume.warnings).lower()
    if not expect.warnings:
        assert volume.warnings == (), f"{name}: unexpected warnings {volume.warnings}"
    for part in expect.warnings:
        assert part in text, f"{name}: warning {part!r} not in {volume.warnings}"


E2E = sorted(n for n, c in CASES.items() if c.expect.end_to_end)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", E2E)
def test_case_end_to_end(
    name: str,
    corpus: dict[str, Path],
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    path = corpus[name]
    out = tmp_path / "out"
    rc = main(["-q", "predict", str(path), "-o", str(out), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    results = sorted(out.glob("*.json")) if out.exists() else []
    if case.expect.error is not None:
        assert rc == 1
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, err
        assert any(n in errors[0] for n in _names_in_message(case, path))
        assert results == []
        return
    assert rc == 0, err
    assert len(results) == 1
    data = json.loads(results[0].read_text(encoding="utf-8"))
    assert len(data["cleaned slice scores"]) == case.expect.shape[0]  # type: ignore[index]
    for part in case.expect.warnings:
        assert any(part in w.lower() for w in data["warnings"])
    if name in ("nifti_all_air",):
        assert data["body part examined tag"] == "NONE"
        assert all(v is None for v in data["cleaned slice scores"])


# -- unreadable files (tests run as root: chmod 000 does not block reads, so it is simulated) ---
def _deny(monkeypatch: pytest.MonkeyPatch, victim: Path) -> None:
    """Make opening ``victim`` fail with PermissionError, as chmod 000 does for non-root."""
    if os.geteuid() != 0:
        victim.chmod(0)
        return
    real_open = builtins.open
    real_os_open = os.open

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and Path(file).resolve() == victim.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def fake_os_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file).resolve() == victim.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


@pytest.mark.timeout(30)
def test_unreadable_nifti(
    corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "locked.nii.gz"
    shutil.copy(corpus["nifti_reference"], victim)
    _deny(monkeypatch, victim)
    with pytest.raises(InputError, match="permission denied") as info:
        read_volume(victim)
    assert "locked.nii.gz" in str(info.value)


@pytest.mark.timeout(30)
def test_unreadable_slice_in_dicom_folder_is_reported(
    corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "locked_series"
    shutil.copytree(corpus["dicom_reference"], folder)
    _deny(monkeypatch, folder / "slice_011.dcm")
    volume = read_volume(folder)
    assert volume.shape[0] == 11
    assert any("slice_011.dcm" in w and "permission denied" in w for w in volume.warnings)
