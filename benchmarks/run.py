"""bodyscore vs bpreg 1.1.0, side by side on the same volumes (run by hand, not in CI).

For each size (default 120 × 5 mm, 300 × 1.5 mm, 800 × 0.8 mm, all 512 × 512 synthetic CTs from
:func:`bodyscore.synth.generate_volume`, written as int16 NIfTI) it runs, each in its own
subprocess so that wall time includes start-up and peak RSS is that process's own
(``os.wait4`` → ``ru_maxrss``):

* **read** — only reading the file with :func:`bodyscore.read_volume`;
* **bpreg** — ``bpreg_predict`` (its venv, see ``benchmarks/bpreg/setup_bpreg_venv.sh``) with a
  bpreg VGG16 model folder;
* **bodyscore** — read + score + post-process + write JSON, with (a) the same bpreg VGG16 folder
  and (b) the default model (``src/bodyscore/models/default``; a random-weight stand-in with the
  default architecture when it is not there yet), each with the fast path
  (:func:`bodyscore.fast.predict_raw_scores_fast`) and with every slice scored;

then a cohort run (many series in one process) for the throughput in series/s/core, and writes
``benchmarks/RESULTS.md`` with machine information and the ratios::

    benchmarks/bpreg/setup_bpreg_venv.sh
    PYTHONPATH=src python benchmarks/run.py            # ~10 min on 2 cores
    PYTHONPATH=src python benchmarks/run.py --sizes 120x5 --skip-bpreg   # quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DEFAULT_MODEL = SRC / "bodyscore" / "models" / "default"
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SIZES = ("120x5", "300x1.5", "800x0.8")
# z start (mm, pelvis_start = 0) of each size: abdomen-chest, pelvis-abdomen, chest-head
Z_START = {"120x5": -50.0, "300x1.5": -60.0, "800x0.8": 250.0}

RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from bodyscore.io import read_volume
from bodyscore.model import load_model
from bodyscore.inference import predict_raw_scores
from bodyscore.fast import predict_raw_scores_fast
from bodyscore.assemble import assemble_result
from bodyscore.export import json_writer
model_arg, mode, out_dir, *inputs = sys.argv[1:]
t_import = time.perf_counter()
model = load_model(model_arg)
t_model = time.perf_counter()
stages = {"import": t_import - t0, "load_model": t_model - t_import, "read": 0.0, "score": 0.0,
          "post_write": 0.0}
for path in inputs:
    a = time.perf_counter()
    volume = read_volume(path)
    b = time.perf_counter()
    score = predict_raw_scores_fast if mode == "fast" else predict_raw_scores
    raw = score(volume, model)
    c = time.perf_counter()
    result = assemble_result(raw_scores=raw, volume=volume, settings=model.settings,
                             model_info=model.info)
    Path(out_dir, Path(path).name.split(".")[0] + ".json").write_text(result.to_json())
    d = time.perf_counter()
    stages["read"] += b - a; stages["score"] += c - b; stages["post_write"] += d - c
print(json.dumps(stages))
"""

READER = r"""
import sys
from bodyscore.io import read_volume
for path in sys.argv[1:]:
    read_volume(path)
"""


@dataclass(frozen=True)
class Measurement:
    """One subprocess run: wall time (s), peak RSS (bytes), exit code, stdout."""

    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stdout: str

    @property
    def rss_gb(self) -> float:
        """Peak RSS in GB (10^9 bytes)."""
        return self.peak_rss_bytes / 1e9


