"""``bodyscore dicom``: score a DICOM series (folder or DICOMweb) and write JSON, SEG and SR.

::

    bodyscore dicom DICOM_FOLDER -o OUT --seg --sr
    bodyscore dicom --read-sr OUT/SERIES_sr.dcm -o AUDIT     # SR back to the result JSON
    bodyscore dicom "dicomweb://pacs:8042/dicom-web?series=1.2.3" -o OUT --seg --sr \\
        --auth-user me --password-file ~/.pacs-password --stow dicomweb://pacs:8042/dicom-web

Everything is computed in memory first and written afterwards (each file atomically; on a
failure the files of this run are removed), so a server error, a wrong UID or a half-uploaded
series leaves nothing half-written. Exit codes as ``bodyscore predict``: 0 ok, 1 failure.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _eprint(message: str) -> None:
    print(message, file=sys.stderr)


def _options(args: argparse.Namespace) -> Any:
    from bodyscore.io.dicomweb import DicomwebAuth, DicomwebOptions

    given = (args.auth_user, args.password_file, args.password_env, args.token_file,
             args.token_env)
    if any(v is not None for v in given):
        auth = DicomwebAuth.from_sources(
            username=args.auth_user,
            password_file=args.password_file,
            password_env=args.password_env,
            token_file=args.token_file,
            token_env=args.token_env,
        )
    else:
        auth = DicomwebAuth.from_environment()
    return DicomwebOptions(timeout_s=args.timeout, retries=args.retries, auth=auth)


def _is_remote(text: str) -> bool:
    return text.lower().startswith(("dicomweb://", "dicomwebs://", "http://", "https://"))


def _cmd_read_sr(args: argparse.Namespace) -> int:
    from bodyscore.cli import input_stem
    from bodyscore.export.sr import read_measurement_report

    result = read_measurement_report(args.input)
    stem = input_stem(args.input)
    for path in _write_all(Path(args.output), {f"{stem}.json": result.to_json(indent=2) + "\n"}):
        _eprint(f"wrote {path}")
    _eprint(f"{args.input}: {result.body_part_examined_tag}")
    return 0


def _cmd_dicom(args: argparse.Namespace) -> int:
    if args.read_sr:
        return _cmd_read_sr(args)
    return _score_dicom(args)


def _score_dicom(args: argparse.Namespace) -> int:
    from bodyscore.cli import input_stem
    from bodyscore.inference import predict
    from bodyscore.io import read_volume
    from bodyscore.io.dicomweb import (
        fetch_series,
        parse_dicomweb_url,
        with_dicomweb_source,
    )
    from bodyscore.model import load_model

    options = _options(args)
    model = load_model(args.model, backend=args.backend)
    with tempfile.TemporaryDirectory(prefix="bodyscore-dicomweb-") as tmp:
        if _is_remote(args.input):
            target = parse_dicomweb_url(args.input, series_uid=args.series)
            fetched = fetch_series(target, tmp, options=options)
            volume = read_volume(fetched.folder, series_uid=fetched.series.series_uid)
            files = list(volume.meta.get("files", ()))
            volume = with_dicomweb_source(volume, fetched.series)
            stem = str(fetched.series.series_uid)
        else:
            volume = read_volume(args.input, series_uid=args.series)
            files = list(volume.meta.get("files", ()))
            stem = input_stem(args.input)
        result = predict(volume, model, batch_size=args.batch_size)
        objects: dict[str, Any] = {}
        if args.seg or args.sr:
            from bodyscore.io.dicom_source import read_source_series

            source = read_source_series(
                files, volume.meta.get("sop_instance_uids", ()),
                volume.meta.get("frame_numbers", ()),
            )
            result = result.replace(warnings=(*result.warnings, *source.notes))
            if args.seg:
                from bodyscore.export.seg import build_region_segmentation

                objects[f"{stem}_seg.dcm"] = build_region_segmentation(result, source)
            if args.sr:
                from bodyscore.export.sr import build_measurement_report

                objects[f"{stem}_sr.dcm"] = build_measurement_report(result, source)
        outputs: dict[str, Any] = {f"{stem}.json": result.to_json(indent=2) + "\n", **objects}
    written = _write_all(Path(args.output), outputs)
    for path in written:
        _eprint(f"wrote {path}")
    if args.stow:
        from bodyscore.io.dicomweb import store_instances

        datasets = [v for v in outputs.values() if not isinstance(v, str)]
        if not datasets:
            _eprint("error: --stow needs --seg and/or --sr; nothing to store")
            return 1
        store_instances(args.stow, datasets, options=options)
        _eprint(f"stored {len(datasets)} instance(s) on {parse_dicomweb_url(args.stow).base_url}")
    _eprint(f"{volume.source}: {result.body_part_examined_tag}")
    return 0


def _write_all(folder: Path, outputs: dict[str, Any]) -> list[Path]:
    """Write every output; on any failure remove the ones already written and re-raise."""
    from bodyscore.export.atomic import atomic_write_text
    from bodyscore.export.seg import write_dataset

    written: list[Path] = []
    try:
        for name, content in outputs.items():
            target = folder / name
            if isinstance(content, str):
                written.append(atomic_write_text(target, content))
            else:
                written.append(write_dataset(content, target))
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return written


def register(subparsers: Any) -> None:
    """Add the ``dicom`` sub-command."""
    p = subparsers.add_parser(
        "dicom",
        help="score a DICOM series (folder or dicomweb://) and write JSON, DICOM SEG and SR",
        description="Score one CT series from a DICOM folder or a DICOMweb server "
        "(dicomweb://HOST:PORT/PATH?study=UID&series=UID, dicomwebs:// for HTTPS); write "
        "OUTDIR/<stem>.json and optionally a DICOM SEG of the body regions and a TID 1500 SR; "
        "optionally store them on a server (STOW-RS). Credentials come from files or "
        "environment variables only (BODYSCORE_DICOMWEB_TOKEN[_FILE], "
        "BODYSCORE_DICOMWEB_USER + BODYSCORE_DICOMWEB_PASSWORD[_FILE]).",
    )
    p.add_argument("input", metavar="INPUT",
                   help="DICOM folder or dicomweb[s]:// series URL (with --read-sr: an SR file)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID (if not in the URL)")
    p.add_argument("--seg", action="store_true", help="write a DICOM SEG of the body regions")
    p.add_argument("--sr", action="store_true", help="write a TID 1500 structured report")
    p.add_argument("--read-sr", action="store_true",
                   help="read INPUT, a bodyscore SR, back into OUTDIR/<stem>.json (no scoring)")
    p.add_argument("--stow", metavar="URL", help="store SEG/SR on this DICOMweb root (STOW-RS)")
    auth = p.add_argument_group("DICOMweb authentication (secrets never on the command line)")
    auth.add_argument("--auth-user", metavar="USER", help="user for HTTP basic authentication")
    pw = auth.add_mutually_exclusive_group()
    pw.add_argument("--password-file", metavar="FILE", help="file holding the password")
    pw.add_argument("--password-env", metavar="VAR", help="environment variable with the password")
    tok = auth.add_mutually_exclusive_group()
    tok.add_argument("--token-file", metavar="FILE", help="file holding a bearer token")
    tok.add_argument("--token-env", metavar="VAR", help="environment variable with a bearer token")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument("--retries", type=int, default=2, help="retries per request (default 2)")
    p.add_argument("--model", default="default", help="model name or package folder")
    p.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto")
    p.add_argument("--batch-size", type=int, default=64, help="slices per batch (default 64)")
    p.set_defaults(func=_cmd_dicom)
