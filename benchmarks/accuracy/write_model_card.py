"""Write ``model-card.md`` of a bundled model from the measured accuracy files.

    python benchmarks/accuracy/write_model_card.py --package src/bodyscore/models/default \
        --final benchmarks/accuracy/default/accuracy.json \
        --cv benchmarks/accuracy/cv/cv.md \
        --ablations benchmarks/accuracy/ablations/ablations.md \
        --other-cv "real-only (2026.11.3)=benchmarks/accuracy/cv/recipe-2026.11.3/cv.json" \
        --log src/bodyscore/models/default/training-log.csv \
        --manifest benchmarks/accuracy/default/manifest.json

Every number in the card comes from those files (``evaluate_model.py``, ``cross_validate.py``
and ``ablation_table.py`` output) or from the package itself; the prose around them is fixed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import textwrap
from pathlib import Path
from typing import Any

from bodyscore.train.data import is_synthetic

ATTRIBUTION = """\
| volumes | licence | attribution |
|---|---|---|
| ts_abdomen_pelvis, ts_petct_slab | Apache-2.0 (TotalSegmentator repository; image data CC BY 4.0) | TotalSegmentator, Wasserthal et al., Radiology: AI 2023 (https://github.com/wasserth/TotalSegmentator) |
| lidc0314_chest | CC BY 3.0 | Data from LIDC-IDRI, The Cancer Imaging Archive, doi:10.7937/K9/TCIA.2015.LO9QL9SX; Armato SG III et al., Med Phys 38:915-931 (2011); Clark K et al., J Digit Imaging 26:1045-1057 (2013) |
| ge_tilt_head | BSD-2-Clause | Copyright (c) 2019, Chris Rorden – dcm_qa_ct; data provided by Aliza Medical Imaging |
| cptac_pda_chest | CC BY 3.0 | Data from CPTAC-PDA, National Cancer Institute CPTAC, The Cancer Imaging Archive, doi:10.7937/K9/TCIA.2018.SC20FO18; Clark K et al. 2013 |
| vhf_head, vhm_head, vhf_knee_leg | NLM Visible Human Project terms | Courtesy of the U.S. National Library of Medicine Visible Human Project®; DICOM release by the University of Iowa (doi:10.7910/DVN/3JDZCT) |
| unc_cthead_cadaver_head | public domain | Data courtesy of the University of North Carolina (North Carolina Memorial Hospital), Stanford Volume Data Archive |
| openkbp_* (5 volumes) | MIT (repository) / CC BY (TCIA data) | Babier A. et al., OpenKBP, Med Phys 48:5549-5561 (2021); Clark K. et al. 2013 |
| crlm1004_abdomen | CC BY 4.0 | Simpson AL et al. (2023) Colorectal-Liver-Metastases (Version 2), TCIA, doi:10.7937/QXK2-QG03; Clark K et al. 2013 |
| sts001-003_extremity_crop | CC BY 3.0 | Vallières M et al. (2015) TCIA doi:10.7937/K9/TCIA.2015.7GO2GSKS; Phys Med Biol 60:5471; Clark K et al. 2013; cropped by A. Zwanenburg (MIRP) |
| pyradiomics_lung1/2_chest | BSD-3-Clause | Copyright 2017 Harvard Medical School; van Griethuysen JJM et al., Cancer Research 77(21):e104 (2017) |
| published score scale (calibration targets, anchor targets) | CC BY-SA 4.0 | Body Part Regression public model, S. Schuhegger, DKFZ; Schuhegger S., Body Part Regression for CT Images, arXiv:2110.09148 (2021); https://github.com/MIC-DKFZ/BodyPartRegression |
"""


def _fmt(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(block: dict[str, Any]) -> str:
    if block["mean"] is None:
        return "–"
    se = "–" if block["se"] is None else f"{100 * block['se']:.1f}"
    return f"{100 * block['mean']:.1f} % ± {se} (n={block['n']})"


def _landmark_table(data: dict[str, Any]) -> list[str]:
    rows = ["| set | volumes | landmark MAE vs published scale (score units) | LMSE (eq. 4.14) vs "
            "own table | 5-class accuracy (table 4.5) | slices in annotated region |",
            "|---|---|---|---|---|---|"]
    for set_name, block in data["sets"].items():
        for conf, res in block.get("landmarks", {}).items():
            pub, own = res["vs_published"], res["vs_own_table"]
            reg = pub["region_accuracy"]["mean"]
            rows.append(
                f"| {set_name}, {conf.replace('_', '/')} confidence | {pub['n_volumes']} | "
                f"{_fmt(pub['mae']['mean'])} ± {_fmt(pub['mae']['se'])} | "
                f"{_fmt(own['lmse']['mean'])} ± {_fmt(own['lmse']['se'])} | "
                f"{_pct(pub['accuracy'])} | {_fmt(None if reg is None else 100 * reg, 1)} % |"
            )
    return rows


def _checks(data: dict[str, Any]) -> list[str]:
    return [f"- **{name}**: " + ", ".join(f"{k}: {v}" for k, v in block["checks"].items())
            for name, block in data["sets"].items() if block.get("checks")]


def _volume_table(data: dict[str, Any]) -> list[str]:
    rows = ["| volume | split | tag | README region → acceptable tags | slope (score/mm) | "
            "reversed copy flagged |", "|---|---|---|---|---|---|"]
    for vid, c in sorted(data["volumes"].items()):
        rows.append(f"| {vid} | {c['split']} | {c['tag']} {'✓' if c['tag_ok'] else '✗'} | "
                    f"{' / '.join(c['expected_tags'])} | {_fmt(c['observed_slope'], 3)} | "
                    f"{'yes' if c['reversed_copy_flagged'] else 'no'} |")
    return rows


def _synthetic_table(data: dict[str, Any]) -> list[str]:
    volumes = data["sets"].get("synthetic held-out", {}).get("volumes", {})
    if not volumes:
        return []
    rows = ["| synthetic volume | z-extent (mm) | landmarks covered | slope (score/mm) | "
            "increasing | reversed copy flagged |", "|---|---|---|---|---|---|"]
    for vid, c in sorted(volumes.items()):
        rows.append(f"| {vid} | {c['z_extent_mm']:.0f} | {c['covers']} | "
                    f"{_fmt(c['observed_slope'], 3)} | {'yes' if c['increasing'] else 'no'} | "
                    f"{'yes' if c['reversed_copy_flagged'] else 'no'} |")
    return rows


def _embedded(markdown: Path) -> str:
    """A generated markdown file inside the card: its title dropped, headings two levels down."""
    lines = markdown.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("##" + line if line.startswith("#") else line for line in lines).strip()


def _cv_headline(cv: dict[str, Any]) -> str:
    """MAE ± SE, 5-class accuracy and the three checks of one cross-validation summary."""
    o = cv["overall"]
    acc = o["accuracy_5class"]
    checks = o["checks"]
    return (f"{_fmt(o['mae']['mean'])} ± {_fmt(o['mae']['se'])} | "
            f"{_fmt(None if acc['mean'] is None else 100 * acc['mean'], 0)} % | "
            f"{checks.get('increasing', '–')} | "
            f"{checks.get('reversed copies flagged (>= 10 cm)', '–')} | "
            f"{checks.get('tag matches README', '–')}")


def paired_mae_difference(current: dict[str, Any], other: dict[str, Any]
                          ) -> tuple[float, float, int] | None:
    """Mean ± SE over volumes of (current − other) per-volume held-out landmark MAE.

    Both summaries must come from the same folds (``fold_table``) and steps per fold; only
    volumes with a MAE in both count. None when fewer than two volumes do.
    """
    same_protocol = all(current.get(k) == other.get(k) for k in ("fold_table", "steps"))
    if not same_protocol:
        return None
    diffs = [row["mae"] - other["volumes"][vid]["mae"]
             for vid, row in current["volumes"].items()
             if row.get("mae") is not None
             and other["volumes"].get(vid, {}).get("mae") is not None]
    if len(diffs) < 2:
        return None
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return mean, sd / math.sqrt(len(diffs)), len(diffs)


def cv_comparison(current: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown table: this recipe's cross-validation beside other recipes' (label → cv.json)."""
    rows = ["| recipe | landmark MAE ± SE | 5-class accuracy | increasing | reversed copies "
            "flagged | tag matches | MAE difference, this recipe − that one (paired over "
            "volumes, ± SE) |", "|---|---|---|---|---|---|---|"]
    rows.append(f"| this model's recipe | {_cv_headline(current)} | – |")
    for label, cv in others.items():
        paired = paired_mae_difference(current, cv)
        diff = ("other folds or steps" if paired is None
                else f"{paired[0]:+.2f} ± {paired[1]:.2f} (n={paired[2]})")
        rows.append(f"| {label} | {_cv_headline(cv)} | {diff} |")
    return rows


#: What each bundled model is for (the card's first sentence).
ROLES = {
    "default": "The model `bodyscore predict` uses when no `--model` is given, trained "
               "self-supervised on every real CT of the project: 20 annotated and 271 "
               "unlabelled volumes",
    "real-only": "The bundled model trained on real CT only (`--model real-only`), the "
                 "default model's recipe without synthetic CT; it was the default up to "
                 "2026.11.3",
    "synthetic": "The bundled model `--model synthetic` (2026.11.4, the default model from "
                 "2026-11-24 to 2026-12-04), trained on the 20 annotated real volumes and 8 "
                 "synthetic volumes of `bodyscore.synth`; kept for synthetic CT only",
}


def _unlabelled_text(unlabelled: list[dict[str, Any]]) -> str:
    """How many unlabelled real volumes trained, by collection (``ct-unlabelled``)."""
    if not unlabelled:
        return ""
    openkbp = sum(v["volume_id"].startswith("openkbp_") for v in unlabelled)
    slices = sum(v["shape"][0] for v in unlabelled)
    return (f", and {len(unlabelled)} unlabelled real volumes of `../shared/data/ct-unlabelled` "
            f"({slices} slices: {openkbp} OpenKBP head-and-neck planning CTs and "
            f"{len(unlabelled) - openkbp} volumes of legs, pelvis, abdomen and chest), which "
            "get the order and slope-band terms and, where `regions.json` labels their slices, "
            "the region term, and do not calibrate")


def _data_text(n_real: int, real_slices: int, n_synth: int, *, share: float,
               unlabelled: list[dict[str, Any]] | None = None) -> str:
    """The card's training-data bullet: the real volumes and, if any, the synthetic ones."""
    text = (f"- Data: all {n_real} annotated real volumes of the project's development set "
            f"({real_slices} slices; list and licences below)"
            + _unlabelled_text(unlabelled or []))
    if n_synth:
        text += (f" and {n_synth} synthetic whole-body CT volumes of `bodyscore.synth` (seeds "
                 f"0–{n_synth - 1}, exact landmarks; no third-party data), about "
                 f"{100 * share:.0f} % of the samples. They are what teaches the model the "
                 "synthetic domain: without them two held-out synthetic abdomen crops score "
                 "downwards (model `real-only`). They cost real-CT accuracy; how much is in the "
                 "cross-validation below (40 of them, in 2026.11.1, about tripled the error).")
    else:
        text += (". No synthetic CT: on one fold every amount of `bodyscore.synth` volumes "
                 "tried made the held-out real-CT error worse (earlier ablation rounds); the "
                 "bundled model that trains with them is `--model synthetic` (2026.11.4).")
    return textwrap.fill(text + " No validation split: every real volume trains; the honest "
                         "estimate is the cross-validation.", width=96,
                         subsequent_indent="  ")


def _sampling_text(training: dict[str, Any], unlabelled: list[dict[str, Any]]) -> str:
    """The card's sampling bullet: per volume, or region-balanced, and the extra terms."""
    text = ("- Sampling: m = 4 equidistant slices per volume, Δh ~ U[5, 100] mm (sec. 4.1.3); "
            f"batch {training.get('batch_size', 8)} volumes")
    share = training.get("unlabelled_share")
    if share is not None:
        text += (f"; each epoch is every annotated volume once plus unlabelled draws making up "
                 f"{100 * share:.0f} % of it, so the annotated volumes keep their weight")
    if training.get("region_balanced"):
        shares = training.get("region_shares") or {}
        text += ("; " + ("the unlabelled draws" if share is not None else "each epoch")
                 + " drawn by body region (legs, pelvis, abdomen, chest, shoulder-neck, head), "
                 + ("equal shares" if not shares else f"shares {shares}")
                 + f", so the {sum(v['volume_id'].startswith('openkbp_') for v in unlabelled)} "
                 "head-and-neck volumes weigh as much as the few leg volumes")
    if training.get("correspondence_weight"):
        text += (f"; correspondence term (weight {training['correspondence_weight']}): the "
                 "score variance at the same OpenKBP contour boundary across patients "
                 "(independence condition, sec. 4.1.3)")
    if training.get("auto_lung_anchors"):
        text += ("; automatic lung_start / lung_end anchors from HU where unambiguous "
                 "(`bodyscore.train.auto_anchors`)")
    return textwrap.fill(text + ".", width=96, subsequent_indent="  ")


def _synthetic_limit(n_synth: int) -> str:
    if n_synth:
        text = ("- The synthetic volumes are still unlike real CT (`docs/synth.md`): the model "
                "scores held-out synthetic volumes in the right order because it has seen "
                "synthetic CT, and their landmark error (above) stays several times that of "
                "the real volumes.")
    else:
        text = ("- Synthetic CT is out of this model's domain: held-out synthetic abdomen crops "
                "(L5 to L1, L5 to L3) score downwards (`docs/synth.md`); the default model, "
                "trained with synthetic volumes, scores them in order.")
    return textwrap.fill(text, width=96, subsequent_indent="  ")


def _synthetic_credit(n_synth: int) -> str:
    used = (f"part of the training data (seeds 0–{n_synth - 1}) and of" if n_synth
            else "used only for")
    return textwrap.fill(f"The synthetic volumes of `bodyscore.synth` (no third-party data) are "
                         f"{used} the held-out check above (seeds 900000 and up, never trained "
                         "on).", width=96)


def unlabelled_credits(volumes: list[dict[str, Any]]) -> list[str]:
    """Markdown rows crediting the unlabelled training volumes, grouped by licence and
    attribution (from the data manifests, stored per volume in the training manifest)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for v in volumes:
        key = (v.get("licence", "unknown"), v.get("attribution", "") or "–")
        groups.setdefault(key, []).append(v["volume_id"])
    rows = []
    for (licence, attribution), ids in sorted(groups.items(), key=lambda item: item[1][0]):
        names = (", ".join(sorted(ids)) if len(ids) <= 3
                 else f"{len(ids)} volumes: {', '.join(sorted(ids)[:2])}, … (training manifest)")
        rows.append(f"| {names} | {licence} | {attribution} |")
    return rows


def _log_summary(log: Path) -> str:
    with log.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    last = rows[-1]
    validated = [r for r in rows if r.get("val_order_accuracy")]
    val = validated[-1] if validated else {}
    text = (f"{last['step']} steps in {float(last['seconds']) / 60:.0f} min of the final run; "
            f"final training loss {float(last['loss']):.3f}")
    if val:
        text += f"; validation order accuracy {float(val['val_order_accuracy']):.3f}"
    return text


def _final_steps(log: Path) -> int:
    with log.open(newline="") as handle:
        return max(int(row["step"]) for row in csv.DictReader(handle))


def cv_steps_text(cv_steps: int, final_steps: int) -> str:
    """How the cross-validation's training length compares with the shipped model's."""
    if cv_steps == final_steps:
        return (f"Each fold trains {cv_steps} steps, as many as the shipped model, so these "
                "figures estimate it directly.")
    relation = "fewer" if cv_steps < final_steps else "more"
    return (f"Each fold trains {cv_steps} steps, {relation} than the shipped model's "
            f"{final_steps} (see below), so these figures estimate it only roughly.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, required=True)
    parser.add_argument("--name", default="default", choices=sorted(ROLES),
                        help="the package's registry name")
    parser.add_argument("--final", type=Path, required=True)
    parser.add_argument("--cv", type=Path, required=True, help="cross_validate.py's cv.md")
    parser.add_argument("--ablations", type=Path, required=True,
                        help="ablation_table.py's ablations.md")
    parser.add_argument("--other-cv", action="append", default=[], metavar="LABEL=CV_JSON",
                        help="another recipe's cross_validate.py cv.json, compared in the card "
                             "(repeatable)")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True,
                        help="the final run's cache manifest.json")
    args = parser.parse_args()
    final = json.loads(args.final.read_text())
    current_cv = json.loads(args.cv.with_suffix(".json").read_text())
    other_cv = {label: json.loads(Path(path).read_text())
                  for label, _, path in (item.partition("=") for item in args.other_cv)}
    config = json.loads((args.package / "config.json").read_text())
    settings = json.loads((args.package / "inference-settings.json").read_text())
    size_mb = sum(f.stat().st_size for f in args.package.iterdir() if f.is_file()) / 2**20
    knots = settings.get("bodyscore", {}).get("calibration", [])
    volumes = json.loads(args.manifest.read_text())["volumes"]
    real = [v for v in volumes
            if not is_synthetic(v["volume_id"]) and v.get("annotated", True)]
    unlabelled = [v for v in volumes if not v.get("annotated", True)]
    synth = [v for v in volumes if is_synthetic(v["volume_id"])]
    preprocessing = config.get("preprocessing", {})
    training = config.get("training", {})
    text = TEMPLATE.format(
        version=config.get("model_version", "?"),
        size_mb=size_mb,
        params=f"{config['parameters']:,}" if "parameters" in config else "≈0.6 M",
        training=_log_summary(args.log),
        name=args.name,
        role=textwrap.fill(ROLES[args.name] + ". It is a light convolutional network", width=96),
        n_real=len(real),
        data=_data_text(len(real), sum(v["shape"][0] for v in real), len(synth),
                        share=training.get("synthetic_share")
                        or len(synth) / max(len(volumes), 1), unlabelled=unlabelled),
        size=preprocessing.get("size", 128),
        spacing=preprocessing.get("target_spacing_mm", 3.5),
        sampling=_sampling_text(training, unlabelled),
        n_unlabelled=len(unlabelled),
        synthetic_limit=_synthetic_limit(len(synth)),
        synthetic_credit=_synthetic_credit(len(synth)),
        n_knots=len(knots),
        slope_mean=settings["slope_mean"],
        t_min=settings["lower_quantile_tangential_slope"],
        t_max=settings["upper_quantile_tangential_slope"],
        s0=settings.get("bodyscore", {}).get("empty_slice_score"),
        abdomen_min=settings.get("bodyscore", {}).get("tag_min_present_landmarks", {}).get(
            "ABDOMEN", 7),
        theta=settings.get("bodyscore", {}).get("r_slope_threshold", 0.28),
        min_extent=settings.get("bodyscore", {}).get("spacing_check_min_extent_mm", 0.0),
        cv=_embedded(args.cv),
        cv_dir=args.cv.parent.as_posix(),
        cv_steps=cv_steps_text(int(current_cv["steps"]), _final_steps(args.log)),
        cv_comparison="\n".join(cv_comparison(current_cv, other_cv)),
        ablations=_embedded(args.ablations),
        ablation_intro=textwrap.fill(ABLATION_INTRO, width=96),
        final_table="\n".join(_landmark_table(final)),
        final_checks="\n".join(_checks(final)),
        final_volumes="\n".join(_volume_table(final)),
        synthetic_volumes="\n".join(_synthetic_table(final)),
        attribution=ATTRIBUTION + "\n".join(unlabelled_credits(unlabelled)),
        date=final["date"],
    )
    (args.package / "model-card.md").write_text(text, encoding="utf-8")
    return 0


#: The paragraph above the embedded ablation table.
ABLATION_INTRO = (
    "Each row changes one thing against this recipe, trained on fold 0 of the cross-validation "
    "for 500 steps (the first row is this recipe's own fold 0); what the rows decided is "
    "explained in `benchmarks/accuracy/ablations/README.md`, with the four earlier rounds "
    "(synthetic CT, anchors, region term, augmentations, input size, slope band).")

TEMPLATE = """\
# bodyscore model `{name}` {version}

{role}
(VGG-style, 5 stages of 3×3 convolutions with batch normalisation, widths 16-32-64-128-128,
{params} parameters) with bpreg's head (1×1 conv 512 → ReLU → global average pool → linear),
trained self-supervised as in the thesis (sec. 4.1) plus a landmark-anchor term, a
coarse-region term and a slope-band term, calibrated to the published bpreg score scale.
Package size {size_mb:.1f} MB; inference through ONNX Runtime, no torch needed.

**Scope and status: a small model from little annotated data.** It was trained on a 2-core
CPU from {n_real} annotated and {n_unlabelled} unlabelled real CT volumes. The
cross-validated figures below say how well the recipe carries to CT it has not seen; read them
before relying on it. For production use, compare with bpreg's public model
(`--model bpreg-public`) on your data, or train on more data with `bodyscore train`.

## Training

{data}
- Preprocessing: thesis sec. 4.1.1 (HU clip [-1000, 1500] → [-1, 1], {spacing} mm in-plane
  with Gaussian anti-aliasing, {size} × {size}; bpreg: 3.5 mm, 128 × 128).
{sampling}
- Loss: heuristic order loss, β = 0.01/mm (eq. 4.7; bpreg's public setting), plus
  - a dense landmark-anchor term (weight 1): every sampled slice is pulled towards the published
    score of its position, interpolated between the volume's annotated landmarks and
    extrapolated with the expected slope up to 50 mm beyond them;
  - a coarse-region interval term (weight 1): slices labelled legs / pelvis / abdomen / chest /
    shoulder-neck / head in `landmarks.json` are kept inside that region's published score
    interval (squared hinge, 1.2 score units of slack), which gives volumes without landmarks
    (the legs) a target at all;
  - a slope-band term (weight 1): each sample's score rise over its span (m − 1)·Δh is kept
    between 0.75 and 1.5 times the expected slope (squared hinge). The order loss compares
    sigmoids and barely pulls on a flat curve, so without it a volume without landmarks (the
    15 cm buttock crop sts002) kept a flat curve in 2026.11.2.
- Augmentations: table 4.4 / bpreg's published `transform_params` (noise, blur, shift-scale-rotate,
  flip, transpose, contrast, brightness, frame), one draw per volume sample.
- Optimiser: Adam, lr 1e-3 → 3e-4 (step 1150) → 1e-4 (step 1700); {training}
  (one torch thread, sharing the 2 cores with cross-validation runs).
- Reproduce: `bodyscore train configs/{name}.yaml -o runs/{name}` (the run writes
  `runs/{name}/model`; its log is `training-log.csv` in this folder, its config
  `training-config.yaml`).

## Calibration (bodyscore calibrate / train/calibrate.py)

Reference table from the annotated training volumes; a monotone piecewise-linear map
from raw score to the published bpreg scale through {n_knots} knots at the twelve evaluation
landmarks of thesis table 4.3 (pelvis_start → 0, eyes_end → 100), so the look-up table puts each
of them on its published mean (with all 35 landmarks as knots, C1 was 3.8 units off and the map
had near-vertical segments); expected slope m̄s = {slope_mean:.4f} score/mm from the real volumes
with at least two landmarks;
tangential-slope quantiles {t_min:.3f} / {t_max:.3f}; empty-slice score s0 = {s0:.3f}.

Z-spacing check (sec. 4.3.3): θ = {theta:.2f}, chosen as the thesis prescribes, data-driven: the
largest relative slope error γ̂ of the real calibration volumes whose scores span at least
{min_extent:.0f} mm, rounded up to 0.01 and never below bpreg's 0.28 (these are training volumes,
so θ is fitted in-sample; the cross-validation below re-fits it per fold). Volumes whose valid
scores span less than {min_extent:.0f} mm leave the check undefined (bpreg decides on any
length; the 38 mm slab `ts_petct_slab` had γ̂ = 0.47 with its true spacing).

