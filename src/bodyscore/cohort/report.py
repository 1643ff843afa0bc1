"""Self-contained HTML audit report: how reliable is DICOM BodyPartExamined?

Charts are inline SVG, thumbnails inline PNG (``data:`` URIs) written by the cohort runner
(:func:`bodyscore.export.plots.render_png`: score curve + coronal view coloured by region), so
the page needs no external resource. Sections: tag distributions (DICOM vs predicted), their
confusion table, missing/wrong shares by collection and manufacturer, suspicious series
(reversed z, invalid z-spacing, tag mismatch, anatomy disagreement, failures) with links to the
IDC viewer, and optionally the metadata-only view of all CT series in the IDC index.

Seed 000 (IDC project): "show how the body part examined tag is unreliable (pie charts)".
"""

from __future__ import annotations

import base64
import html
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bodyscore.cohort.tags import compare_tags
from bodyscore.errors import InputError
from bodyscore.export.atomic import atomic_write_text

__all__ = ["OHIF_VIEWER", "idc_metadata_summary", "render_report", "viewer_url", "write_report"]

#: IDC's OHIF v3 viewer.
OHIF_VIEWER = "https://viewer.imaging.datacommons.cancer.gov/v3/viewer/"

_CSS = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:24px}.note{color:#666;font-size:12px}
.series{border:1px solid #ddd;margin:8px 0;padding:6px}
.series img{max-width:620px;display:block}
"""


def viewer_url(study_uid: str | None, series_uid: str | None) -> str | None:
    """Link opening a series in IDC's OHIF viewer; None without both UIDs."""
    if not study_uid or not series_uid:
        return None
    return (
        f"{OHIF_VIEWER}?StudyInstanceUIDs={quote(study_uid)}&SeriesInstanceUIDs={quote(series_uid)}"
    )


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def _bar_chart(
    title: str, counts: Sequence[tuple[str, int]], *, colour: str = "#4a7fb5", width: int = 520
) -> str:
    """Horizontal bar chart as inline SVG (label, bar, count and share)."""
    total = sum(n for _, n in counts) or 1
    row_h, label_w = 18, 170
    height = 26 + row_h * max(len(counts), 1)
    peak = max((n for _, n in counts), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{_e(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{_e(title)}</text>',
    ]
    for i, (label, n) in enumerate(counts):
        y = 22 + i * row_h
        bar = (width - label_w - 110) * n / peak
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 12}" font-size="11" '
            f'text-anchor="end">{_e(label[:28])}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{bar:.1f}" height="{row_h - 4}" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{label_w + bar + 4:.1f}" y="{y + 12}" font-size="11">'
            f"{n} ({100 * n / total:.0f}%)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _label(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return text or "(missing)"


def _confusion(rows: Sequence[Mapping[str, Any]]) -> str:
    pairs = Counter(
        (_label(r.get("dicom_body_part")), _label(r.get("predicted_tag"))) for r in rows
    )
    dicom = sorted({d for d, _ in pairs})
    predicted = sorted({p for _, p in pairs})
    head = "".join(f"<th>{_e(p)}</th>" for p in predicted)
    body = "".join(
        f'<tr><th class="l">{_e(d)}</th>'
        + "".join(f"<td>{pairs.get((d, p), '') or ''}</td>" for p in predicted)
        + "</tr>"
        for d in dicom
    )
    return f'<table><tr><th class="l">DICOM ↓ / predicted →</th>{head}</tr>{body}</table>'


def _shares_by(rows: Sequence[Mapping[str, Any]], column: str) -> str:
    groups: dict[str, Counter[str]] = {}
    for r in rows:
        groups.setdefault(_label(r.get(column)), Counter())[str(r.get("tag_agreement"))] += 1
    lines = []
    for name, counts in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        lines.append(
            f'<tr><td class="l">{_e(name)}</td><td>{n}</td>'
            f"<td>{100 * counts['missing'] / n:.0f}%</td><td>{100 * counts['wrong'] / n:.0f}%</td>"
            f"<td>{100 * counts['agree'] / n:.0f}%</td></tr>"
        )
    return (
        f'<table><tr><th class="l">{_e(column)}</th><th>series</th><th>missing tag</th>'
        f"<th>wrong tag</th><th>agree</th></tr>{''.join(lines)}</table>"
    )


def _thumbnail(path: Any) -> str:
    if not path:
        return ""
    try:
        data = Path(str(path)).read_bytes()
    except OSError:
        return '<p class="note">(thumbnail missing)</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="score curve and coronal view" src="data:image/png;base64,{encoded}">'


def _series_item(row: Mapping[str, Any], reason: str) -> str:
    link = viewer_url(row.get("study_uid"), row.get("series_uid"))
    link_html = f' — <a href="{_e(link)}">open in IDC viewer</a>' if link else ""
    details = (
        f"DICOM BodyPartExamined: <b>{_e(_label(row.get('dicom_body_part')))}</b>, "
        f"predicted: <b>{_e(row.get('predicted_tag'))}</b>, collection "
        f"{_e(row.get('collection'))}, manufacturer {_e(row.get('manufacturer'))}, "
        f"z-spacing {_num(row.get('z_spacing_mm'))} mm, expected "
        f"{_num(row.get('expected_z_spacing_mm'))} mm"
    )
    return (
        f'<div class="series"><b>{_e(row.get("key"))}</b> ({_e(reason)}){link_html}<br>'
        f'<span class="note">series {_e(row.get("series_uid"))} · study '
        f"{_e(row.get('study_uid'))} · {_e(row.get('source'))}</span><br>{details}"
        f"{_thumbnail(row.get('thumbnail_png'))}</div>"
    )


def _suspicious(
    rows: Sequence[Mapping[str, Any]], anatomy: Mapping[str, str], max_listed: int
) -> str:
    ok = [r for r in rows if r.get("status") == "ok"]
    lists = [
        ("Reversed z-order", [r for r in ok if r.get("reverse_z")], "scores fall towards head"),
        (
            "Invalid z-spacing",
            [r for r in ok if r.get("valid_z_spacing") is False],
            "slope ratio off",
        ),
        (
            "Tag mismatch",
            [r for r in ok if r.get("tag_agreement") == "wrong"],
            "DICOM tag and prediction share no region",
        ),
        (
            "Anatomy disagreement",
            [r for r in ok if r.get("series_uid") in anatomy or r.get("key") in anatomy],
            "segmentation vs regions",
        ),
    ]
    out = []
    for title, items, reason in lists:
        out.append(f"<h3>{_e(title)} ({len(items)})</h3>")
        for row in items[:max_listed]:
            why = anatomy.get(str(row.get("series_uid")), anatomy.get(str(row.get("key")), reason))
            out.append(_series_item(row, why))
        if len(items) > max_listed:
            out.append(f'<p class="note">… and {len(items) - max_listed} more</p>')
    failed = [r for r in rows if r.get("status") != "ok"]
    out.append(
        f"<h3>Failed series ({len(failed)})</h3><table><tr><th class='l'>series</th>"
        "<th class='l'>error</th></tr>"
    )
    out += [
        f"<tr><td class='l'>{_e(r.get('key'))}</td><td class='l'>{_e(r.get('error'))}</td></tr>"
        for r in failed
    ]
    out.append("</table>")
    return "".join(out)


def _results_section(
    rows: Sequence[Mapping[str, Any]], anatomy: Mapping[str, str], max_listed: int
) -> str:
    ok = [dict(r) for r in rows if r.get("status") == "ok"]
    for r in ok:
        r["tag_agreement"] = r.get("tag_agreement") or compare_tags(
            r.get("dicom_body_part"), r.get("predicted_tag")
        )
    dicom = Counter(_label(r.get("dicom_body_part")) for r in ok).most_common(20)
    predicted = Counter(_label(r.get("predicted_tag")) for r in ok).most_common(20)
    agreement = Counter(str(r["tag_agreement"]) for r in ok).most_common()
    return (
        f"<h2>Cohort: {len(rows)} series ({len(ok)} scored, {len(rows) - len(ok)} failed)</h2>"
        '<div class="charts">'
        + _bar_chart("DICOM BodyPartExamined", dicom)
        + _bar_chart("Predicted body part examined tag", predicted, colour="#3c9a5f")
        + _bar_chart("DICOM tag vs prediction", agreement, colour="#c0504d")
        + "</div><h2>Confusion table</h2>"
        + _confusion(ok)
        + "<h2>Missing and wrong tags by collection</h2>"
        + _shares_by(ok, "collection")
        + "<h2>… by manufacturer</h2>"
        + _shares_by(ok, "manufacturer")
        + "<h2>Suspicious series</h2>"
        + _suspicious(rows, anatomy, max_listed)
    )


def idc_metadata_summary(
    *, index_path: str | os.PathLike[str] | None = None, modality: str = "CT", top: int = 25
) -> dict[str, list[tuple[Any, ...]]]:
    """BodyPartExamined over all series of a modality in the IDC index (no images needed).

    Returns
    -------
    dict
        ``"body_parts"``: (value, n_series); ``"collections"``: (collection_id, n_series,
        n_missing, missing_share) sorted by series count; ``"total"``: [(n_series, n_missing)].
    """
    import duckdb

    from bodyscore.cohort.idc import index_parquet_path

    source = str(index_path or index_parquet_path()).replace("'", "''")
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW s AS SELECT collection_id, nullif(trim(BodyPartExamined), '')"  # noqa: S608 - paths are quoted, values bound
            f" AS bpe FROM read_parquet('{source}') WHERE upper(Modality) = "
            f"'{modality.upper().replace(chr(39), '')}'"
        )
        body_parts = con.execute(
            "SELECT coalesce(bpe, '(missing)'), count(*) n FROM s GROUP BY 1 "  # noqa: S608 - paths are quoted, values bound
            f"ORDER BY n DESC LIMIT {int(top)}"
        ).fetchall()
        collections = con.execute(
            "SELECT collection_id, count(*) n, count(*) FILTER (WHERE bpe IS NULL) m, "
            "round(m / n, 3) FROM s GROUP BY 1 ORDER BY n DESC"
        ).fetchall()
        total = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE bpe IS NULL) FROM s"
        ).fetchall()
    finally:
        con.close()
    return {"body_parts": body_parts, "collections": collections, "total": total}


