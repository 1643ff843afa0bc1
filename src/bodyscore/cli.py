"""Command-line interface: ``bodyscore predict | crop | models | prepare-data | train | calibrate``.

This is the only module that prints or decides exit codes. Every sub-command is a function
``_cmd_<name>(args) -> int``; :func:`main` turns bodyscore errors into one-line messages on stderr
and a non-zero exit code, never a traceback.

Exit codes: 0 success; 1 some inputs failed (the others were still written); 2 usage error.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bodyscore import __version__
from bodyscore.errors import BodyscoreError, MultipleSeriesError, OutputError

if TYPE_CHECKING:
    from bodyscore.model.backends import ScoreModel
    from bodyscore.result import ScoreResult
    from bodyscore.volume import Volume

__all__ = ["console_main", "main"]

log = logging.getLogger("bodyscore")

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _eprint(message: str) -> None:
    print(message, file=sys.stderr)


def input_stem(path: str | os.PathLike[str]) -> str:
    """Output name stem of an input: ``ct.nii.gz`` → ``ct``; a DICOM folder → its name."""
    name = Path(path).name or Path(path).resolve().name
    for suffix in (*_NIFTI_SUFFIXES, *_ITK_SUFFIXES, ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Expand glob patterns (``'data/*.nii.gz'``); a pattern matching nothing is kept as is
    so that the reader reports it as missing."""
    expanded: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))  # noqa: PTH207 - shell-style pattern, may be absolute
            expanded.extend(matches if matches else [pattern])
        else:
            expanded.append(pattern)
    # keep order, drop duplicates
    return list(dict.fromkeys(expanded))


@dataclass(frozen=True)
class _Job:
    """One thing to score: an input path and optionally a DICOM series."""

    path: str
    series_uid: str | None
    stem: str