def measure(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> Measurement:
    """Run ``cmd``; wall time and the child's own peak RSS (``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-2000:]
            print(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}", file=sys.stderr)
    return Measurement(wall, int(usage.ru_maxrss) * 1024, proc.returncode, stdout)


def make_volume(size: str, folder: Path) -> Path:
    """Synthetic 512² CT with ``n`` slices of ``dz`` mm (``size`` = "NxDZ"), as int16 NIfTI."""
    from bodyscore.io import write_nifti
    from bodyscore.synth import generate_volume
    from bodyscore.synth.generate import SynthConfig

    n_text, dz_text = size.split("x")
    n, dz = int(n_text), float(dz_text)
    path = folder / f"synth_{n}x{dz_text.replace('.', 'p')}mm.nii.gz"
    if path.is_file():
        return path
    z0 = Z_START.get(size, 0.0)
    config = SynthConfig(slice_spacing_mm=(dz, dz), max_slices=max(n, 2), partial_probability=0.0)
    ct = generate_volume(n, config, shape_xy=(512, 512),
                         z_range_mm=(z0, z0 + (n - 1) * dz + dz / 4))
    write_nifti(ct.volume, path)
    return path


def stand_in_default_model(folder: Path) -> Path:
    """A random-weight package with the default model's architecture (speed stand-in only)."""
    import torch

    from bodyscore.model import save_package
    from bodyscore.model.network import LightRegressionNet
    from bodyscore.settings import InferenceSettings

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    net = LightRegressionNet()
    settings = InferenceSettings.from_file(
        REPO.parent / "shared" / "data" / "bpreg-public-model" / "inference-settings.json")
    save_package(folder, state_dict=net.state_dict(), settings=settings,
                 config={"base_model": "light", "model_name": "default-stand-in",
                         "backbone": {"widths": list(net.widths), "convs_per_stage": 2}},
                 overwrite=True)
    return folder


def vgg_model_folder(folder: Path) -> Path:
    """The bpreg VGG16 model folder of the parity references (seeded weights + fitted fc7)."""
    sys.path.insert(0, str(REPO / "benchmarks" / "bpreg"))
    import make_reference

    if (folder / "model.pt").is_file():
        return folder
    manifest = json.loads((make_reference.REFERENCE_DIR / "manifest.json").read_text())
    return make_reference.write_model_folder(
        folder, seed=int(manifest["seed"]), fc7_weight=manifest["fc7_weight"],
        fc7_bias=float(manifest["fc7_bias"]),
        public_model_dir=REPO.parent / "shared" / "data" / "bpreg-public-model")


def machine_info(venv: Path | None) -> dict[str, Any]:
    """CPU, cores, memory, load, versions, and whether other heavy work was running."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                           if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gb"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1e6, 1)
    except (OSError, StopIteration, ValueError):
        pass
    import importlib.metadata as md

    for package in ("numpy", "scipy", "nibabel", "onnxruntime", "torch"):
        try:
            info[package] = md.version(package)
        except md.PackageNotFoundError:
            info[package] = None
    if venv is not None and (venv / "bin" / "python").is_file():
        out = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m;print(m.version('bpreg'),"
                              "m.version('torch'))"], capture_output=True, text=True,
                             check=False)
        info["bpreg_venv"] = out.stdout.strip()
    busy = subprocess.run(["pgrep", "-f", "run_training_from_file"], capture_output=True,
                          text=True, check=False).stdout.split()
    info["training_process_running"] = bool(busy)
    return info


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b > 0 else "n/a"


def write_results(path: Path, info: dict[str, Any], rows: list[dict[str, Any]],
                  cohort: dict[str, Any] | None, notes: list[str]) -> None:
    """Write RESULTS.md."""
    lines = [
        "# bodyscore vs bpreg 1.1.0 — measured side by side",
        "",
        "Produced by `PYTHONPATH=src python benchmarks/run.py` (do not edit by hand; rerun).",
        "Every number is one run of a separate process: wall time includes interpreter start-up,",
        "imports and model loading; peak RSS is that process's maximum resident set.",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["", "## Per volume (512 × 512 synthetic CT, int16 NIfTI .nii.gz)", "",
              "| volume | read s | bpreg s / GB | bodyscore s / GB | × faster than bpreg | "
              "RSS ratio | end-to-end ÷ read |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        read = row["read"]
        bpreg = row.get("bpreg")
        bpreg_text = f"{bpreg.wall_s:.1f} / {bpreg.rss_gb:.2f}" if bpreg else "not run"
        for label, m in row["bodyscore"].items():
            faster = _ratio(bpreg.wall_s, m.wall_s) if bpreg else "n/a"
            rss = _ratio(bpreg.rss_gb, m.rss_gb) if bpreg else "n/a"
            lines.append(
                f"| {row['size']} | {read.wall_s:.2f} | {bpreg_text} | {label}: "
                f"{m.wall_s:.2f} / {m.rss_gb:.2f} | {faster} | {rss} | "
                f"{m.wall_s / read.wall_s:.2f} |")
    lines += ["", "Stage times inside the bodyscore process (s):", "",
              "| volume | variant | import | load model | read | score | post-process + write |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        for label, m in row["bodyscore"].items():
            try:
                st = json.loads(m.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                continue
            lines.append(f"| {row['size']} | {label} | {st['import']:.2f} | "
                         f"{st['load_model']:.2f} | {st['read']:.2f} | {st['score']:.2f} | "
                         f"{st['post_write']:.2f} |")
    if cohort:
        lines += ["", "## Cohort throughput", "",
                  f"{cohort['series']} series ({cohort['size']}) scored in one process with the "
                  f"{cohort['label']} model (fast path): {cohort['wall_s']:.1f} s wall, "
                  f"peak RSS {cohort['rss_gb']:.2f} GB → **{cohort['per_core']:.2f} series/s/core**"
                  f" ({cohort['cores']} cores)."]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes] + [""]
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="NxDZ, e.g. 300x1.5")
    parser.add_argument("--bpreg-venv", type=Path,
                        default=Path(os.environ.get("BPREG_VENV", "/tmp/bpreg-venv")))
    parser.add_argument("--skip-bpreg", action="store_true")
    parser.add_argument("--vgg-modes", nargs="*", default=["fast", "all"],
                        help="bodyscore runs with the bpreg VGG16 folder (fast, all or none)")
    parser.add_argument("--default-modes", nargs="*", default=["fast", "all"])
    parser.add_argument("--cohort", type=int, default=6, help="series in the cohort run (0: skip)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "bodyscore-bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", action="append", default=[], help="extra note for RESULTS.md")
    args = parser.parse_args(argv)

    work = args.work
    (work / "volumes").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "CUDA_VISIBLE_DEVICES": ""}
    notes: list[str] = []
    vgg = vgg_model_folder(work / "bpreg_vgg_model")
    if DEFAULT_MODEL.is_dir():
        default, default_label = DEFAULT_MODEL, "default"
    else:
        default = stand_in_default_model(work / "default_stand_in")
        default_label = "default-arch stand-in"
        notes.append("src/bodyscore/models/default did not exist yet: the 'default' rows use a "
                     "random-weight package with the default light architecture (same speed, "
                     "meaningless scores).")
    # warm-up (not timed): ONNX export of the VGG folder into the user cache
    from bodyscore.model import load_model

    load_model(str(vgg))
    info = machine_info(None if args.skip_bpreg else args.bpreg_venv)
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        volume = make_volume(size, work / "volumes")
        row: dict[str, Any] = {"size": size, "bodyscore": {}}
        row["read"] = measure([sys.executable, "-c", READER, str(volume)], env=env)
        if not args.skip_bpreg:
            in_dir, out_dir = work / f"bpreg_in_{size}", work / f"bpreg_out_{size}"
            shutil.rmtree(in_dir, ignore_errors=True)
            shutil.rmtree(out_dir, ignore_errors=True)
            in_dir.mkdir()
            out_dir.mkdir()  # bpreg does not create it
            (in_dir / volume.name).symlink_to(volume)
            row["bpreg"] = measure([str(args.bpreg_venv / "bin" / "bpreg_predict"), "-i",
                                    str(in_dir), "-o", str(out_dir), "--model", f"{vgg}/"],
                                   env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        variants = [("bpreg VGG16", vgg, m) for m in args.vgg_modes] + [
            (default_label, default, m) for m in args.default_modes]
        for label, model, mode in variants:
            out_dir = work / f"bodyscore_out_{size}"
            out_dir.mkdir(exist_ok=True)
            row["bodyscore"][f"{label} ({mode})"] = measure(
                [sys.executable, "-c", RUNNER, str(model), mode, str(out_dir), str(volume)],
                env=env)
        rows.append(row)
        print(f"done {size}", file=sys.stderr, flush=True)
    cohort = None
    if args.cohort > 0:
        base = make_volume(args.sizes[0], work / "volumes")
        copies = []
        for i in range(args.cohort):
            copy = work / "volumes" / f"cohort_{i}.nii.gz"
            if not copy.exists():
                copy.symlink_to(base)
            copies.append(str(copy))
        out_dir = work / "cohort_out"
        out_dir.mkdir(exist_ok=True)
        m = measure([sys.executable, "-c", RUNNER, str(default), "fast", str(out_dir), *copies],
                    env=env)
        cores = os.cpu_count() or 1
        cohort = {"series": args.cohort, "size": args.sizes[0], "label": default_label,
                  "wall_s": m.wall_s, "rss_gb": m.rss_gb,
                  "per_core": args.cohort / m.wall_s / cores, "cores": cores}
    info["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    busy = info["training_process_running"] or max(
        info["load_average_1_5_15"][0], info["load_average_after"][0]) > 0.5 * (os.cpu_count() or 1)
    notes.insert(0, "machine NOT idle during the run (other work running: see load averages and "
                 "training_process_running above): times are inflated and ratios unreliable; rerun "
                 "on an idle machine." if busy else "machine idle during the run (load average "
                 "below half the core count before and after, no training process).")
    notes += args.note
    write_results(args.out, info, rows, cohort, notes)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