def _idc_section(summary: Mapping[str, Sequence[tuple[Any, ...]]]) -> str:
    n, missing = summary["total"][0]
    rows = "".join(
        f'<tr><td class="l">{_e(c)}</td><td>{s}</td><td>{m}</td><td>{100 * float(share):.0f}%</td>'
        "</tr>"
        for c, s, m, share in summary["collections"]
    )
    return (
        f"<h2>IDC index: all {n} CT series (metadata only)</h2>"
        f"<p>BodyPartExamined is missing in {missing} series "
        f"({100 * missing / max(n, 1):.1f}%).</p>"
        + _bar_chart(
            "BodyPartExamined of all IDC CT series",
            [(str(v), int(c)) for v, c in summary["body_parts"]],
            width=700,
        )
        + "<h3>Missing BodyPartExamined per collection</h3><table><tr><th class='l'>collection"
        "</th><th>CT series</th><th>missing</th><th>missing share</th></tr>" + rows + "</table>"
    )


def _read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_table(path).to_pylist())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable results table; create it with 'bodyscore cohort run'"
        ) from exc


def _read_anatomy(path: str | os.PathLike[str] | None) -> dict[str, str]:
    if path is None:
        return {}
    rows = _read_rows(path)
    out: dict[str, str] = {}
    for r in rows:
        if not r.get("agrees", True):
            key = str(r.get("series_uid"))
            out[key] = (out.get(key, "") + f"{r.get('structure')}: {r.get('message')}; ").strip()
    return out


