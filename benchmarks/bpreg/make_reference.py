"""Produce bpreg 1.1.0 reference outputs for the parity test (run by hand, needs bpreg's venv).

What it does, all deterministic:

1. Derives small test volumes from ``../shared/data/ct`` (a z sub-range of each real CT, every
   ``step``-th slice, so the CI test runs the VGG16 network on few slices; the affine is updated so
   the slice spacing becomes ``step`` × the original) plus one **reversed** copy (array flipped
   along z, affine unchanged: content runs head → feet while the header says feet → head) and
   one copy with three all-air slices (-1024 HU) added on top.
2. Builds a bpreg-format model folder: bpreg's public ``config.json`` and
   ``inference-settings.json`` (``../shared/data/bpreg-public-model``) and a ``model.pt`` whose
   VGG16 weights are drawn from a seeded numpy generator (He-uniform), except the last layer
   ``fc7``, which is fitted by ridge regression so that the scores follow the landmarks of
   ``landmarks.json`` (a linear probe on random features: scores are meaningful on these slices,
   so tail removal, tags and the body part dictionary are exercised). The fc7 numbers are stored
   in the manifest; ``model.pt`` is not committed (60 MB) — the test rebuilds it.
3. Runs ``bpreg_predict`` on the volumes and stores its JSON outputs unchanged (bare ``NaN``
   tokens included) plus ``manifest.json`` in ``tests/data/bpreg_reference/``.

Usage::

    benchmarks/bpreg/setup_bpreg_venv.sh            # once; venv in /tmp/bpreg-venv
    PYTHONPATH=src python benchmarks/bpreg/make_reference.py [--venv /tmp/bpreg-venv]

The functions :func:`derive_volumes` and :func:`write_model_folder` are also used by
``tests/test_bpreg_parity.py`` to rebuild the inputs without bpreg.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("make_reference")

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
REFERENCE_DIR = REPO / "tests" / "data" / "bpreg_reference"
MANIFEST = "manifest.json"
SEED = 20261123
RIDGE = 1e-3


@dataclass(frozen=True)
class VolumeSpec:
    """A test volume derived from a shared CT: ``array[..., start:stop:step]`` (NIfTI k axis)."""

    name: str
    source: str
    start: int
    stop: int
    step: int
    reverse: bool = False
    air_slices_on_top: int = 0


VOLUMES: tuple[VolumeSpec, ...] = (
    VolumeSpec("chest_lung1_20mm", "pyradiomics_lung1_chest.nii.gz", 0, 48, 4),
    VolumeSpec("abdomen_crlm_15mm", "crlm1004_abdomen.nii.gz", 0, 41, 3),
    VolumeSpec("abdomen_pelvis_ts_24mm", "ts_abdomen_pelvis.nii.gz", 0, 112, 8),
    VolumeSpec("neck_head_openkbp_20mm", "openkbp_train126_hn.nii.gz", 0, 128, 10),
    VolumeSpec("head_unc_16mm", "unc_cthead_cadaver_head.nii.gz", 0, 111, 8),
    VolumeSpec("slab_petct_4mm", "ts_petct_slab.nii.gz", 0, 20, 2),
    VolumeSpec("head_unc_16mm_reversed", "unc_cthead_cadaver_head.nii.gz", 0, 111, 8,
               reverse=True),
    VolumeSpec("head_unc_16mm_air", "unc_cthead_cadaver_head.nii.gz", 0, 111, 8,
               air_slices_on_top=3),
)


def derive_volumes(ct_dir: Path, out_dir: Path,
                   specs: Sequence[VolumeSpec] = VOLUMES) -> dict[str, Path]:
    """Write the derived NIfTI volumes (int16 HU) to ``out_dir``; returns name → path."""
    import nibabel as nib

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for spec in specs:
        img = nib.load(str(ct_dir / spec.source))
        data = np.asarray(img.dataobj)[:, :, spec.start:spec.stop:spec.step]
        affine = np.array(img.affine, dtype=np.float64)
        new_affine = affine.copy()
        new_affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, spec.start]) + affine[:3, 3]
        new_affine[:3, 2] = affine[:3, 2] * spec.step
        if spec.reverse:
            data = data[:, :, ::-1]
        if spec.air_slices_on_top:
            air = np.full((*data.shape[:2], spec.air_slices_on_top), -1024, dtype=data.dtype)
            data = np.concatenate([data, air], axis=2)
        out = nib.Nifti1Image(np.ascontiguousarray(data), new_affine)
        out.set_data_dtype(data.dtype)
        out.header.set_xyzt_units("mm", "sec")
        path = out_dir / f"{spec.name}.nii.gz"
        nib.save(out, str(path))
        paths[spec.name] = path
    return paths


def vgg_state_dict_from_seed(seed: int) -> dict[str, np.ndarray]:
    """Seeded He-uniform weights for every tensor of bpreg's VGG16 network (float32, numpy).

    Uses numpy's ``default_rng`` (stable across numpy versions), not torch's generator, so the
    weights are the same wherever the test runs.
    """
    from bodyscore.model.network import BodyPartRegressionVGG

    rng = np.random.default_rng(seed)
    template = BodyPartRegressionVGG().state_dict()
    state: dict[str, np.ndarray] = {}
    for key, tensor in template.items():
        shape = tuple(tensor.shape)
        if key.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            bound = np.sqrt(6.0 / fan_in)
        else:
            bound = 0.01
        state[key] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return state


def write_model_folder(folder: Path, *, seed: int, fc7_weight: Sequence[float],
                       fc7_bias: float, public_model_dir: Path) -> Path:
    """Write a bpreg-format model folder (config.json, inference-settings.json, model.pt)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "inference-settings.json"):
        shutil.copyfile(public_model_dir / name, folder / name)
    state = vgg_state_dict_from_seed(seed)
    state["fc7.weight"] = np.asarray(fc7_weight, dtype=np.float32).reshape(1, -1)
    state["fc7.bias"] = np.asarray([fc7_bias], dtype=np.float32)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, folder / "model.pt")
    return folder


