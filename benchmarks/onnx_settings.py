"""ONNX Runtime settings for the bundled model, chosen by measurement (run by hand, not in CI).

Times ``InferenceSession.run`` on preprocessed slices of the shared CTs for each graph
optimisation level, intra-op thread count and spinning setting (median of ``--repeats`` runs
of every batch), and checks int8 dynamic quantisation (``onnxruntime.quantization``) against
the float model: the largest difference of the cleaned scores (0–100 scale) over the shared
volumes, and its speed. Writes ``benchmarks/ONNX_SETTINGS.md``::

    PYTHONPATH=src python benchmarks/onnx_settings.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CT = REPO.parent / "shared" / "data" / "ct"
OUT = REPO / "benchmarks" / "ONNX_SETTINGS.md"
VOLUMES = ("lidc0314_chest", "vhf_knee_leg", "ts_abdomen_pelvis", "vhm_head", "cptac_pda_chest")


def _session(path: Path, *, level: str, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _batches(model: Any, batch: int) -> list[np.ndarray]:
    from bodyscore.io import read_volume
    from bodyscore.preprocess import iter_preprocessed_batches

    volume = read_volume(SHARED_CT / "lidc0314_chest.nii.gz")
    return [b for _, b in iter_preprocessed_batches(volume, batch_size=batch,
                                                    config=model.package.preprocessing)][:4]


def _time(session: Any, batches: list[np.ndarray], repeats: int) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: batches[0]})  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            session.run(None, {name: b})
        times.append((time.perf_counter() - start) / sum(len(b) for b in batches))
    return statistics.median(times) * 1000.0


def _quantised_difference(model: Any, quantised: Path) -> float:
    from bodyscore.inference import predict
    from bodyscore.model.backends import OnnxBackend, ScoreModel

    q_model = ScoreModel(model.package, OnnxBackend(quantised))
    worst = 0.0
    for name in VOLUMES:
        path = SHARED_CT / f"{name}.nii.gz"
        a = np.asarray(predict(path, model).cleaned, dtype=float)
        b = np.asarray(predict(path, q_model).cleaned, dtype=float)
        both = np.isfinite(a) & np.isfinite(b)
        worst = max(worst, float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0)
    return worst


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bodyscore.model import load_model

    model = load_model(args.model)
    onnx_path = model.package.onnx_path
    assert onnx_path is not None, "the model package has no model.onnx"
    batches = _batches(model, args.batch)
    load_before = os.getloadavg()
    rows = []
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        for threads in (1, 2):
            for spinning in (True, False):
                ms = _time(_session(onnx_path, level=level, threads=threads, spinning=spinning),
                           batches, args.repeats)
                rows.append((level, threads, spinning, ms))
                print(level, threads, spinning, f"{ms:.2f} ms/slice", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        quantised = Path(tmp) / "model-int8.onnx"
        quantize_dynamic(str(onnx_path), str(quantised), weight_type=QuantType.QInt8)
        q_ms = _time(_session(quantised, level="ORT_ENABLE_ALL", threads=2, spinning=False),
                     batches, args.repeats)
        q_diff = _quantised_difference(model, quantised)
    load_after = os.getloadavg()
    lines = [
        "# ONNX Runtime settings for the bundled model — measured",
        "",
        "Produced by `PYTHONPATH=src python benchmarks/onnx_settings.py` (rerun; do not edit).",
        f"Model `{model.package.name}` ({model.package.preprocessing.size}² input), batches of "
        f"{args.batch} preprocessed slices of lidc0314_chest; median of {args.repeats} runs.",
        f"Load average (1, 5, 15 min) before: {[round(v, 2) for v in load_before]}, after: "
        f"{[round(v, 2) for v in load_after]} on {os.cpu_count()} cores"
        + (" — **machine loaded: times are only indicative; rerun on an idle machine.**"
           if max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1) else "."),
        "",
        "| graph optimisation | intra-op threads | spinning | ms / slice |",
        "|---|---|---|---|",
        *[f"| {lv} | {th} | {'on' if sp else 'off'} | {ms:.2f} |" for lv, th, sp, ms in rows],
        "",
        f"int8 dynamic quantisation (QInt8 weights, ORT_ENABLE_ALL, 2 threads): {q_ms:.2f} "
        f"ms / slice; largest cleaned-score difference from the float model over "
        f"{', '.join(VOLUMES)}: **{q_diff:.3f}** score units (limit 0.3).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
