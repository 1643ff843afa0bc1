"""DICOM test series made from the shared ones: multi-frame CT (highdicom's legacy converter),
anonymised copies with empty data-set UIDs, per-slice frames of reference; and dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom

DCIODVFY = shutil.which("dciodvfy")


def make_multiframe(src: Path, dst: Path, *, n_slices: int, n_files: int = 1) -> Path:
    """Convert the first ``n_slices`` files of ``src`` into ``n_files`` Legacy Converted Enhanced
    CT instances of one new series in ``dst`` (one frame of reference, as the converter needs)."""
    import highdicom as hd

    files = sorted(src.iterdir())[:n_slices]
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        ds.FrameOfReferenceUID = datasets[0].FrameOfReferenceUID
    dst.mkdir(parents=True, exist_ok=True)
    series = hd.UID()
    per_file = -(-n_slices // n_files)
    for i in range(n_files):
        image = hd.legacy.LegacyConvertedEnhancedCTImage(
            datasets[i * per_file:(i + 1) * per_file],
            series_instance_uid=series,
            series_number=99,
            sop_instance_uid=hd.UID(),
            instance_number=i + 1,
        )
        image.save_as(dst / f"enhanced_{i + 1}.dcm")
    return dst


def rewrite_series(src: Path, dst: Path, change: Callable[[int, Any], None]) -> Path:
    """Copy a series, calling ``change(k, dataset)`` on file k (sorted by name) before saving."""
    dst.mkdir(parents=True, exist_ok=True)
    for k, file in enumerate(sorted(src.iterdir())):
        ds = pydicom.dcmread(file)
        change(k, ds)
        ds.save_as(dst / file.name)
    return dst


def empty_sop_uids(k: int, ds: Any) -> None:
    """Blank SOPClassUID/SOPInstanceUID in the data set (the file meta keeps them)."""
    ds.SOPClassUID = ""
    ds.SOPInstanceUID = ""


def own_frame_of_reference(k: int, ds: Any) -> None:
    """Give every slice its own FrameOfReferenceUID."""
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=["for", str(k)])


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy (dicom3tools) reports for a file."""
    assert DCIODVFY is not None
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False,
                         timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
