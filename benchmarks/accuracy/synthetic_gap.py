"""How far a model's scores on synthetic CT are from the published scale, region by region.

    python benchmarks/accuracy/synthetic_gap.py [--model default] [--seeds 8] \
        [-o benchmarks/accuracy/synthetic_gap.md]

Generates synthetic crops from the upper thighs to above L1 (z −30 … 420 mm in the synthetic
frame, pelvis_start = 0; seeds 700000 + i, never used in training or in the held-out check of
``evaluate_model.py``), scores them and compares each slice's cleaned score with the published
score expected at its height (linear between the published means of pelvis_start, femur_end,
L5, pelvis_end, L3 and L1). Reports the mean signed bias in the pelvis (pelvis_start …
pelvis_end) and the abdomen (pelvis_end … L1) and the fitted slope. A large positive pelvis
bias is what makes the held-out synthetic abdomen crops that start at L5 score downwards: a
metric for making ``bodyscore.synth`` look more like real CT.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from bodyscore import load_model  # noqa: E402
from bodyscore.inference import predict  # noqa: E402
from bodyscore.settings import InferenceSettings  # noqa: E402
from bodyscore.synth import SynthConfig, generate_volume  # noqa: E402
from bodyscore.usecases.bodypart import landmark_means  # noqa: E402

#: The published (bpreg public model) settings; their look-up table gives the expected scores.
PUBLISHED = ROOT.parent / "shared" / "data" / "bpreg-public-model" / "inference-settings.json"
#: Landmarks between the thighs and L1 whose published means make the expected-score line.
LINE_LANDMARKS = ("pelvis_start", "femur_end", "L5", "pelvis_end", "L3", "L1")
CONFIG = SynthConfig(in_plane_size=128, in_plane_spacing_mm=(2.5, 3.75),
                     slice_spacing_mm=(2.0, 4.0), max_slices=300, partial_probability=0.0)


@functools.cache
def published_means() -> dict[str, float]:
    """Landmark → published mean score (read once)."""
    return landmark_means(InferenceSettings.from_file(PUBLISHED).lookup_table)


def crop_bias(seed: int, model: object) -> dict[str, float]:
    """Slope (score/mm) and mean signed score bias in the pelvis and abdomen of one crop."""
    ct = generate_volume(seed, CONFIG, z_range_mm=(-30.0, 420.0))
    result = predict(ct.volume, model)  # type: ignore[arg-type]
    lm, z = ct.landmarks_mm, ct.volume.z_mm
    scores = np.array([np.nan if s is None else s for s in result.cleaned_scores], dtype=float)
    means = published_means()
    knots = sorted((lm[name], means[name]) for name in LINE_LANDMARKS)
    expected = np.interp(z, [k[0] for k in knots], [k[1] for k in knots])
    pelvis = (z >= lm["pelvis_start"]) & (z <= lm["pelvis_end"])
    abdomen = (z > lm["pelvis_end"]) & (z <= lm["L1"])
    return {"seed": seed, "slope": float(result.observed_slope or np.nan),
            "pelvis": float(np.nanmean(scores[pelvis] - expected[pelvis])),
            "abdomen": float(np.nanmean(scores[abdomen] - expected[abdomen]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    rows = [crop_bias(700_000 + i, model) for i in range(args.seeds)]
    lines = [f"# Synthetic-to-published score bias of model `{args.model}`", "",
             "| seed | slope (score/mm) | pelvis bias | abdomen bias |", "|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['slope']:+.3f} | {r['pelvis']:+.1f} | {r['abdomen']:+.1f} |"
              for r in rows]
    lines += [f"| mean | {np.mean([r['slope'] for r in rows]):+.3f} | "
              f"{np.mean([r['pelvis'] for r in rows]):+.1f} | "
              f"{np.mean([r['abdomen'] for r in rows]):+.1f} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