def _progress_bar(
    enabled: bool, label: str
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm progress callback ``(done, total)`` on stderr, and its closer."""
    if not enabled:
        return (lambda done, total: None), (lambda: None)
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="slice", leave=False, file=sys.stderr)
        bar["bar"].n = done
        bar["bar"].refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def _load_model(args: argparse.Namespace) -> ScoreModel:
    from bodyscore.model import load_model

    return load_model(args.model, backend=args.backend)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s: %(message)s")


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------
def _plan_jobs(inputs: Sequence[str], series: str | None) -> Iterator[_Job | BodyscoreError]:
    """Turn inputs into jobs; with ``--series all`` every CT series of a folder is one job."""
    for path in inputs:
        stem = input_stem(path)
        if series != "all" or not Path(path).is_dir():
            yield _Job(path, None if series == "all" else series, stem)
            continue
        from bodyscore.io import list_dicom_series

        try:
            found = [s for s in list_dicom_series(path) if s.modality == "CT"]
        except BodyscoreError as exc:
            yield exc
            continue
        for info in found:
            suffix = f"_{info.uid}" if len(found) > 1 else ""
            yield _Job(path, info.uid, f"{stem}{suffix}")


def _unique_stems(jobs: list[_Job]) -> list[_Job]:
    """Make output stems unique (``a.nii.gz`` in two folders → ``a`` and ``a_2``)."""
    seen: dict[str, int] = {}
    out = []
    for job in jobs:
        count = seen.get(job.stem, 0) + 1
        seen[job.stem] = count
        stem = job.stem if count == 1 else f"{job.stem}_{count}"
        out.append(_Job(job.path, job.series_uid, stem))
    return out


def _score_one(
    path: str, series_uid: str | None, model: ScoreModel, args: argparse.Namespace,
    *, keep_volume: bool = False,
) -> tuple[ScoreResult, Volume | None]:
    """Read one input and score it, with a progress bar on a terminal.

    The volume is read whole only with ``keep_volume`` (for the PNG); otherwise a NIfTI file
    is scored while it is read (:func:`bodyscore.inference.predict`) and ``None`` is returned.
    """
    from bodyscore.inference import predict
    from bodyscore.io import read_volume
    from bodyscore.io.nifti import import_nibabel_without_pydicom

    if path.lower().endswith(_NIFTI_SUFFIXES):
        import_nibabel_without_pydicom()  # 0.2 s less start-up; this process is ours
    volume = read_volume(path, series_uid=series_uid) if keep_volume else None
    update, close = _progress_bar(args.progress, input_stem(path))
    try:
        result = predict(
            path if volume is None else volume,
            model,
            series_uid=series_uid,
            batch_size=args.batch_size,
            progress=update,
            fast=args.fast,
        )
    finally:
        close()
    return result, volume


def _write_outputs(
    result: ScoreResult, volume: Volume | None, job: _Job, args: argparse.Namespace
) -> None:
    from bodyscore.export.json_writer import write_json

    if args.output == "-":
        print(result.to_json(indent=2))
        return
    out_dir = Path(args.output)
    if args.csv:
        from bodyscore.export.tables import write_csv

        write_csv(result, out_dir / f"{job.stem}.csv")
    if args.png and volume is not None:
        from bodyscore.export.plots import write_png

        write_png(result, out_dir / f"{job.stem}.png", volume)
    # the JSON last: --skip-existing treats it as "this input is complete"
    write_json(result, out_dir / f"{job.stem}.json")


def _check_output_dir(out: str, inputs: Sequence[str]) -> None:
    if out == "-":
        return
    out_path = Path(out).resolve()
    if out_path.exists() and not out_path.is_dir():
        raise OutputError(f"{out}: output must be a folder (or '-' for stdout)")
    for item in inputs:
        if Path(item).exists() and Path(item).resolve() == out_path and not Path(item).is_dir():
            raise OutputError(f"{out}: output would overwrite the input {item}")


def _cmd_predict(args: argparse.Namespace) -> int:
    inputs = expand_inputs(args.inputs)
    _check_output_dir(args.output, inputs)
    planned = list(_plan_jobs(inputs, args.series))
    failures = [str(p) for p in planned if isinstance(p, BodyscoreError)]
    jobs = _unique_stems([p for p in planned if isinstance(p, _Job)])
    if args.output == "-" and len(jobs) != 1:
        raise OutputError("-o -: printing to stdout needs exactly one input")
    model = _load_model(args)
    done = 0
    for job in jobs:
        if (
            args.skip_existing
            and args.output != "-"
            and (Path(args.output) / f"{job.stem}.json").exists()
        ):
            log.info("%s: result exists, skipped", job.path)
            continue
        try:
            result, volume = _score_one(job.path, job.series_uid, model, args,
                                        keep_volume=args.png)
            _write_outputs(result, volume, job, args)
        except MultipleSeriesError as exc:
            listing = "; ".join(f"{uid} ({desc})" for uid, desc in exc.series)
            failures.append(f"{exc} [series: {listing}]")
            continue
        except BodyscoreError as exc:
            failures.append(str(exc))
            continue
        done += 1
        for warning in result.warnings:
            _eprint(f"warning: {job.path}: {warning}")
        if args.output != "-":
            _eprint(
                f"{job.path}: {result.body_part_examined_tag}"
                f"{'  [reversed z-order]' if result.reverse_z_ordering else ''}"
                f"{'  [invalid z-spacing]' if result.valid_z_spacing is False else ''}"
            )
    for failure in failures:
        _eprint(f"error: {failure}")
    if failures:
        _eprint(f"{len(failures)} of {len(failures) + done} inputs failed")
        return EXIT_FAILURES
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# crop
# --------------------------------------------------------------------------------------------
def _crop_bounds(args: argparse.Namespace, model: ScoreModel) -> Any:
    from bodyscore.usecases.known_region import resolve_bounds

    if args.from_results is not None:
        from bodyscore.result import ScoreResult
        from bodyscore.usecases import crop

        files = sorted(Path(args.from_results).glob("*.json"))
        results = [ScoreResult.from_json(f) for f in files]
        return crop.bounds_from_results(results, q_min=args.q_min, q_max=args.q_max)
    return resolve_bounds(
        lookup_table=model.settings.lookup_table,
        model_info=model.info,
        region=args.region,
        landmarks=args.landmarks,
        scores=None if args.scores is None else (args.scores[0], args.scores[1]),
        known_region=args.known_region,
    )


def _labels_destination(args: argparse.Namespace) -> Path:
    """Where the label map goes: ``--labels-out``, or with ``--mask-outside`` ``-o``, or beside
    ``-o`` as ``<labels stem>_cropped<suffix>`` (a DICOM SEG becomes ``.nii.gz``)."""
    if args.mask_outside:
        if args.labels_out is not None:
            raise OutputError("--labels-out: with --mask-outside the masked labels go to -o")
        return Path(args.output)
    if args.labels_out is not None:
        return Path(args.labels_out)
    labels = Path(args.labels)
    suffix = next((s for s in (*_NIFTI_SUFFIXES, *_ITK_SUFFIXES) if
                   labels.name.lower().endswith(s)), ".nii.gz")
    return Path(args.output).parent / f"{input_stem(labels)}_cropped{suffix}"


def _cmd_crop(args: argparse.Namespace) -> int:
    from bodyscore.io import write_cropped
    from bodyscore.usecases import crop

    if (args.labels_out is not None or args.mask_outside) and args.labels is None:
        raise OutputError("--labels-out/--mask-outside: give the label map with --labels")
    model = _load_model(args)
    bounds = _crop_bounds(args, model)
    result, _ = _score_one(args.input, args.series, model, args)
    selected = crop.slices_in_bounds(result, bounds)
    if selected is None:
        _eprint(
            f"error: {args.input}: no slice scores between {bounds.score_min:.1f} and "
            f"{bounds.score_max:.1f}; nothing written"
        )
        return EXIT_FAILURES
    kept = (
        f"slices {selected.start}..{selected.stop - 1} of {result.n_slices} "
        f"(scores {bounds.score_min:.1f}..{bounds.score_max:.1f})"
    )
    if args.labels is not None:
        from bodyscore.io.label_maps import write_label_slices

        labels_out = write_label_slices(
            args.labels,
            _labels_destination(args),
            ct=args.input,
            start=selected.start,
            stop=selected.stop,
            mask_outside=args.mask_outside,
            series_uid=args.series,
        )
        what = "labels outside" if args.mask_outside else "labels on"
        _eprint(f"{args.labels}: {what} {kept} -> {labels_out}")
        if args.mask_outside:
            return EXIT_OK
    out = write_cropped(
        args.input, args.output, start=selected.start, stop=selected.stop, series_uid=args.series
    )
    _eprint(f"{args.input}: kept {kept} -> {out}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
def _cmd_models(args: argparse.Namespace) -> int:
    from bodyscore.model import registry

    if args.models_command == "list":
        for entry in registry.list_models():
            state = "installed" if entry.is_available() else "not downloaded"
            print(f"{entry.name:<16} {state:<15} {entry.licence:<14} {entry.description}")
        return EXIT_OK
    model = _load_model(args)
    for key, value in model.info.items():
        print(f"{key}: {value}")
    settings = model.settings
    print(
        f"transform: raw {settings.transform_min:.4g} -> 0, raw {settings.transform_max:.4g} -> 100"
    )
    print(f"expected slope: {settings.slope_mean:.5g} score/mm")
    print(f"landmarks in look-up table: {len(settings.lookup_table)}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# training flow
# --------------------------------------------------------------------------------------------
def _cmd_prepare_data(args: argparse.Namespace) -> int:
    from bodyscore.train.data import prepare_data

    manifest = prepare_data(
        expand_inputs(args.sources), args.output, seed=args.seed, val_fraction=args.val_fraction
    )
    _eprint(f"prepared {len(manifest.volumes)} volumes in {args.output}")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from bodyscore.train.trainer import run_training_from_file

    result = run_training_from_file(args.config, out_dir=args.output, resume=not args.restart)
    _eprint(f"training finished: {result}")
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from bodyscore.train.calibrate import calibrate_package

    path = calibrate_package(
        args.model, landmarks=args.landmarks, data_dir=args.data, published=args.published
    )
    _eprint(f"wrote {path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="model name (see 'bodyscore models list') or path to a model folder "
        "(bodyscore or bpreg layout); default: the model shipped with bodyscore",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="inference backend (default: ONNX Runtime when possible)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="slices per batch (default 16)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="skip all-air slices and interpolate slices closer than 1.5 mm (within 0.5 score "
        "units); faster with heavy models such as bpreg's VGG16, not with the default model",
    )


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="score every slice of CT volumes",
        description="Score every axial slice; write OUTDIR/<input-stem>.json per input.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="NIfTI/NRRD/MHA file, DICOM folder, or a glob such as 'data/*.nii.gz'",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="output folder, or '-' to print the JSON of a single input",
    )
    p.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID to score in a DICOM folder with several series, "
        "or 'all' to score each",
    )
    p.add_argument("--csv", action="store_true", help="also write a per-slice CSV")
    p.add_argument(
        "--png",
        action="store_true",
        help="also write a PNG (score curve + coronal view coloured by region)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not score inputs whose JSON already exists (resume a batch)",
    )
    _add_model_options(p)
    p.set_defaults(func=_cmd_predict)


def _add_crop(sub: Any) -> None:
    p = sub.add_parser(
        "crop",
        help="crop a CT volume (and its label map) to a known body region (thesis sec. 4.3.2)",
        description="Write the slices whose cleaned score lies in a known region, in the "
        "input's own format and orientation; with --labels its label map on the same slices.",
    )
    p.add_argument("input", metavar="INPUT")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output file (same format as the input) or folder for DICOM",
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--region",
        choices=("legs", "pelvis", "abdomen", "chest", "shoulder-neck", "head"),
        help="a body region of thesis table 4.6",
    )
    how.add_argument(
        "--landmarks",
        nargs=2,
        metavar=("FROM", "TO"),
        help="two landmarks of the look-up table, e.g. L5 Th8",
    )
    how.add_argument(
        "--scores", nargs=2, type=float, metavar=("MIN", "MAX"), help="score bounds, e.g. 20 60"
    )
    how.add_argument(
        "--from-results",
        metavar="DIR",
        help="data-driven bounds from the result JSON files of an algorithm's "
        "training data (quantiles --q-min/--q-max)",
    )
    how.add_argument(
        "--known-region",
        metavar="FILE",
        help="score bounds of a known-region.json ('bodyscore known-region fit')",
    )
    p.add_argument("--q-min", type=float, default=0.05)
    p.add_argument("--q-max", type=float, default=0.95)
    p.add_argument("--series", metavar="UID", help="series to crop in a DICOM folder")
    p.add_argument(
        "--labels",
        metavar="SEG",
        help="a label map on the CT grid (NIfTI, NRRD/MHA, DICOM SEG) cropped on the same slices",
    )
    p.add_argument(
        "--labels-out",
        metavar="SEG_OUT",
        help="cropped label map (default: beside OUTPUT, <SEG stem>_cropped<suffix>)",
    )
    p.add_argument(
        "--mask-outside",
        action="store_true",
        help="do not crop: write the label map to OUTPUT with its grid kept and every label "
        "outside the region set to 0 (post-processing of a network's output)",
    )
    _add_model_options(p)
    p.set_defaults(func=_cmd_crop)


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list known models or describe one")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="list known models")
    info = msub.add_parser("info", help="describe a model")
    info.add_argument("model", nargs="?", default="default")
    info.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.set_defaults(func=_cmd_models)


def _add_training(sub: Any) -> None:
    p = sub.add_parser("prepare-data", help="build the preprocessed training cache")
    p.add_argument("sources", nargs="+", metavar="SRC")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.set_defaults(func=_cmd_prepare_data)

    p = sub.add_parser("train", help="train a model from a YAML/JSON config (needs [train])")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("-o", "--output", metavar="DIR", help="run folder (default: from the config)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("calibrate", help="compute inference settings from landmark annotations")
    p.add_argument("model", metavar="MODEL", help="model folder to calibrate")
    p.add_argument("--landmarks", required=True, nargs="+", metavar="FILE")
    p.add_argument(
        "--data",
        nargs="*",
        metavar="DIR",
        default=None,
        help="folders holding the annotated volumes (default: beside each FILE)",
    )
    p.add_argument(
        "--published",
        metavar="SETTINGS",
        help="a published inference-settings.json: calibrate piecewise-linearly to its score "
        "scale (e.g. bpreg's public model)",
    )
    p.set_defaults(func=_cmd_calibrate)


#: Further sub-commands, one module each under ``bodyscore/cli_commands/``. Each module defines
#: ``register(subparsers) -> None`` (adds its parser and sets ``func``) and must import nothing
#: heavy at module level; its handlers may print (they are part of the CLI layer).
_COMMAND_MODULES: tuple[str, ...] = (
    "evaluate", "idc", "cohort", "report", "dicomweb", "known_region", "dataset"
)


def _register_command_modules(sub: Any) -> None:
    import importlib

    for name in _COMMAND_MODULES:
        module_name = f"bodyscore.cli_commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)


#: Commands defined in this module; running one of them needs no other command module.
_BUILT_IN_COMMANDS = frozenset({"predict", "crop", "models", "prepare-data", "train", "calibrate"})


def build_parser(*, command_modules: bool = True) -> argparse.ArgumentParser:
    """The argument parser (importing nothing heavy).

    ``command_modules=False`` leaves out the commands of ``bodyscore/cli_commands/`` (a
    ``bodyscore predict`` run does not import them: issue 18, start-up time).
    """
    parser = argparse.ArgumentParser(
        prog="bodyscore",
        description="Body part regression for CT: a 0-100 anatomical score for every axial "
        "slice (0 = pelvis start, 100 = end of the eyes), the examined body part, known-region "
        "cropping and z-order / z-spacing checks.",
    )
    parser.add_argument("--version", action="version", version=f"bodyscore {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_predict(sub)
    _add_crop(sub)
    _add_models(sub)
    _add_training(sub)
    if command_modules:
        _register_command_modules(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(command_modules=command not in _BUILT_IN_COMMANDS)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse exits on --help/--version/usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose)
    args.progress = not args.quiet and sys.stderr.isatty()
    try:
        return int(args.func(args))
    except BodyscoreError as exc:
        _eprint(f"error: {exc}")
        return EXIT_FAILURES
    except KeyboardInterrupt:
        _eprint("interrupted")
        return 130


def console_main() -> None:
    """Entry point of the ``bodyscore`` console script."""
    sys.exit(main())