Tag rule: the thesis's decision tree (fig. 4.9) with bpreg's landmark lists and minimum counts,
except ABDOMEN, which is visible with {abdomen_min} (bpreg: 7) of its nine landmarks L5…Th9
(stored as `tag_min_present_landmarks` in `inference-settings.json`). With bpreg's count an
abdomen-pelvis CT that ends at T12, like `ts_abdomen_pelvis`, shows at most six of them and is
tagged PELVIS even when every score is right. In the per-slice vote (short volumes, or no part
visible) the winning part needs at least 10 % of the slices, else the tag is NONE (bpreg: any
number; it tags a knee-to-ankle CT whose top 13 of 350 slices reach the pelvis range PELVIS).

## Accuracy

Landmark errors are against the published bpreg scale in score units (0 = pelvis start,
100 = end of the eyes); headline figures from medium/high-confidence landmarks of
`../shared/data/ct/landmarks.json`.

### Honest estimate: cross-validation over the real volumes

Produced by `benchmarks/accuracy/cross_validate.py` (`{cv_dir}/`): the same recipe
trained once per fold with the fold's real volumes held out of training, validation and
calibration (vhf_head and vhf_knee_leg are one body and share a fold). {cv_steps}
Other recipes (their `cv.json` under `benchmarks/accuracy/cv/`; the paired difference needs the
same folds and steps):

