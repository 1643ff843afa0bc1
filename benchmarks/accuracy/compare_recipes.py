"""The recipes side by side on held-out real CT (issue 17, item 3): one markdown table.

    A=benchmarks/accuracy
    python $A/compare_recipes.py --recipe "default 2026.12.1 (2,000 steps, seed 0)=$A/cv/cv.json" \
        --recipe "same recipe, seed 1=$A/cv/seed-1/cv.json" \
        --recipe "same recipe, seed 2=$A/cv/seed-2/cv.json" \
        --recipe "same recipe, 500 steps=$A/cv/steps-500/cv.json" \
        --recipe "2026.11.4 (synthetic)=$A/cv/recipe-2026.11.4/cv.json:$A/synthetic/unseen-real.json" \
        --recipe "real-only 2026.11.3=$A/cv/recipe-2026.11.3/cv.json:$A/real-only/unseen-real.json" \
        -o $A/cv/comparison.md

Each recipe gives its cross-validation (``cross_validate.py``'s ``cv.json``: the annotated
volumes held out fold by fold) and, for recipes whose cross-validation predates the unlabelled
CT, the bundled model's ``unseen_real.py`` result on that CT (which it never trained on). The
landmark MAE per slice thickness of older results is pooled from their per-volume rows
(MAE × landmarks), with each volume's slice spacing read from its file header.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))
sys.path.insert(0, str(ROOT / "src"))

import real_checks as rc  # noqa: E402

CT_DIR = ROOT.parent / "shared" / "data" / "ct"
REGIONS = ("pelvis", "abdomen", "chest", "neck", "head")


def _pm(block: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not block or block.get("mean") is None:
        return "–"
    se = block.get("se")
    return (f"{scale * block['mean']:.{digits}f} ± "
            f"{'–' if se is None else f'{scale * se:.{digits}f}'}")


def _spacing(volume_id: str) -> float | None:
    import nibabel as nib

    path = CT_DIR / f"{volume_id}.nii.gz"
    return float(nib.load(str(path)).header.get_zooms()[2]) if path.is_file() else None


def thickness_mae(cv: dict[str, Any]) -> dict[str, float]:
    """Landmark MAE per thickness class pooled from the per-volume rows."""
    sums: dict[str, list[float]] = {}
    for vid, row in cv["volumes"].items():
        spacing = _spacing(vid)
        if row.get("mae") is None or not row.get("n_landmarks") or spacing is None:
            continue
        pooled = sums.setdefault(rc.thickness_class(spacing), [0.0, 0.0])
        pooled[0] += row["mae"] * row["n_landmarks"]
        pooled[1] += row["n_landmarks"]
    return {k: v[0] / v[1] for k, v in sorted(sums.items())}


def column(cv: dict[str, Any], unseen: dict[str, Any] | None) -> dict[str, str]:
    """The cells of one recipe."""
    real = cv.get("real_volumes") or (unseen or {}).get("real_volumes") or {}
    source = "" if cv.get("real_volumes") else " (unseen)" if unseen else ""
    mono = real.get("monotony", {}).get("overall", {})
    checks = cv["overall"]["checks"]
    per_region = cv["per_region_mae"]
    replay = real.get("z_spacing_replay") or real.get("z_spacing_replay_unlabelled") or {}
    independence = real.get("independence", {}).get("mean_std")
    legs = real.get("legs") or {}
    return {
        "mae": _pm(cv["overall"]["mae"]),
        "regions": " / ".join(_pm(per_region.get(r), digits=1).split(" ±")[0] for r in REGIONS),
        "thickness": " / ".join(f"{v:.1f}" for v in thickness_mae(cv).values()),
        "acc5": _pm(cv["overall"]["accuracy_5class"], 100, 0) + " %",
        "annotated": f"{checks.get('increasing', '–')} / "
                     f"{checks.get('reversed copies flagged (>= 10 cm)', '–')}",
        "tags": str(checks.get("tag matches README", "–")),
        "all_real": f"{rc.format_rate(mono.get('increasing'))}{source}",
        "independence": ("–" if independence is None else f"{independence:.2f}") + source,
        "replay": " / ".join(f"{r['flagged']}/{r['defined']}" for r in replay.values())
                  + (source if replay else ""),
        "legs": (f"{legs['below_zero']}/{legs['slices']}" + source) if legs.get("slices")
                else "–",
    }


ROWS = (
    ("mae", "landmark MAE, medium/high confidence (score units, ± SE)", "≤ 3"),
    ("regions", "… per region: pelvis / abdomen / chest / neck / head", "≤ 4 each"),
    ("thickness", "… per slice thickness: 1–3 mm / ≥ 3 mm", "equal within 1"),
    ("acc5", "5-class accuracy (table 4.5)", "≥ 95 %"),
    ("annotated", "annotated volumes increasing / reversed copy flagged (≥ 10 cm)", "all"),
    ("tags", "body part tag matches the README region", "all"),
    ("all_real", "every real volume ≥ 10 cm increasing", "all"),
    ("independence", "independence: mean std at OpenKBP contour boundaries", "≤ 2.0"),
    ("replay", "z-spacing check flags γ = 0 / +0.5 / −0.4 (of defined)", "0 / ≥ 90 % / ≥ 90 %"),
    ("legs", "leg slices scoring below 0", "all"),
)


def markdown(columns: dict[str, dict[str, str]]) -> str:
    names = list(columns)
    lines = ["| held-out real CT | " + " | ".join(names) + " | target |",
             "|---|" + "---|" * len(names) + "---|"]
    for key, label, target in ROWS:
        lines.append(f"| {label} | " + " | ".join(columns[n][key] for n in names)
                     + f" | {target} |")
    lines += ["", "(unseen): the bundled model on the 271 unlabelled volumes, none of which it "
              "trained on; the other figures of the 2026.11 recipes are their cross-validation "
              "on the 20 annotated volumes. z-spacing replay: annotated volumes in the "
              "cross-validation, unlabelled ones for (unseen)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", required=True,
                        metavar="LABEL=CV_JSON[:UNSEEN_JSON]")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    columns = {}
    for item in args.recipe:
        label, _, paths = item.partition("=")
        cv_path, _, unseen_path = paths.partition(":")
        cv = json.loads(Path(cv_path).read_text(encoding="utf-8"))
        unseen = json.loads(Path(unseen_path).read_text(encoding="utf-8")) if unseen_path else None
        columns[label] = column(cv, unseen)
    text = markdown(columns)
    args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
