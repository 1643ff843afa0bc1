"""Accuracy of a model package on the real CT set and on held-out synthetic volumes.

Run by hand (the numbers go into the model card)::

    python benchmarks/accuracy/evaluate_model.py --model src/bodyscore/models/default \
        --manifest runs/default/cache/manifest.json -o benchmarks/accuracy

Writes ``accuracy.json`` (strict JSON) and ``accuracy.md`` (tables) into the output folder.

What it measures, per volume and overall (thesis sec. 4.2; issue 4/11 acceptance):

* landmark mean absolute error (score units) against the **published** bpreg scale
  (``../shared/data/bpreg-public-model``), headline = medium/high-confidence landmarks, low
  confidence separately; LMSE (eq. 4.13-4.15) against the model's own reference table;
* 5-class accuracy (table 4.5) and per-slice accuracy of the coarse regions of landmarks.json;
* monotonicity: observed slope > 0 and no reverse flag on the volume as given;
* a reversed copy (array flipped along z, affine kept: the header lies) is flagged;
* a consistently flipped copy (array and affine flipped together) is not flagged and gets the
  same scores;
* the body part examined tag against the region the data README describes.

Volumes are grouped by their split in the training manifest (train / val / test), so figures
on volumes the model trained on are never mixed with held-out ones.

The per-volume evaluation (:func:`evaluate_volumes`) is shared with
``benchmarks/accuracy/cross_validate.py``, which imports this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))
sys.path.insert(0, str(ROOT / "src"))

from real_checks import monotony_checks  # noqa: E402

from bodyscore.evaluate import metrics as m  # noqa: E402
from bodyscore.evaluate.landmarks import VolumeAnnotation, read_landmarks  # noqa: E402
from bodyscore.evaluate.runner import evaluate_model_on  # noqa: E402
from bodyscore.inference import predict  # noqa: E402
from bodyscore.io import read_volume  # noqa: E402
from bodyscore.model import load_model  # noqa: E402
from bodyscore.settings import InferenceSettings  # noqa: E402
from bodyscore.synth import SynthConfig, generate_dataset  # noqa: E402

SHARED = ROOT.parent / "shared"
CT_DIR = SHARED / "data" / "ct"
PUBLISHED = SHARED / "data" / "bpreg-public-model" / "inference-settings.json"

#: The held-out synthetic volumes (``--synthetic N``): seeds 900000 + i, never used in training
#: (the recipes train on seeds 0 + i, ``synthetic_gap.py`` uses 700000 + i).
HELD_OUT_SYNTHETIC_SEED = 900_000
HELD_OUT_SYNTHETIC = SynthConfig(in_plane_size=128, in_plane_spacing_mm=(2.5, 3.75),
                                 slice_spacing_mm=(1.0, 5.0), max_slices=300)

#: Tags that match the region each real volume covers (../shared/data/ct/README.md).
EXPECTED_TAGS: dict[str, set[str]] = {
    "cptac_pda_chest": {"CHEST-ABDOMEN", "NECK-CHEST-ABDOMEN", "CHEST"},
    "crlm1004_abdomen": {"CHEST-ABDOMEN", "ABDOMEN"},
    "ge_tilt_head": {"HEAD"},
    "lidc0314_chest": {"CHEST", "NECK-CHEST", "CHEST-ABDOMEN", "NECK-CHEST-ABDOMEN"},
    "openkbp_test291_hn": {"HEAD-NECK", "HEAD-NECK-CHEST"},
    "openkbp_test319_hn": {"HEAD-NECK", "HEAD-NECK-CHEST"},
    "openkbp_train115_hn": {"HEAD-NECK", "HEAD-NECK-CHEST"},
    "openkbp_train126_hn": {"HEAD-NECK", "HEAD-NECK-CHEST"},
    "openkbp_train155_hn": {"HEAD-NECK", "HEAD-NECK-CHEST"},
    "pyradiomics_lung1_chest": {"CHEST", "NECK-CHEST", "CHEST-ABDOMEN", "NECK-CHEST-ABDOMEN"},
    "pyradiomics_lung2_chest": {"CHEST", "NECK-CHEST", "CHEST-ABDOMEN", "NECK-CHEST-ABDOMEN"},
    "sts001_extremity_crop": {"PELVIS"},
    "sts002_extremity_crop": {"PELVIS"},
    "sts003_extremity_crop": {"PELVIS"},
    "ts_abdomen_pelvis": {"ABDOMEN-PELVIS", "CHEST-ABDOMEN-PELVIS"},
    "ts_petct_slab": {"ABDOMEN", "CHEST"},
    "unc_cthead_cadaver_head": {"HEAD", "HEAD-NECK"},
    "vhf_head": {"HEAD-NECK", "HEAD", "HEAD-NECK-CHEST"},
    "vhf_knee_leg": {"NONE"},  # legs only: no trunk region in the tag
    "vhm_head": {"HEAD-NECK", "HEAD"},
}

#: Landmark confidence levels of the headline figures and of the separate low-confidence row.
CONFIDENCE_SETS: dict[str, set[str | None]] = {
    "medium_high": {"high", "medium", "exact", None},
    "low": {"low"},
}

log = logging.getLogger("evaluate_model")


def published_table(path: Path = PUBLISHED) -> dict[str, float]:
    """Landmark → score of the published bpreg scale (``lookuptable`` means, 0–100)."""
    table = {k: v.mean for k, v in InferenceSettings.from_file(path).lookup_table.items()}
    table["kidneys"] = table["kidney"]
    return table


def only_confidence(annotations: dict[str, VolumeAnnotation], keep: set[str | None]
                    ) -> dict[str, VolumeAnnotation]:
    out = {}
    for vid, a in annotations.items():
        kept = {n: p for n, p in a.landmarks.items() if p.confidence in keep}
        out[vid] = dataclasses.replace(a, landmarks=kept)
    return out


def volume_checks(path: Path, model: Any,
                  annotation: VolumeAnnotation | None = None) -> dict[str, Any]:
    """Tag, monotonicity and flip checks of one volume (module docstring, points 3-6), and the
    per-slice accuracy of its coarse region labels when ``annotation`` has any (also for
    volumes without landmarks, which the landmark metrics leave out).

    :func:`real_checks.monotony_checks` (the checks every real volume gets) plus the
    consistent flip: slices and affine reversed together must score the same, unflagged.
    """
    regions = [(r.k_first, r.k_last, r.label) for r in (annotation.regions if annotation else ())]
    checks = monotony_checks(path, model, regions=regions, replay=False)
    volume = read_volume(path)
    result = predict(volume, model)
    consistent = predict(volume.reversed_slices(with_affine=True), model)
    same = np.allclose(consistent.unprocessed[::-1], result.unprocessed, atol=1e-3,
                       equal_nan=True)
    truth = m.region_truth_per_slice(volume.n_slices, regions)
    return {
        **{key: checks[key] for key in (
            "legs_slices", "legs_below_zero", "tag", "observed_slope", "increasing",
            "z_extent_mm", "z_spacing_mm", "reversed_copy_flagged", "valid_z_spacing",
            "score_range")},
        "consistent_flip_flagged": consistent.reverse_z_ordering,
        "consistent_flip_same_scores": bool(same),
        "region_accuracy": _num(checks["region_accuracy"]),
        "n_region_slices": sum(label is not None for label in truth),
    }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def landmark_errors(volume: Any, report: Any) -> dict[str, float | None]:
    """Signed error (score − reference) / d of each landmark shared with the reference."""
    scores = m.canonical_table(volume.landmark_scores)
    return {name: _num((score - report.reference[name]) / report.d)
            for name, score in scores.items() if name in report.reference}


def _summary(report: Any) -> dict[str, Any]:
    return {
        "n_volumes": len(report.volumes),
        "mae": {"mean": _num(report.mae.mean), "se": _num(report.mae.se), "n": report.mae.n},
        "lmse": {"mean": _num(report.lmse.mean), "se": _num(report.lmse.se), "n": report.lmse.n},
        "accuracy": {"mean": _num(report.accuracy.mean), "se": _num(report.accuracy.se),
                     "n": report.accuracy.n},
        "region_accuracy": {"mean": _num(report.region_accuracy.mean),
                            "se": _num(report.region_accuracy.se), "n": report.region_accuracy.n},
        "per_volume": {v.volume_id: {"mae": _num(v.mae), "lmse": _num(v.lmse),
                                     "accuracy": _num(v.accuracy),
                                     "region_accuracy": _num(v.region_accuracy),
                                     "n_landmarks": len(v.landmark_scores),
                                     "errors": landmark_errors(v, report)}
                       for v in report.volumes},
        "per_landmark": [{"landmark": e.name, "n": e.n, "reference": _num(e.reference_score),
                          "mae": _num(e.mae.mean), "mae_se": _num(e.mae.se),
                          "bias": _num(e.bias)}
                         for e in report.per_landmark],
    }


def landmark_metrics(model: Any, annotations: dict[str, VolumeAnnotation],
                     files: dict[str, Path], published: dict[str, float],
                     cache: Path) -> dict[str, Any]:
    """Landmark metrics per confidence set (:data:`CONFIDENCE_SETS`), each against the
    published scale and against the model's own reference table."""
    out: dict[str, Any] = {}
    for label, keep in CONFIDENCE_SETS.items():
        subset = only_confidence(annotations, keep)
        subset = {k: v for k, v in subset.items() if v.landmarks}
        if not subset:
            continue
        published_report = evaluate_model_on(
            model, subset, files=files, cache_dir=cache, reference=published,
            landmarks=None,
        )
        own_report = evaluate_model_on(model, subset, files=files, cache_dir=cache,
                                       reference="model", landmarks=None)
        out[label] = {"vs_published": _summary(published_report),
                      "vs_own_table": _summary(own_report)}
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}"


