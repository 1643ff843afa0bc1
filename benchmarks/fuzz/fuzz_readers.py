"""Coverage-guided fuzzing (atheris / libFuzzer) of the ``bodyscore.io`` readers.

Three targets, each fed mutated bytes written to a file and read with
:func:`bodyscore.io.read_volume`:

* ``nifti``: ``.nii`` (first input byte even) or ``.nii.gz`` (odd) files;
* ``dicom``: one DICOM file (``.dcm``) read as its series;
* ``itk``: ``.nrrd`` (even) or ``.mha`` (odd) files.

A :class:`bodyscore.errors.BodyscoreError` is the expected outcome for bad bytes. Findings,
saved by libFuzzer as ``crash-*`` / ``timeout-*`` / ``oom-*`` under the artifact folder: any
other exception, the readers' safety-net message ("unexpected error while reading"), an input
taking more than ``--per-input-timeout`` seconds or more than ``--rss-mb`` of memory.
The seeds are the cases of ``tests/corpus/make_corpus.py`` and its fuzz regressions.

Usage (from the repository root; ``pip install atheris``)::

    PYTHONPATH=src python benchmarks/fuzz/fuzz_readers.py --seconds 60
    PYTHONPATH=src python benchmarks/fuzz/fuzz_readers.py --target nifti --seconds 30

Without ``--target`` every target runs in its own subprocess for ``--seconds`` each, and
``benchmarks/fuzz/RESULTS.md`` is rewritten with what ran and what was found.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGETS = ("nifti", "dicom", "itk")
SUFFIXES = {"nifti": (".nii", ".nii.gz"), "dicom": (".dcm", ".dcm"), "itk": (".nrrd", ".mha")}


def _seed_files(target: str, corpus_dir: Path) -> list[Path]:
    """Corpus files of one target's format (at most 64 kB each)."""
    sys.path.insert(0, str(ROOT / "tests" / "corpus"))
    from make_corpus import CASES, build_corpus

    built = build_corpus(corpus_dir / "_cases")
    fmt = {"nifti": "nifti", "dicom": "dicom", "itk": "itk"}[target]
    files: list[Path] = []
    for name, path in built.items():
        if CASES[name].fmt != fmt:
            continue
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [p for p in candidates if p.is_file() and not p.is_symlink()][:2]
    return [p for p in files if p.stat().st_size <= 65536]


def _prepare_seeds(target: str, work: Path) -> Path:
    seeds = work / f"seeds_{target}"
    seeds.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(_seed_files(target, work)):
        data = path.read_bytes()
        odd = path.name.endswith((".gz", ".mha"))
        # the first byte selects the suffix: keep the seed's own format
        prefix = bytes([1 if odd else 0])
        (seeds / f"seed_{i:03d}").write_bytes(prefix + data)
    return seeds


