"""One-page evaluation report: self-contained HTML (inline PNG plots, no scripts) and a PNG.

Contents: the metrics table with standard errors and the thesis' reference numbers, per-landmark
LMSE bars ± SE (thesis table 5.5), slice score versus z curves of all volumes with the annotated
landmarks marked (thesis fig. 5.7), per-volume numbers and, when two models are compared, the
z-test verdict (eq. 4.16).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bodyscore.evaluate.metrics import CLASS_BOUNDARIES, MeanSE, ZTest
from bodyscore.evaluate.runner import EvaluationReport

__all__ = ["THESIS_REFERENCE", "render_curve_plot", "render_html", "render_landmark_plot",
           "render_png"]

#: Reference numbers of the thesis' best model SSBR* (tables 5.6, 5.13, 5.14).
THESIS_REFERENCE: dict[str, str] = {
    "lmse": "2.65 ± 0.28 (test), 2.39 ± 0.23 (val)",
    "mae": "—",
    "accuracy": "94.7 % (test), 94.0 % (val)",
    "r2": "0.9918 ± 0.0011 (BTCV)",
    "region_accuracy": "—",
}

_COLOURS = ("#1f77b4", "#d62728")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _labels(reports: Sequence[EvaluationReport]) -> list[str]:
    """Model names, made distinct (``name (x)``, ``name (y)``) when two are equal."""
    names = [r.name for r in reports]
    if len(names) == 2 and names[0] == names[1]:
        return [f"{names[0]} (x)", f"{names[1]} (y)"]
    return names


def _draw_landmarks(ax: Any, reports: Sequence[EvaluationReport]) -> None:
    names = [e.name for e in reports[0].per_landmark]
    for other in reports[1:]:
        names += [e.name for e in other.per_landmark if e.name not in names]
    x = np.arange(len(names))
    width = 0.8 / len(reports)
    for i, report in enumerate(reports):
        by_name = {e.name: e for e in report.per_landmark}
        means = [by_name[n].lmse.mean if n in by_name else np.nan for n in names]
        errors = [by_name[n].lmse.se if n in by_name else np.nan for n in names]
        errors = [0.0 if not math.isfinite(e) else e for e in errors]
        ax.bar(x + (i - (len(reports) - 1) / 2) * width, means, width, yerr=errors, capsize=3,
               color=_COLOURS[i % 2], label=_labels(reports)[i], alpha=0.85)
        for n_i, name in enumerate(names):
            if name in by_name and by_name[name].n == 0:
                ax.text(n_i, 0, "n=0", ha="center", va="bottom", fontsize=7, color="grey")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("LMSE per landmark ± SE")
    ax.set_title("Per-landmark error (thesis table 5.5)")
    ax.grid(axis="y", alpha=0.3)
    if len(reports) > 1:
        ax.legend()


def _draw_curves(ax: Any, report: EvaluationReport, label: str = "") -> None:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    shown = set(report.landmarks) if report.landmarks is not None else None
    marker_names = sorted({n for v in report.volumes for n in v.landmark_scores
                           if shown is None or n in shown})
    colour_of = {n: cmap(i % 20) for i, n in enumerate(marker_names)}
    for volume in report.volumes:
        z, s = np.asarray(volume.z_mm), np.asarray(volume.scores)
        ax.plot(z, s, color="0.45", lw=0.9, alpha=0.8)
        for name, k in volume.landmark_k.items():
            if name in colour_of and name in volume.landmark_scores:
                zk = float(np.interp(k, np.arange(z.size), z))
                ax.plot(zk, volume.landmark_scores[name], "o", ms=4, color=colour_of[name])
    for _, start, _ in (*CLASS_BOUNDARIES, ("", "eyes_end", "")):
        if start in report.reference:
            ax.axhline(report.reference[start], color="0.75", lw=0.7, ls="--")
            ax.annotate(start, (1.0, report.reference[start]), xycoords=("axes fraction", "data"),
                        fontsize=7, color="0.4", ha="right", va="bottom")
    handles = [ax.plot([], [], "o", color=colour_of[n], label=n)[0] for n in marker_names]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title="landmarks", title_fontsize=8, frameon=False)
    ax.set_xlabel("z (mm, feet → head)")
    ax.set_ylabel(f"{report.score_kind} slice score")
    ax.set_title(f"{label or report.name}: slice score vs z, {len(report.volumes)} volumes")
    ax.grid(alpha=0.3)


def render_landmark_plot(reports: Sequence[EvaluationReport]) -> bytes:
    """PNG of the per-landmark LMSE ± SE bars of one or two reports."""
    fig = _figure(11.0, 4.0)
    _draw_landmarks(fig.add_subplot(), reports)
    return _png(fig)


def render_curve_plot(report: EvaluationReport, label: str = "") -> bytes:
    """PNG of all volumes' slice score vs z curves with landmark markers (thesis fig. 5.7)."""
    fig = _figure(11.0, 5.0)
    _draw_curves(fig.add_subplot(), report, label)
    return _png(fig)