def _markdown(data: dict[str, Any]) -> str:
    lines = [f"# Accuracy of `{data['model']['name']}` {data['model'].get('version', '')}", "",
             f"Measured {data['date']} by `benchmarks/accuracy/evaluate_model.py` "
             f"(bodyscore {data['bodyscore_version']}).", ""]
    lines += ["## Landmarks and classes", "",
              "| set | volumes | landmark MAE vs published scale (score units) | "
              "LMSE vs own table | 5-class accuracy | region accuracy |",
              "|---|---|---|---|---|---|"]
    for set_name, block in data["sets"].items():
        for conf, res in block.get("landmarks", {}).items():
            pub, own = res["vs_published"], res["vs_own_table"]
            acc = pub["accuracy"]
            reg = pub["region_accuracy"]
            lines.append(
                f"| {set_name} ({conf.replace('_', '/')} confidence) | {pub['n_volumes']} | "
                f"{_fmt(pub['mae']['mean'])} ± {_fmt(pub['mae']['se'])} | "
                f"{_fmt(own['lmse']['mean'])} ± {_fmt(own['lmse']['se'])} | "
                f"{_fmt(None if acc['mean'] is None else 100 * acc['mean'], 1)} % ± "
                f"{_fmt(None if acc['se'] is None else 100 * acc['se'], 1)} (n={acc['n']}) | "
                f"{_fmt(None if reg['mean'] is None else 100 * reg['mean'], 1)} % |"
            )
    lines += ["", "## Per volume", "",
              "| volume | split | tag | expected | slope (score/mm) | increasing | reversed copy "
              "flagged | flipped-consistent copy: flagged / same scores |",
              "|---|---|---|---|---|---|---|---|"]
    for vid, c in sorted(data["volumes"].items()):
        lines.append(
            f"| {vid} | {c['split']} | {c['tag']} | {' / '.join(sorted(c['expected_tags']))} "
            f"{'✓' if c['tag_ok'] else '✗'} | {_fmt(c['observed_slope'], 3)} | "
            f"{'✓' if c['increasing'] else '✗'} | {'✓' if c['reversed_copy_flagged'] else '✗'} | "
            f"{'✗ flagged' if c['consistent_flip_flagged'] else 'not flagged'} / "
            f"{'same' if c['consistent_flip_same_scores'] else 'DIFFERENT'} |"
        )
    for set_name, block in data["sets"].items():
        checks = block.get("checks")
        if checks:
            lines += ["", f"**{set_name}**: " + ", ".join(f"{k} {v}" for k, v in checks.items())]
    return "\n".join(lines) + "\n"