def _run_target(target: str, args: argparse.Namespace) -> None:
    """Run atheris on one target in this process (atheris exits the process when done)."""
    import atheris

    logging.disable(logging.WARNING)  # nibabel/pydicom warn on every damaged header
    with atheris.instrument_imports(include=["bodyscore", "nibabel", "pydicom"]):
        from bodyscore.errors import BodyscoreError
        from bodyscore.io import read_volume
        from bodyscore.io._common import UNEXPECTED_MARK

    scratch = Path(tempfile.mkdtemp(prefix=f"fuzz_{target}_", dir=args.scratch))
    suffixes = SUFFIXES[target]

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        suffix = suffixes[data[0] & 1]
        folder = scratch / "case"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        path = folder / f"input{suffix}"
        path.write_bytes(data[1:])
        try:
            read_volume(path)
        except BodyscoreError as exc:
            if UNEXPECTED_MARK in str(exc):  # the readers' safety net caught it: a finding
                raise

    argv = [
        sys.argv[0],
        str(args.seeds),
        f"-max_total_time={args.seconds}",
        f"-timeout={args.per_input_timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-artifact_prefix={args.artifacts}/{target}-",
        "-max_len=65536",
        "-print_final_stats=1",
    ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def _summarise(target: str, log: str, artifacts: Path) -> dict[str, str]:
    def last(pattern: str) -> str:
        found = re.findall(pattern, log)
        return found[-1] if found else "?"

    findings = sorted(p.name for p in artifacts.glob(f"{target}-*"))
    return {
        "target": target,
        "runs": last(r"stat::number_of_executed_units:\s*(\d+)"),
        "coverage": last(r"cov: (\d+)"),
        "features": last(r"ft: (\d+)"),
        "peak_rss_mb": last(r"stat::peak_rss_mb:\s*(\d+)"),
        "findings": ", ".join(findings) if findings else "none",
    }


def _write_results(rows: list[dict[str, str]], seconds: int, logs: dict[str, str]) -> None:
    lines = [
        "# Fuzzing the readers (atheris)",
        "",
        f"Last run: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{seconds} s per target, Python {platform.python_version()}, "
        f"{platform.machine()}; command: "
        f"`PYTHONPATH=src python benchmarks/fuzz/fuzz_readers.py --seconds {seconds}`.",
        "Seeds: the cases of `tests/corpus/make_corpus.py`; instrumented: bodyscore, nibabel, "
        "pydicom (SimpleITK is native code and only black-box fuzzed).",
        "",
        "| target | inputs run | coverage (edges) | features | peak RSS (MB) | findings |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['target']} | {row['runs']} | {row['coverage']} | {row['features']} | "
            f"{row['peak_rss_mb']} | {row['findings']} |"
        )
    regressions = sorted((ROOT / "tests" / "corpus" / "regressions").glob("*-*"))
    lines += [
        "",
        "## Findings of all runs so far (each fixed; regression case in the corpus)",
        "",
        "Every input libFuzzer ever saved is kept in `tests/corpus/regressions/` and read as a "
        "`fuzz_*` case by `tests/corpus/test_corpus.py` (the exact expected error is in "
        "`tests/corpus/make_corpus.py`, `FUZZ_CASES`, with what it used to raise):",
        "",
        *(f"- `{p.name}`" for p in regressions),
        "",
        "## Crash details of this run (last lines of each target's log)",
        "",
    ]
    for target, log in logs.items():
        crash = [ln for ln in log.splitlines() if "Error" in ln or "==" in ln][-8:]
        lines += [f"### {target}", "", "```", *(crash or ["(no crash)"]), "```", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; fuzz one target in-process, or all targets in subprocesses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS)
    parser.add_argument("--seconds", type=int, default=60, help="time per target")
    parser.add_argument("--per-input-timeout", type=int, default=10)
    parser.add_argument("--rss-mb", type=int, default=1536)
    parser.add_argument("--seeds", type=Path)
    parser.add_argument(
        "--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "bodyscore-fuzz"
    )
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args(argv)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    if args.target is not None:
        if args.seeds is None:
            args.seeds = _prepare_seeds(args.target, Path(tempfile.mkdtemp(prefix="fuzz_seeds_")))
        _run_target(args.target, args)
        return 0
    rows, logs = [], {}
    work = Path(tempfile.mkdtemp(prefix="fuzz_work_"))
    for target in TARGETS:
        seeds = _prepare_seeds(target, work / target)
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--target", target,
            "--seconds", str(args.seconds), "--seeds", str(seeds),
            "--artifacts", str(args.artifacts), "--rss-mb", str(args.rss_mb),
            "--per-input-timeout", str(args.per_input_timeout),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.seconds * 3 + 300,
            check=False,
        )
        log = proc.stdout + proc.stderr
        (args.artifacts / f"{target}.log").write_text(log[-200_000:], encoding="utf-8")
        logs[target] = log
        rows.append(_summarise(target, log, args.artifacts))
    shutil.rmtree(work, ignore_errors=True)
    _write_results(rows, args.seconds, logs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
