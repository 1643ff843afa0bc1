"""One table comparing cross-validation runs of several recipe variants (issue 11, ablations).

    python benchmarks/accuracy/ablation_table.py runs/cv-ablation/*/cv.json \
        --cost benchmarks/accuracy/ablations/backbone_cost.json -o benchmarks/accuracy/ablations

Reads the ``cv.json`` files that ``cross_validate.py`` wrote (one per variant, all with the
same folds and steps for a fair comparison: the script refuses to mix protocols, except the
training length with ``--steps-may-differ``, which adds a ``steps`` column) and writes
``ablations.md`` / ``ablations.json``. Every number comes from those files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "accuracy"))
sys.path.insert(0, str(ROOT / "src"))

from real_checks import format_rate  # noqa: E402


def _value(block: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    if not block or block.get("mean") is None:
        return "–"
    se = block.get("se")
    se_text = "–" if se is None else f"{scale * se:.{digits}f}"
    return f"{scale * block['mean']:.{digits}f} ± {se_text} (n={block.get('n', '?')})"


def _row(cv: dict[str, Any]) -> dict[str, str]:
    overall = cv["overall"]
    checks = overall.get("checks", {})
    return {
        "variant": cv["variant"],
        "mae": _value(overall.get("mae")),
        "mae_low": _value(overall.get("mae_low_confidence")),
        "acc5": _value(overall.get("accuracy_5class"), 100.0, 1),
        "region": _value(overall.get("region_accuracy"), 100.0, 1),
        **{name: str(value) for name, value in checks.items()},
        **_real_cells(cv.get("real_volumes") or {}),
    }


def _real_cells(real: dict[str, Any]) -> dict[str, str]:
    """Columns from every held-out real volume (issue 17): monotony, independence, legs."""
    overall = (real.get("monotony") or {}).get("overall") or {}
    independence = (real.get("independence") or {}).get("mean_std")
    legs = real.get("legs") or {}
    return {
        "all held-out real: increasing": format_rate(overall.get("increasing")),
        "all held-out real: reversed flagged": format_rate(overall.get("reversed_copy_flagged")),
        "independence: mean std at contour boundaries": (
            "–" if independence is None else f"{independence:.2f}"),
        "legs slices < 0": (f"{legs['below_zero']}/{legs['slices']}" if legs.get("slices")
                            else "–"),
    }


def _protocol(cv: dict[str, Any], *, with_steps: bool = True) -> tuple[Any, ...]:
    """Steps and held-out annotated volumes of the folds present: recipes that train with
    different unlabelled volumes are compared on the same annotated folds."""
    folds = tuple(tuple(v for v in f["volumes"] if v not in f.get("unlabelled", ()))
                  for f in cv["fold_table"] if f["fold"] in cv["folds_present"])
    return (cv["steps"] if with_steps else None), folds


def build(paths: list[Path], *, steps_may_differ: bool = False
          ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Rows of the table and the shared protocol; raises ValueError when protocols differ
    (the training length may differ with ``steps_may_differ``: a ``steps`` column then)."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    protocols = {_protocol(cv, with_steps=not steps_may_differ) for cv in runs}
    if len(protocols) != 1:
        raise ValueError("the runs differ in steps or held-out folds; compare like with like")
    steps, folds = protocols.pop()
    meta = {"steps": steps if steps is not None else sorted({cv["steps"] for cv in runs}),
            "folds": [list(f) for f in folds],
            "commits": sorted({cv["git_commit"] for cv in runs}),
            "incomplete": [cv["variant"] for cv in runs if cv.get("incomplete")]}
    rows = [_row(cv) for cv in runs]
    if steps_may_differ:
        rows = [{"variant": row["variant"], "steps": str(cv["steps"]), **row}
                for row, cv in zip(rows, runs, strict=True)]
    return rows, meta


def markdown(rows: list[dict[str, str]], meta: dict[str, Any],
             cost: dict[str, Any] | None) -> str:
    check_names = [k for k in rows[0] if k not in ("variant", "mae", "mae_low", "acc5", "region")]
    header = ["variant", "landmark MAE, medium/high (± SE)", "MAE, low confidence",
              "5-class accuracy %", "region accuracy %", *check_names]
    steps = (f"{meta['steps']} steps" if isinstance(meta["steps"], int)
             else "the steps of its `steps` column")
    lines = [
        "# Ablations (cross-validated on the real volumes)",
        "",
        f"Each variant trained {steps} per fold on the same held-out folds: "
        + "; ".join(", ".join(f) for f in meta["folds"])
        + f". Code: {', '.join(meta['commits'])}."
        + (f" Incomplete runs: {', '.join(meta['incomplete'])}." if meta["incomplete"] else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        cells = [r["variant"], r["mae"], r["mae_low"], r["acc5"], r["region"],
                 *[r.get(k, "–") for k in check_names]]
        lines.append("| " + " | ".join(cells) + " |")
    if cost:
        lines += ["", "## Cost of each backbone on this CPU (`backbone_cost.py`)", "",
                  "| backbone | input | parameters | training s/step | inference slices/s |",
                  "|---|---|---|---|---|"]
        for b in cost["backbones"]:
            lines.append(f"| {b['name']} | {b['size']}² | {b['parameters']:,} | "
                         f"{b['train_seconds_per_step']:.3f} | "
                         f"{b['inference_slices_per_second']:.0f} |")
        lines.append(f"\n({cost['meta']['threads']} torch thread(s); {cost['meta']['note']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cv", type=Path, nargs="+", help="cv.json of each variant")
    parser.add_argument("--cost", type=Path, help="backbone_cost.json")
    parser.add_argument("--steps-may-differ", action="store_true",
                        help="compare runs of different training lengths (a steps column)")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/accuracy/ablations"))
    args = parser.parse_args(argv)
    try:
        rows, meta = build(args.cv, steps_may_differ=args.steps_may_differ)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"ablation_table: {exc}\n")
        return 2
    cost = json.loads(args.cost.read_text(encoding="utf-8")) if args.cost else None
    args.output.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, meta, cost)
    (args.output / "ablations.md").write_text(text, encoding="utf-8")
    (args.output / "ablations.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "cost": cost}, indent=2) + "\n",
        encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
