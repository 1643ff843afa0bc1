"""Bundle a trained model package into bodyscore (``src/bodyscore/models/<name>``).

    python benchmarks/accuracy/bundle_model.py --run runs/default --config configs/default.yaml \
        --name default

Copies the run's package (``<run>/model``: config.json, model.pt, model.onnx,
inference-settings.json) and its training log, writes the resolved training config as
``training-config.yaml`` (every path and default spelled out, so the package says exactly how
it was made, whatever later edits to ``configs/``), and the run's data manifest with the splits
the run used to ``benchmarks/accuracy/<name>/manifest.json`` (the model card's data and credit
tables read it). The model card is written afterwards by ``write_model_card.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from bodyscore.errors import BodyscoreError  # noqa: E402
from bodyscore.train.config import load_train_config  # noqa: E402
from bodyscore.train.data import Manifest, _with_splits, load_manifest  # noqa: E402

PACKAGE_FILES = ("config.json", "model.pt", "model.onnx", "inference-settings.json")


def bundle(run: Path, config_path: Path, name: str, *, cache: Path | None = None) -> Path:
    """Copy the package of ``run`` into ``src/bodyscore/models/<name>``; returns that folder."""
    import yaml

    config = load_train_config(config_path)
    package = run / "model"
    missing = [f for f in PACKAGE_FILES if not (package / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{package}: no {', '.join(missing)}; has the run finished?")
    target = ROOT / "src" / "bodyscore" / "models" / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for file in PACKAGE_FILES:
        shutil.copyfile(package / file, target / file)
    shutil.copyfile(run / "train_log.csv", target / "training-log.csv")
    header = (f"# The resolved training config of model {name!r}, from {config_path.as_posix()} "
              "(bundle_model.py).\n# Retrain: bodyscore train "
              f"{config_path.as_posix()} -o runs/{name}\n")
    (target / "training-config.yaml").write_text(
        header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True),
        encoding="utf-8")
    cache = cache or (Path(config.cache_dir) if config.cache_dir else run / "cache")
    cached = load_manifest(cache)
    manifest = Manifest(
        volumes=_with_splits(cached.volumes, seed=config.seed, val_fraction=config.val_fraction,
                             train_only=config.train_only, holdout=config.holdout),
        seed=config.seed, val_fraction=config.val_fraction, preprocessing=cached.preprocessing)
    out = ROOT / "benchmarks" / "accuracy" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=1) + "\n",
                                       encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the training run's folder")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None,
                        help="the run's data cache when not <run>/cache")
    parser.add_argument("--name", required=True, help="registry name (folder in models/)")
    args = parser.parse_args(argv)
    try:
        target = bundle(args.run, args.config, args.name, cache=args.cache)
    except (BodyscoreError, OSError) as exc:
        sys.stderr.write(f"bundle_model: {exc}\n")
        return 2
    sys.stdout.write(f"bundled {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
