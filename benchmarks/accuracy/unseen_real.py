"""A model package on the unlabelled real CT it never trained on (issue 17, item 3).

The 2026.11 models trained on the 20 annotated volumes only, so every volume of
``../shared/data/ct-unlabelled`` is unseen CT for them: this script gives them the figures the
cross-validation gives the 2026.12 recipe on its held-out unlabelled volumes — monotony per
region and slice thickness, the independence figure at the OpenKBP contour boundaries (thesis
table 5.10), the z-spacing replay (sec. 5.2.3) and the leg slices below 0 — with the same code
(``real_checks.py``, ``cross_validate.aggregate_real``)::

    python benchmarks/accuracy/unseen_real.py --model synthetic -o benchmarks/accuracy/synthetic

writes ``unseen-real.json`` and ``unseen-real.md``. ``benchmarks/accuracy/real-only/`` was
written with ``--model real-only`` before that model was retired (its package is in the git
history before 2026.12.1; pass its folder as ``--model``). ``--skip-trained MANIFEST`` leaves
out the volumes a training manifest lists (for a model that trained on some of them).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))
sys.path.insert(0, str(ROOT / "src"))

import cross_validate as cv  # noqa: E402

from bodyscore.evaluate.landmarks import read_landmark_files, volume_id_from_path  # noqa: E402
from bodyscore.export.atomic import atomic_write_text  # noqa: E402
from bodyscore.model import load_model  # noqa: E402
from bodyscore.train.config import load_train_config  # noqa: E402

log = logging.getLogger("unseen_real")


def evaluate(model: Any, config_path: Path, skip: set[str]) -> dict[str, Any]:
    """Monotony checks of every unlabelled volume of the config not in ``skip``."""
    config = load_train_config(config_path)
    weak = read_landmark_files(config.weak_label_files)
    boundaries = cv._boundaries(config.structure_files)
    checks = {}
    for path in map(Path, config.unlabelled_sources):
        vid = volume_id_from_path(path)
        if vid in skip:
            continue
        log.info("checks on %s", vid)
        labels = weak.get(vid)
        checks[vid] = cv.rc.monotony_checks(
            path, model, positions=boundaries.get(vid),
            regions=[(r.k_first, r.k_last, r.label) for r in (labels.regions if labels else ())])
    regions = cv.volume_regions(config, weak)
    fold = {"evaluation": {"volumes": {}, "landmarks": {}, "unlabelled": checks}}
    return cv.aggregate_real({0: fold}, regions) | {"volumes": checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", help="registry name or package folder")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml",
                        help="config naming the unlabelled volumes, weak labels and contours")
    parser.add_argument("--skip-trained", type=Path, default=None, metavar="MANIFEST",
                        help="training manifest.json whose volumes are left out")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    skip: set[str] = set()
    if args.skip_trained is not None:
        manifest = json.loads(args.skip_trained.read_text(encoding="utf-8"))
        skip = {v["volume_id"] for v in manifest["volumes"]}
    model = load_model(args.model, threads=args.threads)
    real = evaluate(model, args.config, skip)
    data = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": cv.git_commit(),
            "model": model.info, "command": " ".join(["unseen_real.py", *(argv or sys.argv[1:])]),
            "real_volumes": real}
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output / "unseen-real.json",
                      json.dumps(data, indent=1, allow_nan=False, default=str))
    lines = [f"# Model `{model.info.get('name')}` {model.info.get('version', '')} on unlabelled "
             "real CT it did not train on", "", f"- date: {data['date']}",
             f"- git commit: {data['git_commit']}", f"- command: `{data['command']}`"]
    atomic_write_text(args.output / "unseen-real.md",
                      "\n".join(lines + cv._real_markdown(real)) + "\n")
    log.info("wrote %s", args.output / "unseen-real.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