def render_report(
    *,
    results: Sequence[Mapping[str, Any]] | None = None,
    idc_summary: Mapping[str, Sequence[tuple[Any, ...]]] | None = None,
    anatomy: Mapping[str, str] | None = None,
    max_listed: int = 20,
) -> str:
    """The report as an HTML string (no external resources)."""
    body = [
        "<h1>bodyscore cohort audit: DICOM BodyPartExamined vs predicted body part</h1>",
        '<p class="note">Predicted tags from body part regression (thesis sec. 4.3.1, '
        "fig. 4.9). A DICOM tag <i>agrees</i> when it names at least one predicted region."
        "</p>",
    ]
    if results is not None:
        body.append(_results_section(results, anatomy or {}, max_listed))
    if idc_summary is not None:
        body.append(_idc_section(idc_summary))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<title>bodyscore cohort audit</title><link rel="icon" href="data:,">'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(
    path: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    idc_metadata: bool = False,
    anatomy: str | os.PathLike[str] | None = None,
    max_listed: int = 20,
) -> Path:
    """Write the HTML report atomically from a results table and/or the IDC index."""
    rows = _read_rows(results) if results is not None else None
    summary = idc_metadata_summary() if idc_metadata else None
    text = render_report(
        results=rows, idc_summary=summary, anatomy=_read_anatomy(anatomy), max_listed=max_listed
    )
    return atomic_write_text(path, text)
