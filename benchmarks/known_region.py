"""Known-region cropping measured as the thesis measured it (sec. 5.2.2, table 5.17), on the
shared annotated CT volumes (``../shared/data/ct`` + ``landmarks.json``).

For each body region R of table 4.6 used as an algorithm's *known region*:

1. the algorithm's "training data" are the annotated volumes cut to their slices of R (by the
   annotated region labels), each scored as a volume of its own, as a segmentation dataset of R
   would be;
2. for each annotated volume v (leave-one-out: v's own crop is left out of the fit) the known
   region is fitted data-driven (sec. 4.3.2: q_min quantile of the crops' minimum cleaned
   scores, q_max quantile of their maxima) and v is cropped with ``slices_in_bounds`` exactly as
   ``bodyscore crop`` does;
3. counted over all volumes: of the labelled slices *outside* R, the share removed (correct);
   of the slices *inside* R, the share removed (wrong). Per volume, as in table 5.17: volumes
   with slices outside R whose outside slices were all removed ("intercepted"), and volumes with
   slices of R that lost any of them ("truncated").

Run by hand (about 5 min on 2 cores; scores once per volume and crop)::

    PYTHONPATH=src python benchmarks/known_region.py            # writes benchmarks/known_region.md

The bundled model was trained on these 20 volumes, so this measures the cropping procedure on
in-sample scores (a fit, not a test of unseen data); rerun after a retrain.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from bodyscore import load_model, predict, read_volume  # noqa: E402
from bodyscore.evaluate.landmarks import read_landmarks_json  # noqa: E402
from bodyscore.result import ScoreResult  # noqa: E402
from bodyscore.usecases.crop import bounds_from_results, slices_in_bounds  # noqa: E402

CT_DIR = REPO.parent / "shared" / "data" / "ct"
OUT = REPO / "benchmarks" / "known_region.md"
REGIONS = ("legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head")
QUANTILES = ((0.0, 1.0), (0.05, 0.95), (0.25, 0.75), (0.5, 0.5))
MIN_SLICES = 5  # a crop shorter than this is not used as a training volume


@dataclass(frozen=True)
class Case:
    """One annotated volume: its scores and region label per slice (None: unlabelled)."""

    name: str
    result: ScoreResult
    labels: tuple[str | None, ...]


@dataclass
class Tally:
    """Counts of one (region, q_min, q_max)."""

    outside: int = 0
    outside_removed: int = 0
    inside: int = 0
    inside_removed: int = 0
    volumes_outside: int = 0
    intercepted: int = 0
    volumes_inside: int = 0
    truncated: int = 0
    no_fit: int = 0


def _labels(annotation: object, n: int) -> tuple[str | None, ...]:
    labels: list[str | None] = [None] * n
    for region in annotation.regions:  # type: ignore[attr-defined]
        for k in range(region.k_first, min(region.k_last, n - 1) + 1):
            labels[k] = region.label
    return tuple(labels)


def load_cases(model: object) -> tuple[list[Case], dict[str, dict[str, ScoreResult]]]:
    """Score every annotated volume, and each of its region crops (the "training volumes")."""
    annotations = read_landmarks_json(CT_DIR / "landmarks.json")
    cases: list[Case] = []
    crops: dict[str, dict[str, ScoreResult]] = {r: {} for r in REGIONS}
    for name, annotation in sorted(annotations.items()):
        path = annotation.file or CT_DIR / f"{name}.nii.gz"
        volume = read_volume(path)
        result = predict(volume, model)
        labels = _labels(annotation, volume.n_slices)
        cases.append(Case(name, result, labels))
        order = volume.slice_order  # canonical slice -> input slice (labels are input k)
        for region in REGIONS:
            ks = [k for k, lab in enumerate(labels) if lab == region]
            if len(ks) < MIN_SLICES:
                continue
            keep = np.isin(order, np.arange(ks[0], ks[-1] + 1))
            crop = dataclasses.replace(
                volume,
                array=volume.array[keep],
                z_positions_mm=volume.z_mm[keep],
                source_slice_index=None,
            )
            crops[region][name] = predict(crop, model)
        print(f"scored {name}", file=sys.stderr)
    return cases, crops


def evaluate(cases: Sequence[Case], crops: dict[str, dict[str, ScoreResult]], region: str,
             q_min: float, q_max: float) -> Tally:
    """Leave-one-out known-region cropping of every case for one region and quantile pair."""
    tally = Tally()
    for case in cases:
        training = [r for name, r in crops[region].items() if name != case.name]
        if len(training) < 2:
            tally.no_fit += 1
            continue
        bounds = bounds_from_results(training, q_min=q_min, q_max=q_max)
        selected = slices_in_bounds(case.result, bounds)
        kept = np.zeros(case.result.n_slices, dtype=bool)
        if selected is not None:
            kept[selected.as_slice()] = True
        labels = np.array([lab or "" for lab in case.labels])
        inside = labels == region
        outside = (labels != region) & (labels != "")
        tally.inside += int(inside.sum())
        tally.inside_removed += int((inside & ~kept).sum())
        tally.outside += int(outside.sum())
        tally.outside_removed += int((outside & ~kept).sum())
        if outside.any():
            tally.volumes_outside += 1
            tally.intercepted += int(not (outside & kept).any())
        if inside.any():
            tally.volumes_inside += 1
            tally.truncated += int((inside & ~kept).any())
    return tally


def _share(part: int, whole: int) -> str:
    return "–" if whole == 0 else f"{100.0 * part / whole:.1f} % ({part}/{whole})"


def table(cases: Sequence[Case], crops: dict[str, dict[str, ScoreResult]]) -> list[str]:
    lines = [
        "| known region | q_min | q_max | training crops | s_min..s_max (all crops) | "
        "outside slices removed (correct) | inside slices removed (wrong) | "
        "volumes intercepted | volumes truncated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for region in REGIONS:
        if len(crops[region]) < 3:
            continue
        for q_min, q_max in QUANTILES:
            t = evaluate(cases, crops, region, q_min, q_max)
            b = bounds_from_results(list(crops[region].values()), q_min=q_min, q_max=q_max)
            lines.append(
                f"| {region} | {q_min:g} | {q_max:g} | {len(crops[region])} | "
                f"{b.score_min:.1f}..{b.score_max:.1f} | "
                f"{_share(t.outside_removed, t.outside)} | "
                f"{_share(t.inside_removed, t.inside)} | "
                f"{t.intercepted}/{t.volumes_outside} | {t.truncated}/{t.volumes_inside} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    cases, crops = load_cases(model)
    info = model.info
    body = [
        "# Known-region cropping on the annotated volumes (thesis table 5.17, simulated)",
        "",
        f"Generated by `benchmarks/known_region.py` on {dt.date.today().isoformat()}; model "
        f"{info['name']} {info['version']} (sha256 {str(info['sha256'])[:12]}…); "
        f"{len(cases)} annotated volumes of `shared/data/ct`.",
        "",
        "Each region's training data: the annotated volumes cut to their slices of that region "
        f"(≥ {MIN_SLICES} slices), each scored on its own. Every volume is cropped with bounds "
        "fitted on the other volumes' crops (leave-one-out). *Outside/inside slices removed*: "
        "labelled slices outside / inside the region that the crop removed, summed over all "
        "volumes. *Volumes intercepted*: volumes with slices outside the region that lost all "
        "of them; *truncated*: volumes with slices of the region that lost any of them. The "
        "bundled model was trained on these volumes: in-sample scores.",
        "",
        *table(cases, crops),
        "",
    ]
    args.output.write_text("\n".join(body), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
