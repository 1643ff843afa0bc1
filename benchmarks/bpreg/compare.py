"""Compare bodyscore with bpreg's outputs, field by field (run by hand).

By default it rebuilds the reference volumes and model folder of ``tests/data/bpreg_reference``
(see ``make_reference.py``) and compares bodyscore's results, with each backend, against the
stored bpreg JSONs. With ``--bpreg-dir``/``--volumes``/``--model`` it compares any set of
bpreg outputs with bodyscore run on the same NIfTI files and model folder::

    PYTHONPATH=src python benchmarks/bpreg/compare.py --backends torch onnx
    PYTHONPATH=src python benchmarks/bpreg/compare.py --volumes IN_DIR --bpreg-dir OUT_DIR \\
        --model MODEL_DIR

Prints a markdown table: max |Δ| of unprocessed and cleaned scores (score units), equality of
NaN pattern, tag, dictionary and sanity flags, relative Δ of the expected z-spacing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_reference  # noqa: E402


def _arr(values: Sequence[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def compare_one(ref: Mapping[str, Any], ours: Any) -> dict[str, Any]:
    """Differences between one bpreg JSON (parsed) and one bodyscore ScoreResult."""
    ref_clean = _arr(ref["cleaned slice scores"])
    both = np.isfinite(ref_clean) & np.isfinite(ours.cleaned)
    ref_regions = {k: [int(i) for i in v] for k, v in ref["body part examined"].items()}
    ours_regions = {k: list(v) for k, v in ours.body_part_examined.items()}
    ref_valid = ref["valid z-spacing"]
    ref_valid_bool = None if ref_valid is None or math.isnan(ref_valid) else bool(ref_valid)
    exp_ref, exp_ours = ref["expected z-spacing"], ours.expected_z_spacing
    return {
        "unprocessed": float(np.max(np.abs(ours.unprocessed
                                           - _arr(ref["unprocessed slice scores"])))),
        "cleaned": float(np.max(np.abs(ours.cleaned[both] - ref_clean[both])))
        if both.any() else math.nan,
        "nan_pattern": bool(np.array_equal(np.isnan(ref_clean), np.isnan(ours.cleaned))),
        "tag": ours.body_part_examined_tag == ref["body part examined tag"],
        "tags": f"{ref['body part examined tag']} / {ours.body_part_examined_tag}",
        "dictionary": ours_regions == ref_regions,
        "flags": (ours.reverse_z_ordering == bool(ref["reverse z-ordering"])
                  and ours.valid_z_spacing == ref_valid_bool),
        "expected_dz_rel": abs(exp_ours - exp_ref) / abs(exp_ref)
        if exp_ours is not None and exp_ref and math.isfinite(exp_ref) else math.nan,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["torch"],
                        choices=["torch", "onnx", "auto"])
    parser.add_argument("--volumes", type=Path, help="folder of NIfTI files bpreg scored")
    parser.add_argument("--bpreg-dir", type=Path, help="folder of bpreg's JSON outputs")
    parser.add_argument("--model", type=Path, help="the bpreg model folder both used")
    args = parser.parse_args(argv)
    from bodyscore.inference import predict
    from bodyscore.model import load_model

    with tempfile.TemporaryDirectory(prefix="bpreg-compare-") as tmp_name:
        tmp = Path(tmp_name)
        if args.volumes is None:
            manifest = json.loads((make_reference.REFERENCE_DIR / "manifest.json").read_text())
            specs = [make_reference.VolumeSpec(**v) for v in manifest["volumes"]]
            shared = make_reference.SHARED / "data"
            volumes = make_reference.derive_volumes(shared / "ct", tmp / "volumes", specs)
            model_dir = make_reference.write_model_folder(
                tmp / "model", seed=int(manifest["seed"]), fc7_weight=manifest["fc7_weight"],
                fc7_bias=float(manifest["fc7_bias"]),
                public_model_dir=shared / "bpreg-public-model")
            bpreg_dir = make_reference.REFERENCE_DIR
        else:
            volumes = {p.name.split(".nii")[0]: p for p in sorted(args.volumes.glob("*.nii*"))}
            model_dir, bpreg_dir = args.model, args.bpreg_dir
        print("| backend | volume | max Δ unprocessed | max Δ cleaned | NaN pattern | tag "
              "(bpreg / bodyscore) | dictionary | flags | rel Δ expected z-spacing |")
        print("|---|---|---|---|---|---|---|---|---|")
        for backend in args.backends:
            model = load_model(str(model_dir), backend=backend)
            for name, path in volumes.items():
                ref = json.loads((bpreg_dir / f"{name}.json").read_text())
                row = compare_one(ref, predict(path, model))
                print(f"| {backend} | {name} | {row['unprocessed']:.2e} | {row['cleaned']:.2e} | "
                      f"{row['nan_pattern']} | {row['tags']} | {row['dictionary']} | "
                      f"{row['flags']} | {row['expected_dz_rel']:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