def _split_of(manifest: Path | None) -> dict[str, str]:
    if manifest is None or not manifest.is_file():
        return {}
    data = json.loads(manifest.read_text())
    return {v["volume_id"]: v["split"] for v in data["volumes"]}


def synthetic_summary(checks: dict[str, Any], annotation: VolumeAnnotation) -> dict[str, Any]:
    """The per-volume checks of a synthetic volume kept in the output, with the landmarks it
    covers (lowest and highest by slice index), so a failure can be traced to its anatomy."""
    by_k = sorted(((name, p.k) for name, p in annotation.landmarks.items() if p.k is not None),
                  key=lambda item: item[1])
    keep = ("z_extent_mm", "observed_slope", "increasing", "reversed_copy_flagged", "tag",
            "score_range")
    return {**{k: checks[k] for k in keep},
            "covers": f"{by_k[0][0]} … {by_k[-1][0]}" if by_k else "no landmark"}


def _rate(values: list[bool]) -> str:
    return f"{sum(values)}/{len(values)}" if values else "–"


def evaluate_volumes(model: Any, annotations: dict[str, VolumeAnnotation],
                     files: dict[str, Path], *, published: dict[str, float], cache: Path,
                     expected_tags: dict[str, set[str]] | None = EXPECTED_TAGS,
                     split: dict[str, str] | None = None) -> dict[str, Any]:
    """Every measurement of the module docstring on one set of volumes.

    Parameters
    ----------
    model : ScoreModel
        A loaded model (:func:`bodyscore.model.load_model`).
    annotations : dict of str to VolumeAnnotation
        The volumes to evaluate, by volume id.
    files : dict of str to Path
        Image file of each volume id.
    published : dict of str to float
        Published landmark scores (:func:`published_table`).
    cache : Path
        Result cache folder of :func:`bodyscore.evaluate.runner.evaluate_model_on`.
    expected_tags : dict of str to set of str, optional
        Tags accepted per volume id; None: no tag check (synthetic volumes).
    split : dict of str to str, optional
        Split of each volume in the training manifest (stored per volume).

    Returns
    -------
    dict
        ``volumes`` (per-volume checks), ``landmarks`` (:func:`landmark_metrics`) and
        ``checks`` (counts, :func:`set_checks`); strict-JSON ready.
    """
    volumes: dict[str, Any] = {}
    for vid in sorted(annotations):
        log.info("checks on %s", vid)
        c = volume_checks(files[vid], model, annotations[vid])
        if split is not None:
            c["split"] = split.get(vid, "unknown")
        if expected_tags is not None:
            c["expected_tags"] = sorted(expected_tags.get(vid, set()))
            c["tag_ok"] = c["tag"] in expected_tags.get(vid, set())
        volumes[vid] = c
    return {
        "volumes": volumes,
        "landmarks": landmark_metrics(model, annotations, files, published, cache),
        "checks": set_checks(list(volumes.values())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--manifest", type=Path, help="training manifest.json (train/val split)")
    parser.add_argument("--synthetic", type=int, default=8, help="held-out synthetic volumes")
    parser.add_argument("--synthetic-seed", type=int, default=HELD_OUT_SYNTHETIC_SEED)
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/accuracy"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    model = load_model(args.model)
    published = published_table()
    split = _split_of(args.manifest)
    annotations = read_landmarks(CT_DIR / "landmarks.json")
    files = {vid: CT_DIR / f"{vid}.nii.gz" for vid in annotations}
    cache = Path(tempfile.mkdtemp(prefix="bodyscore_eval_"))
    started = time.time()

    volumes: dict[str, Any] = {}
    sets: dict[str, Any] = {}
    for set_name in ("train", "val", "test"):
        ids = [v for v in annotations if split.get(v, "train") == set_name]
        if not ids:
            continue
        block = evaluate_volumes(model, {v: annotations[v] for v in ids}, files,
                                 published=published, cache=cache, split=split)
        volumes.update(block.pop("volumes"))
        sets[f"real {set_name}"] = block
    for c in volumes.values():
        c.setdefault("split", "unknown")

    if args.synthetic:
        synth_dir = Path(tempfile.mkdtemp(prefix="bodyscore_synth_eval_"))
        generate_dataset(synth_dir, args.synthetic, seed=args.synthetic_seed,
                         config=HELD_OUT_SYNTHETIC)
        synth_ann = read_landmarks(synth_dir / "landmarks.json")
        synth_files = {vid: synth_dir / f"{vid}.nii.gz" for vid in synth_ann}
        block = evaluate_volumes(model, synth_ann, synth_files, published=published,
                                 cache=cache, expected_tags=None)
        block["volumes"] = {vid: synthetic_summary(c, synth_ann[vid])
                            for vid, c in block["volumes"].items()}
        sets["synthetic held-out"] = block

    data = {
        "model": dict(model.info),
        "bodyscore_version": __import__("bodyscore").__version__,
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - started, 1),
        "sets": sets,
        "volumes": volumes,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "accuracy.json").write_text(json.dumps(data, indent=2, allow_nan=False))
    (args.output / "accuracy.md").write_text(_markdown(data))
    print(_markdown(data))
    return 0


def set_checks(checks: list[dict[str, Any]]) -> dict[str, str]:
    """Counts "passed/total" of the per-volume checks; the reversed-copy target counts only
    volumes with >= 10 cm z extent (shorter slabs cannot show a clear slope)."""
    long_enough = [c for c in checks if c["z_extent_mm"] >= 100]
    return {
        "increasing": _rate([c["increasing"] for c in checks]),
        "reversed copies flagged (>= 10 cm)": _rate(
            [c["reversed_copy_flagged"] for c in long_enough]),
        "flipped-consistent copies not flagged": _rate(
            [not c["consistent_flip_flagged"] for c in checks]),
        "flipped-consistent copies same scores": _rate(
            [c["consistent_flip_same_scores"] for c in checks]),
        "tag matches README": _rate([c.get("tag_ok", False) for c in checks if "tag_ok" in c]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