def _fmt(value: MeanSE, *, percent: bool = False, digits: int = 3) -> str:
    if not math.isfinite(value.mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    unit = " %" if percent else ""
    text = f"{value.mean * scale:.{digits}g}"
    if math.isfinite(value.se):
        text += f" ± {value.se * scale:.2g}"
    return f"{text}{unit} (n={value.n})"


_ROWS = (
    ("lmse", "LMSE φ̄ ± σ (eq. 4.13–4.15)", False),
    ("mae", "landmark mean |error| ± SE (score units)", False),
    ("accuracy", "5-class accuracy ψ (table 4.5)", True),
    ("r2", "R² score vs z (eq. 3.8)", False),
    ("region_accuracy", "coarse region accuracy (per slice)", True),
)


def _metric(report: EvaluationReport, key: str) -> MeanSE:
    value: MeanSE = getattr(report, key)
    return value


def _summary_lines(reports: Sequence[EvaluationReport], test: ZTest | None) -> list[str]:
    lines = []
    for key, label, percent in _ROWS:
        values = "   ".join(_fmt(_metric(r, key), percent=percent) for r in reports)
        lines.append(f"{label}: {values}")
    if test is not None:
        lines.append(test.verdict(*_labels(reports)))
    return lines


def render_png(report: EvaluationReport, other: EvaluationReport | None = None,
               test: ZTest | None = None) -> bytes:
    """One PNG page: metrics summary, per-landmark bars and the score curves."""
    reports = [report] if other is None else [report, other]
    fig = _figure(11.0, 11.0)
    grid = fig.add_gridspec(3, 1, height_ratios=(0.55, 1.6, 2.2))
    text_ax = fig.add_subplot(grid[0])
    text_ax.axis("off")
    title = " vs ".join(_labels(reports))
    text_ax.set_title(f"bodyscore evaluation: {title}", loc="left", fontsize=13)
    text_ax.text(0.0, 1.0, "\n".join(_summary_lines(reports, test)), va="top",
                 family="monospace", fontsize=9, transform=text_ax.transAxes)
    _draw_landmarks(fig.add_subplot(grid[1]), reports)
    _draw_curves(fig.add_subplot(grid[2]), report, _labels(reports)[0])
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: float, *, percent: bool = False) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.3g}"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;
color:#222;line-height:1.4;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.verdict{padding:10px 14px;border-radius:4px;background:#eef5ff;border:1px solid #9bc;
font-size:15px}
.small{color:#555;font-size:13px} img{max-width:100%;height:auto}
"""


def render_html(report: EvaluationReport, other: EvaluationReport | None = None,
                test: ZTest | None = None) -> str:
    """The self-contained one-page HTML report (inline PNGs, inline CSS, no scripts).

    Parameters
    ----------
    report : EvaluationReport
        Model x.
    other : EvaluationReport, optional
        Model y, compared with x.
    test : ZTest, optional
        z-test of x against y (eq. 4.16), shown as the verdict.
    """
    esc = html.escape
    reports = [report] if other is None else [report, other]
    labels = _labels(reports)
    head = "".join(f"<th>{esc(label)}</th>" for label in labels)
    rows = []
    for key, label, percent in _ROWS:
        cells = "".join(f"<td>{esc(_fmt(_metric(r, key), percent=percent))}</td>"
                        for r in reports)
        rows.append(f"<tr><td>{esc(label)}</td>{cells}<td>{esc(THESIS_REFERENCE[key])}</td></tr>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>bodyscore evaluation: {esc(' vs '.join(labels))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>bodyscore evaluation: {esc(' vs '.join(labels))}</h1>",
        f'<p class="small">{len(report.volumes)} volumes evaluated; scores: '
        f"{esc(report.score_kind)}; pseudo-labels: {esc(report.reference_kind)} reference "
        f"table; normalisation d = {report.d:.4g} (eq. 4.12); LMSE landmarks: "
        f"{esc(', '.join(report.landmarks) if report.landmarks else 'all shared')}.</p>",
    ]
    if test is not None and other is not None:
        parts.append(f'<p class="verdict"><b>z-test:</b> '
                     f"{esc(test.verdict(*labels))}</p>")
    parts += [
        "<h2>Metrics (mean over volumes ± standard error)</h2>",
        f"<table><tr><th>metric</th>{head}<th>thesis SSBR*</th></tr>{''.join(rows)}</table>",
        '<p class="small">Thesis numbers come from 1,000+ annotated CTs and the thesis model; '
        "they are a yardstick, not comparable one-to-one with a small or different data set."
        "</p>",
        "<h2>Per-landmark error</h2>",
        _img(render_landmark_plot(reports), "per-landmark LMSE with standard errors"),
        _landmark_table(reports),
        "<h2>Slice score curves</h2>",
    ]
    parts += [_img(render_curve_plot(r, label), f"slice score vs z curves of {label}")
              for r, label in zip(reports, labels, strict=True)]
    parts += ["<h2>Per volume</h2>", _volume_table(report)]
    notes = [*report.notes, *report.skipped]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) +
                     "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _landmark_table(reports: Sequence[EvaluationReport]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(label)} LMSE ± SE</th><th>n</th><th>bias</th>"
                   for label in _labels(reports))
    names = [e.name for e in reports[0].per_landmark]
    rows = []
    for name in names:
        cells = []
        for r in reports:
            e = next((x for x in r.per_landmark if x.name == name), None)
            if e is None or e.n == 0:
                cells.append("<td>–</td><td>0</td><td>–</td>")
                continue
            cells.append(f"<td>{esc(_fmt(e.lmse).split(' (n=')[0])}</td><td>{e.n}</td>"
                         f"<td>{_cell(e.bias)}</td>")
        ref = reports[0].reference.get(name, math.nan)
        rows.append(f"<tr><td>{esc(name)}</td><td>{_cell(ref)}</td>{''.join(cells)}</tr>")
    return (f"<table><tr><th>landmark</th><th>pseudo-label s̄</th>{head}</tr>"
            f"{''.join(rows)}</table>")


def _volume_table(report: EvaluationReport) -> str:
    esc = html.escape
    rows = []
    for v in report.volumes:
        rows.append(
            f"<tr><td>{esc(v.volume_id)}</td><td>{len(v.landmark_scores)}</td>"
            f"<td>{_cell(v.lmse)}</td><td>{_cell(v.mae)}</td>"
            f"<td>{_cell(v.accuracy, percent=True)}</td><td>{_cell(v.r2)}</td>"
            f"<td>{_cell(v.region_accuracy, percent=True)}</td><td>{esc(v.tag)}</td></tr>"
        )
    return ("<table><tr><th>volume</th><th>landmarks</th><th>LMSE</th><th>|error|</th>"
            "<th>5-class acc.</th><th>R²</th><th>region acc.</th><th>tag</th></tr>"
            f"{''.join(rows)}</table>")