def _features(volume_path: Path, state: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n, 512) global-average-pooled conv6 features of every slice (bodyscore preprocessing)."""
    import torch

    from bodyscore.io import read_volume
    from bodyscore.model.network import BodyPartRegressionVGG
    from bodyscore.preprocess import iter_preprocessed_batches

    net = BodyPartRegressionVGG()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    net.eval()
    volume = read_volume(volume_path)  # canonical order == stored order for these files
    out = np.empty((volume.n_slices, 512), dtype=np.float64)
    with torch.inference_mode():
        for indices, batch in iter_preprocessed_batches(volume, batch_size=32):
            x = net.model(torch.from_numpy(batch))
            x = torch.relu(net.conv6(x)).mean(dim=(2, 3))
            out[indices] = x.numpy()
    return out


def _targets(spec: VolumeSpec, volume_path: Path, ct_dir: Path,
             settings: Mapping[str, Any]) -> np.ndarray:
    """Transformed target score per derived slice from the volume's annotated landmarks."""
    import nibabel as nib

    landmarks = json.loads((ct_dir / "landmarks.json").read_text())
    entry = landmarks[spec.source.replace(".nii.gz", "")]
    table = settings["lookuptable_train_val"]["transformed"]
    slope = float(settings["slope_mean"])
    img = nib.load(str(volume_path))
    z = img.affine[2, 3] + img.affine[2, 2] * np.arange(img.shape[2])
    anchors = [
        (float(v["z_mm"]), float(table[name]["mean"]))
        for name, v in (entry.get("landmarks") or {}).items()
        if isinstance(v, dict) and v.get("z_mm") is not None and name in table
    ]
    if not anchors:
        raise RuntimeError(f"{spec.source}: no usable landmark to build target scores")
    per_anchor = np.array([[t + slope * (zk - z0) for zk in z] for z0, t in anchors])
    return np.median(per_anchor, axis=0)


