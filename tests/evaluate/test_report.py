"""HTML/PNG evaluation report: self-contained, readable, renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bodyscore.evaluate import report as rep
from bodyscore.evaluate.metrics import LandmarkError, MeanSE, z_test
from bodyscore.evaluate.runner import EvaluationReport, VolumeEvaluation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _report(name: str, lmse: float) -> EvaluationReport:
    """A hand-made report of two volumes (no model needed)."""
    reference = {"pelvis_start": 0.0, "L5": 25.5, "Th11": 47.7, "Th2": 73.4, "C1": 89.2,
                 "eyes_end": 100.0}
    volumes = tuple(
        VolumeEvaluation(
            volume_id=f"vol{i}", source=f"vol{i}.nii.gz",
            landmark_k={"L5": 10.0 + i, "Th11": 30.0}, landmark_scores={"L5": 26.0 + i,
                                                                         "Th11": 46.0},
            lmse=lmse + i, mae=1.0 + i, accuracy=0.9, n_class_slices=20, r2=0.99,
            region_accuracy=0.8, n_region_slices=40, tag="ABDOMEN-CHEST",
            z_mm=tuple(float(5 * j) for j in range(40)),
            scores=tuple(20.0 + 0.6 * j for j in range(40)),
        )
        for i in range(2)
    )
    per_landmark = (
        LandmarkError("L5", 2, 25.5, MeanSE(lmse, 0.3, 2), MeanSE(1.2, 0.1, 2), 0.5, 0.7),
        LandmarkError("Th11", 2, 47.7, MeanSE(lmse + 1, 0.5, 2), MeanSE(1.7, 0.2, 2), -1.0, 1.1),
        LandmarkError("C1", 0, 89.2, MeanSE(float("nan"), float("nan"), 0),
                      MeanSE(float("nan"), float("nan"), 0), float("nan"), float("nan")),
    )
    return EvaluationReport(
        model={"name": name, "sha256": "ab" * 32}, score_kind="unprocessed",
        reference_kind="model", reference=reference, d=1.0,
        landmarks=("L5", "Th11", "C1"), lmse=MeanSE(lmse + 0.5, 0.5, 2),
        mae=MeanSE(1.5, 0.5, 2), accuracy=MeanSE(0.9, 0.0, 2), r2=MeanSE(0.99, 0.001, 2),
        region_accuracy=MeanSE(0.8, 0.0, 2), per_landmark=per_landmark, volumes=volumes,
        skipped=("vol9: image not found",), notes=("a <note> with markup",),
    )


@pytest.fixture(scope="module")
def html_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = _report("model-a", 2.0), _report("model-b", 6.0)
    page = tmp_path_factory.mktemp("report") / "report.html"
    page.write_text(rep.render_html(x, y, z_test(x.lmse, y.lmse)), encoding="utf-8")
    return page


def test_html_is_self_contained(html_page: Path) -> None:
    text = html_page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    assert text.count('src="data:image/png;base64,') == 3  # landmark bars + 2 curve plots
    assert "a &lt;note&gt; with markup" in text  # escaped
    assert "2.5 ± 0.5" in text  # LMSE ± SE of model-a
    # φ̄ 2.5 ± 0.5 vs 6.5 ± 0.5: t = -4 / √0.5 = -5.66 → model-a significantly better
    assert "model-a has a significantly lower LMSE than model-b (t = -5.66" in text
    assert "vol9: image not found" in text


def test_png_report() -> None:
    x, y = _report("same", 2.0), _report("same", 2.0)
    png = rep.render_png(x, y, z_test(x.lmse, y.lmse))
    assert png[:8] == PNG_MAGIC
    assert len(png) > 20_000
    assert rep.render_png(x)[:8] == PNG_MAGIC


def test_verdict_names_the_better_model() -> None:
    x, y = _report("model-a", 2.0), _report("model-b", 6.0)
    x = EvaluationReport(**{**x.__dict__, "lmse": MeanSE(2.0, 0.2, 50)})
    y = EvaluationReport(**{**y.__dict__, "lmse": MeanSE(4.0, 0.3, 50)})
    text = rep.render_html(x, y, z_test(x.lmse, y.lmse))
    assert "model-a has a significantly lower LMSE than model-b" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_args(tmp_path: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]


def _screenshot(chromium: str, page: Path, shot: Path, tmp_path: Path) -> list[str]:
    """Take a screenshot; return Chromium's console/uncaught-error log lines."""
    run = subprocess.run(
        [chromium, *_chromium_args(tmp_path), f"--screenshot={shot}", "--window-size=1280,2000",
         "--enable-logging=stderr", "--v=0", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [line for line in run.stderr.splitlines()
            if "uncaught" in line.lower() or ":CONSOLE" in line.upper()]


def test_report_renders_in_headless_chromium(html_page: Path, tmp_path: Path) -> None:
    """Screenshot of the page; Chromium's log must hold no JavaScript/console messages."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    # the scanner sees console errors (a page that logs one and throws)
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); nope();</script></body></html>")
    assert len(_screenshot(chromium, bad, tmp_path / "bad.png", tmp_path)) == 2

    shot = tmp_path / "report.png"
    assert _screenshot(chromium, html_page, shot, tmp_path) == []
    assert shot.read_bytes()[:8] == PNG_MAGIC
    assert shot.stat().st_size > 50_000
    dom = subprocess.run(
        [chromium, *_chromium_args(tmp_path), "--dump-dom", html_page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert "Per-landmark error" in dom.stdout
    assert "model-b" in dom.stdout
