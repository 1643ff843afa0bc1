"""How much does the fast path (``bodyscore.fast``) change the scores? Run by hand.

For every CT in ``../shared/data/ct/*.nii.gz`` it scores all slices and the fast subset for each
``--steps`` value, post-processes both the same way, and prints the largest absolute difference
of the cleaned scores (score units) and whether body part tag / NaN pattern agree::

    PYTHONPATH=src python benchmarks/fast_accuracy.py --model default --steps 2.5 4 5

Until a trained model exists, ``--make-probe FOLDER`` builds a stand-in with meaningful but noisy
scores: the default light architecture with seeded random convolutions and a last layer fitted
by ridge regression to the landmark-derived scores of every CT (``landmarks.json``). Per-slice
noise is the hard case for sub-sampling along z, so this bounds a trained model's error.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CT_DIR = REPO.parent / "shared" / "data" / "ct"


def compare(volume_path: Path, model: object, steps: list[float]) -> list[dict[str, object]]:
    """Per step: max |Δ cleaned|, tag equality and NaN-pattern equality against all slices."""
    from bodyscore.assemble import assemble_result
    from bodyscore.fast import predict_raw_scores_fast
    from bodyscore.inference import predict_raw_scores
    from bodyscore.io import read_volume

    volume = read_volume(volume_path)
    t0 = time.perf_counter()
    full_raw = predict_raw_scores(volume, model)  # type: ignore[arg-type]
    t_full = time.perf_counter() - t0
    full = assemble_result(raw_scores=full_raw, volume=volume, settings=model.settings,  # type: ignore[attr-defined]
                           model_info={})
    rows = []
    for step in steps:
        t0 = time.perf_counter()
        fast_raw = predict_raw_scores_fast(volume, model, max_step_mm=step)  # type: ignore[arg-type]
        t_fast = time.perf_counter() - t0
        fast = assemble_result(raw_scores=fast_raw, volume=volume, settings=model.settings,  # type: ignore[attr-defined]
                               model_info={})
        a, b = full.cleaned, fast.cleaned
        both = np.isfinite(a) & np.isfinite(b)
        rows.append({
            "volume": volume_path.name,
            "slices": volume.n_slices,
            "dz_mm": round(float(volume.spacing_mm[0]), 3),
            "step_mm": step,
            "max_abs_diff": float(np.max(np.abs(a[both] - b[both]))) if both.any() else math.nan,
            "nan_pattern_equal": bool(np.array_equal(np.isfinite(a), np.isfinite(b))),
            "tag_equal": full.body_part_examined_tag == fast.body_part_examined_tag,
            "speedup": t_full / max(t_fast, 1e-9),
        })
    return rows


def make_probe_model(folder: Path, ct_dir: Path, *, seed: int = 0) -> Path:
    """Light network, random features + fc7 ridge-fitted to landmark targets (see module doc)."""
    import json

    import torch

    from bodyscore.io import read_volume
    from bodyscore.model import save_package
    from bodyscore.model.network import LightRegressionNet
    from bodyscore.preprocess import iter_preprocessed_batches
    from bodyscore.settings import InferenceSettings

    settings_path = ct_dir.parent / "bpreg-public-model" / "inference-settings.json"
    settings = InferenceSettings.from_file(settings_path)
    raw_settings = json.loads(settings_path.read_text())
    table = raw_settings["lookuptable_train_val"]["transformed"]
    landmarks = json.loads((ct_dir / "landmarks.json").read_text())
    torch.manual_seed(seed)
    net = LightRegressionNet().eval()
    feats, targets = [], []
    for path in sorted(ct_dir.glob("*.nii.gz")):
        entry = landmarks.get(path.name.replace(".nii.gz", ""))
        anchors = [(float(v["z_mm"]), float(table[k]["mean"]))
                   for k, v in ((entry or {}).get("landmarks") or {}).items()
                   if isinstance(v, dict) and v.get("z_mm") is not None and k in table]
        if not anchors:
            continue
        volume = read_volume(path)
        z = np.asarray(volume.z_mm)
        target = np.median([[t + settings.slope_mean * (zk - z0) for zk in z]
                            for z0, t in anchors], axis=0)
        with torch.inference_mode():
            for idx, batch in iter_preprocessed_batches(volume, batch_size=64):
                x = net.model(torch.from_numpy(batch))
                feats.append(torch.relu(net.conv6(x)).mean(dim=(2, 3)).numpy())
                targets.append(target[idx])
    f = np.concatenate(feats).astype(np.float64)
    y = np.concatenate(targets) * (settings.transform_max - settings.transform_min) / 100.0 \
        + settings.transform_min
    mf, my = f.mean(axis=0), y.mean()
    sf = f.std(axis=0) + 1e-12
    fs = (f - mf) / sf  # standardised features: the ridge penalty is scale free
    w = np.linalg.solve(fs.T @ fs + 1e-3 * len(y) * np.eye(f.shape[1]), fs.T @ (y - my)) / sf
    rms = float(np.sqrt(np.mean(((f - mf) @ w + my - y) ** 2)))
    print(f"probe fit: rms raw residual {rms:.3f} on {len(y)} slices", file=sys.stderr)
    state = net.state_dict()
    state["fc7.weight"] = torch.tensor(w, dtype=torch.float32).reshape(1, -1)
    state["fc7.bias"] = torch.tensor([my - mf @ w], dtype=torch.float32)
    save_package(folder, state_dict=state, settings=settings, overwrite=True,
                 config={"base_model": "light", "model_name": "probe-stand-in",
                         "backbone": {"widths": list(net.widths), "convs_per_stage": 2}})
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="registry name or package folder")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--steps", type=float, nargs="+", default=[2.5])
    parser.add_argument("--ct-dir", type=Path, default=CT_DIR)
    parser.add_argument("--make-probe", type=Path, metavar="FOLDER",
                        help="build the probe stand-in model there and use it")
    args = parser.parse_args(argv)
    from bodyscore.model import load_model

    if args.make_probe is not None:
        args.model = str(make_probe_model(args.make_probe, args.ct_dir))

    model = load_model(args.model, backend=args.backend)
    print("| volume | slices | dz mm | step mm | max abs Δ cleaned | NaN pattern equal | "
          "tag equal | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    worst = dict.fromkeys(args.steps, 0.0)
    for path in sorted(args.ct_dir.glob("*.nii.gz")):
        if "_seg" in path.name:
            continue
        for row in compare(path, model, args.steps):
            worst[float(row["step_mm"])] = max(worst[float(row["step_mm"])],  # type: ignore[arg-type]
                                               float(row["max_abs_diff"]))  # type: ignore[arg-type]
            print(f"| {row['volume']} | {row['slices']} | {row['dz_mm']} | {row['step_mm']} | "
                  f"{row['max_abs_diff']:.4f} | {row['nan_pattern_equal']} | {row['tag_equal']} | "
                  f"{row['speedup']:.2f} |", flush=True)
    for step, value in worst.items():
        print(f"worst over all volumes, step {step} mm: {value:.4f} score units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