def fit_fc7(paths: Mapping[str, Path], ct_dir: Path, settings: Mapping[str, Any],
            seed: int) -> tuple[list[float], float]:
    """Ridge fit of fc7 (raw = w·f + b) to the landmark targets of the forward volumes."""
    state = vgg_state_dict_from_seed(seed)
    t_min = settings["lookuptable_train_val"]["original"]["pelvis_start"]["mean"]
    t_max = settings["lookuptable_train_val"]["original"]["eyes_end"]["mean"]
    feats, targets = [], []
    for spec in VOLUMES:
        if spec.reverse or spec.air_slices_on_top:
            continue
        feats.append(_features(paths[spec.name], state))
        transformed = _targets(spec, paths[spec.name], ct_dir, settings)
        targets.append(transformed * (t_max - t_min) / 100.0 + t_min)  # inverse transform
    f = np.concatenate(feats)
    y = np.concatenate(targets)
    mean_f, mean_y = f.mean(axis=0), y.mean()
    fc = f - mean_f
    w = np.linalg.solve(fc.T @ fc + RIDGE * len(y) * np.eye(fc.shape[1]), fc.T @ (y - mean_y))
    b = mean_y - mean_f @ w
    w32 = w.astype(np.float32)
    fitted = f @ w32.astype(np.float64) + np.float32(b)
    logger.info("fc7 fit: rms raw residual %.4f on %d slices", np.sqrt(np.mean((fitted - y) ** 2)),
                len(y))
    return [float(v) for v in w32], float(np.float32(b))


def run_bpreg(venv: Path, in_dir: Path, out_dir: Path, model_dir: Path) -> None:
    """``bpreg_predict -i in_dir -o out_dir --model model_dir/`` in bpreg's venv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(venv / "bin" / "bpreg_predict"), "-i", str(in_dir), "-o", str(out_dir),
           "--model", str(model_dir).rstrip("/") + "/"]
    logger.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def _bpreg_versions(venv: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "['bpreg', 'torch', 'torchvision', 'albumentations', 'numpy', 'scipy', "
            "'opencv-python-headless', 'nibabel']}))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True,
                         capture_output=True, text=True)
    return dict(json.loads(out.stdout))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path,
                        default=Path(os.environ.get("BPREG_VENV", "/tmp/bpreg-venv")))
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")

    ct_dir = args.shared / "data" / "ct"
    public_model = args.shared / "data" / "bpreg-public-model"
    settings = json.loads((public_model / "inference-settings.json").read_text())
    with tempfile.TemporaryDirectory(prefix="bpreg-ref-") as tmp_name:
        tmp = Path(tmp_name)
        paths = derive_volumes(ct_dir, tmp / "volumes")
        weight, bias = fit_fc7(paths, ct_dir, settings, args.seed)
        model_dir = write_model_folder(tmp / "model", seed=args.seed, fc7_weight=weight,
                                       fc7_bias=bias, public_model_dir=public_model)
        run_bpreg(args.venv, tmp / "volumes", tmp / "bpreg_out", model_dir)
        args.out.mkdir(parents=True, exist_ok=True)
        for spec in VOLUMES:
            produced = tmp / "bpreg_out" / f"{spec.name}.json"
            if not produced.is_file():
                raise RuntimeError(f"{produced}: bpreg wrote no output")
            shutil.copyfile(produced, args.out / f"{spec.name}.json")
        manifest = {
            "about": "bpreg 1.1.0 outputs for tests/test_bpreg_parity.py; produced by "
                     "benchmarks/bpreg/make_reference.py (do not edit by hand)",
            "seed": args.seed,
            "weights": "numpy default_rng(seed) He-uniform for every VGG16 tensor "
                       "(make_reference.vgg_state_dict_from_seed), then fc7 replaced by "
                       "fc7_weight / fc7_bias below",
            "fc7_weight": weight,
            "fc7_bias": bias,
            "volumes": [asdict(spec) for spec in VOLUMES],
            "bpreg_command": "bpreg_predict -i VOLUMES -o OUT --model MODEL/",
            "bpreg_environment": _bpreg_versions(args.venv),
            "python": sys.version.split()[0],
        }
        (args.out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    logger.info("wrote %d references to %s", len(VOLUMES), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
