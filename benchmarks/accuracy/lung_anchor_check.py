"""How well the automatic lung anchors match the annotated lung ends, on the shared real CT.

    python benchmarks/accuracy/lung_anchor_check.py [--openkbp 30] [--seed 0] \
        [-o benchmarks/accuracy/lung_anchors.md]

Every volume is preprocessed exactly as the training cache stores it
(:func:`bodyscore.preprocess.preprocess_slices`, default preprocessing, float16) and read back
as :func:`bodyscore.train.auto_anchors.lung_anchors_from_cache` does (``hu_from_cache`` then
``detect_lung_extent``, keeping the notes on why an end is None). Compared with the annotations:

* ``shared/data/ct/landmarks.json`` (20 annotated volumes) and
  ``shared/data/ct-unlabelled/regions.json`` (13 volumes, weak labels read once by eye);
* a random sample of OpenKBP head-and-neck volumes (upper thorax → cranium, no annotation):
  ``lung_start`` must come out None there (a detection is false); ``lung_end`` is listed.

A detection where the annotation is null (the end is outside the volume or not readable) is a
false anchor; so is one more than ``--wrong-mm`` from the annotation. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from bodyscore.evaluate.landmarks import read_landmarks  # noqa: E402
from bodyscore.io.nifti import read_nifti  # noqa: E402
from bodyscore.preprocess import DEFAULT_PREPROCESSING, preprocess_slices  # noqa: E402
from bodyscore.train.auto_anchors import detect_lung_extent, hu_from_cache  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ANNOTATIONS = (("annotated", DATA / "ct" / "landmarks.json"),
               ("unlabelled", DATA / "ct-unlabelled" / "regions.json"))
OPENKBP = DATA / "ct-unlabelled" / "openkbp"
ENDS = ("lung_start", "lung_end")


@dataclass(frozen=True)
class Row:
    """One volume: annotated and detected ends (canonical k), slice spacing, notes."""

    volume_id: str
    group: str
    n_slices: int
    z_mm: float
    annotated: dict[str, float | None]
    unknown: bool  # no annotation at all (OpenKBP sample): only lung_start is checked
    detected: dict[str, float | None]
    notes: str


def _detect(path: Path) -> tuple[int, float, dict[str, float | None], str]:
    volume = read_nifti(path)
    cached = preprocess_slices(volume.array, pixel_spacing_mm=volume.spacing_mm[1:],
                               config=DEFAULT_PREPROCESSING)[:, 0].astype(np.float16)
    extent = detect_lung_extent(
        hu_from_cache(cached, preprocessing=DEFAULT_PREPROCESSING),
        pixel_spacing_mm=(DEFAULT_PREPROCESSING.target_spacing_mm,) * 2,
        z_spacing_mm=volume.spacing_mm[0])
    detected = {"lung_start": extent.lung_start, "lung_end": extent.lung_end}
    return volume.n_slices, volume.spacing_mm[0], detected, "; ".join(extent.notes)


def _rows(n_openkbp: int, seed: int) -> list[Row]:
    rows = []
    for group, path in ANNOTATIONS:
        for volume_id, annotation in read_landmarks(path).items():
            if annotation.file is None or not annotation.file.is_file():
                continue
            n, dz, detected, notes = _detect(annotation.file)
            marks = annotation.landmarks
            annotated = {e: (marks[e].fractional_index() if e in marks else None) for e in ENDS}
            rows.append(Row(volume_id, group, n, dz, annotated, False, detected, notes))
    files = sorted(OPENKBP.glob("*.nii.gz"))
    picks = np.random.default_rng(seed).choice(len(files), size=min(n_openkbp, len(files)),
                                               replace=False)
    for i in sorted(picks.tolist()):
        n, dz, detected, notes = _detect(files[i])
        rows.append(Row(files[i].name.removesuffix(".nii.gz"), "openkbp", n, dz,
                        dict.fromkeys(ENDS), True, detected, notes))
    return rows


def _k(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _error_mm(row: Row, end: str) -> float | None:
    truth, found = row.annotated[end], row.detected[end]
    if truth is None or found is None:
        return None
    return (found - truth) * row.z_mm


def _verdict(row: Row, end: str, wrong_mm: float) -> str:
    truth, found = row.annotated[end], row.detected[end]
    if row.unknown and end == "lung_end":
        return "detected" if found is not None else ""
    if found is None:
        return "missed" if truth is not None else ""
    if truth is None:
        return "**FALSE**"
    error = _error_mm(row, end)
    return "**WRONG**" if error is not None and abs(error) > wrong_mm else "ok"


def _summary(rows: list[Row], wrong_mm: float) -> list[str]:
    lines = ["| end | annotated | detected (of annotated) | false (annotation null) | "
             f"wrong (> {wrong_mm:g} mm) | error mm: mean signed / mean abs / median abs / max "
             "abs |", "|---|---|---|---|---|---|"]
    for end in ENDS:
        judged = [r for r in rows if not (r.unknown and end == "lung_end")]
        annotated = [r for r in judged if r.annotated[end] is not None]
        found = [r for r in annotated if r.detected[end] is not None]
        false = [r for r in judged if r.annotated[end] is None and r.detected[end] is not None]
        errors = np.array([_error_mm(r, end) for r in found], dtype=float)
        wrong = int(np.sum(np.abs(errors) > wrong_mm)) if errors.size else 0
        stats = (f"{errors.mean():+.1f} / {np.abs(errors).mean():.1f} / "
                 f"{np.median(np.abs(errors)):.1f} / {np.abs(errors).max():.1f}"
                 if errors.size else "–")
        lines.append(f"| {end} | {len(annotated)} | {len(found)} | {len(false)} of "
                     f"{len(judged) - len(annotated)} | {wrong} | {stats} |")
    sample = [r for r in rows if r.unknown]
    if sample:
        apex = [r.detected["lung_end"] for r in sample if r.detected["lung_end"] is not None]
        lines += ["", f"OpenKBP sample ({len(sample)} volumes, no annotation): lung_end "
                  f"detected in {len(apex)}; lung_start must be None (counted above as false)."]
    return lines


def _table(rows: list[Row], wrong_mm: float) -> list[str]:
    lines = ["| volume | set | slices × mm | lung_start annotated → detected (error mm) | "
             "lung_end annotated → detected (error mm) | notes |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for end in ENDS:
            truth = "?" if r.unknown and end == "lung_end" else _k(r.annotated[end])
            error = _error_mm(r, end)
            extra = "" if error is None else f" ({error:+.1f})"
            verdict = _verdict(r, end, wrong_mm)
            cells.append(f"{truth} → {_k(r.detected[end])}{extra} {verdict}".rstrip())
        lines.append(f"| {r.volume_id} | {r.group} | {r.n_slices} × {r.z_mm:g} | {cells[0]} | "
                     f"{cells[1]} | {r.notes} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openkbp", type=int, default=30, help="OpenKBP volumes to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wrong-mm", type=float, default=10.0)
    parser.add_argument("-o", "--output", type=Path,
                        default=ROOT / "benchmarks" / "accuracy" / "lung_anchors.md")
    args = parser.parse_args(argv)
    rows = _rows(args.openkbp, args.seed)
    text = ["# Automatic lung anchors vs annotations", "",
            "Written by `benchmarks/accuracy/lung_anchor_check.py "
            f"--openkbp {args.openkbp} --seed {args.seed}`: every volume preprocessed as the "
            "training cache (3.5 mm, 128², float16), then "
            "`bodyscore.train.auto_anchors.detect_lung_extent` (default thresholds). k = "
            "canonical slice index (0 = most caudal); error = (detected − annotated) × slice "
            "spacing; – = none. Annotations: `ct/landmarks.json` (annotated), "
            "`ct-unlabelled/regions.json` (weak labels, read once by eye); OpenKBP: no "
            "annotation, lung_start must be None.", "", "## Summary", "",
            *_summary(rows, args.wrong_mm), "", "## Per volume", "", *_table(rows, args.wrong_mm),
            ""]
    args.output.write_text("\n".join(text), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