{cv_comparison}

{cv}

### Ablations

{ablation_intro}

{ablations}

### The shipped model (trained on all {n_real} annotated and {n_unlabelled} unlabelled real volumes)

Produced by `benchmarks/accuracy/evaluate_model.py` on {date}. Figures on the real volumes are
on **training data** and only show the fit; the synthetic volumes are new (seeds never used in
training).

{final_table}

{final_checks}

{final_volumes}

{synthetic_volumes}

### Limits

- The annotated set has one abdomen-pelvis volume, three tumour-centred hip crops and one pair
  of lower legs; the unlabelled CT adds legs, pelvis and abdomen volumes without landmarks, so
  the cross-validated landmark figures of those regions still rest on a handful of landmarks.
- Legs below the pelvis lie outside the published scale's annotated range (as in bpreg): they
  score below 0, without landmarks to fix how far.
- The tag follows the thesis's decision tree: a volume of 100 mm or more whose fitted slope
  differs by more than θ = {theta:.2f} from m̄s gets `NONE`.
{synthetic_limit}
- 5-class accuracy needs both boundary landmarks of a class in one volume; few real volumes
  have them.

## Licence and attribution

The weights and settings are derived from the data below and from the published bpreg score scale
(CC BY-SA 4.0), so this model package is distributed under **CC BY-SA 4.0**. Credit:

{attribution}
{synthetic_credit}
"""

if __name__ == "__main__":
    raise SystemExit(main())
