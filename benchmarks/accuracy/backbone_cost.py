"""What each backbone costs on this CPU: parameters, size, training step time, inference speed.

The backbone ablation of issue 11 (light network vs the thesis' VGG16, at 128² and 64² input)
needs the cost side next to the accuracy side (``cross_validate.py``). Run by hand::

    python benchmarks/accuracy/backbone_cost.py --threads 1 -o benchmarks/accuracy/ablations

Writes ``backbone_cost.json`` and ``backbone_cost.md``. Timings are medians of repeated
steps after a warm-up, with ``torch.set_num_threads(--threads)``; the training step is the
default recipe's batch (B = 8 volumes × m = 4 slices) with Adam, the inference figure scores
batches of 64 slices with the torch network in eval mode (no ONNX), so both backbones are
measured the same way.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

#: (name, network config, input size in pixels)
BACKBONES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("light (default)", {"base_model": "light",
                         "backbone": {"widths": [16, 32, 64, 128, 128], "convs_per_stage": 2,
                                      "batch_norm": True}}, 128),
    ("light, 64² input", {"base_model": "light",
                          "backbone": {"widths": [16, 32, 64, 128, 128], "convs_per_stage": 2,
                                       "batch_norm": True}}, 64),
    ("VGG16 (thesis, bpreg)", {"base_model": "vgg"}, 128),
)


def _median_seconds(step: Any, *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config: dict[str, Any], size: int, *, repeats: int) -> dict[str, float]:
    """Parameters, float32 size (MB), training s/step and inference slices/s of one backbone."""
    import torch

    from bodyscore.model.network import build_network, count_parameters

    torch.manual_seed(0)
    network = build_network(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    batch = torch.rand(8 * 4, 1, size, size) * 2 - 1

    def train_step() -> None:
        network.train()
        optimizer.zero_grad(set_to_none=True)
        network(batch).pow(2).mean().backward()
        optimizer.step()

    slices = torch.rand(64, 1, size, size) * 2 - 1

    def infer() -> None:
        network.eval()
        with torch.no_grad():
            network(slices)

    params = count_parameters(network)
    return {
        "parameters": params,
        "size_mb": params * 4 / 1e6,
        "train_seconds_per_step": _median_seconds(train_step, warmup=2, repeats=repeats),
        "inference_slices_per_second": 64 / _median_seconds(infer, warmup=2, repeats=repeats),
    }


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Backbone cost on this CPU",
        "",
        f"Measured {meta['date']} by `benchmarks/accuracy/backbone_cost.py` on {meta['machine']} "
        f"with {meta['threads']} torch thread(s) (torch {meta['torch']}); other jobs were "
        f"running: {meta['note'] or 'none stated'}.",
        "",
        "| backbone | input | parameters | size (MB, float32) | training s/step (B=8, m=4) "
        "| inference slices/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['size']}² | {r['parameters']:,} | {r['size_mb']:.1f} "
                     f"| {r['train_seconds_per_step']:.3f} "
                     f"| {r['inference_slices_per_second']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/accuracy/ablations"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [{"name": name, "size": size, **measure(config, size, repeats=args.repeats)}
            for name, config, size in BACKBONES]
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or
            platform.machine(), "threads": args.threads, "torch": torch.__version__,
            "note": args.note}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "backbone_cost.json").write_text(
        json.dumps({"meta": meta, "backbones": rows}, indent=2) + "\n", encoding="utf-8")
    (args.output / "backbone_cost.md").write_text(_markdown(rows, meta), encoding="utf-8")
    sys.stdout.write(_markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
