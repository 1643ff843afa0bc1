"""Checks on real CT held out of training that need no landmarks (issue 17, item 3).

Imported by ``cross_validate.py`` (benchmarks is no package; it loads this file by path):

* :func:`monotony_checks` — the volume as given scores increasing, its reversed copy (array
  flipped, header kept) is flagged (thesis sec. 4.3.3); with the tag, the z extent, the slice
  spacing and the scores at given slice positions (contour boundaries, for the independence
  figure);
* :func:`z_spacing_replay` — thesis sec. 5.2.3, fig. 5.11: the header's z spacing scaled by
  1 + γ; the z-spacing check should pass at γ = 0 and fail at γ = +0.5 and γ = −0.4;
* :func:`independence_table` — table 5.10: per contour boundary, the std of the score over the
  held-out patients that have it, and the mean over boundaries;
* :func:`group_rates` — the checks counted per body region and per slice-thickness class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.assemble import assemble_result
from bodyscore.evaluate import metrics as m
from bodyscore.evaluate.independence import score_at, spread_of_readings
from bodyscore.inference import predict, predict_raw_scores
from bodyscore.io import read_volume
from bodyscore.volume import Volume

#: The z-spacing factors of the replay: γ = 0 (no alarm wanted), +0.5 and −0.4 (alarm wanted).
GAMMAS: tuple[float, ...] = (0.0, 0.5, -0.4)

#: Slice-thickness classes of the per-thickness figures (upper bounds, mm, exclusive).
THICKNESS_CLASSES: tuple[tuple[str, float], ...] = (
    ("< 1 mm", 1.0), ("1-3 mm", 3.0), (">= 3 mm", math.inf))

#: Shortest volume whose reversed copy must be flagged and whose z spacing is checked, mm.
MIN_EXTENT_MM = 100.0


def thickness_class(z_spacing_mm: float) -> str:
    """The :data:`THICKNESS_CLASSES` label of a slice spacing."""
    return next(label for label, upper in THICKNESS_CLASSES if z_spacing_mm < upper)


def _score_at(scores: np.ndarray, index: float) -> float | None:
    """:func:`bodyscore.evaluate.independence.score_at`, with None for "no score" (outside
    the volume or at a NaN slice), as strict JSON needs."""
    value = score_at(scores, index)
    return value if math.isfinite(value) else None


def monotony_checks(path: Path, model: Any, *,
                    positions: Mapping[str, float] | None = None,
                    regions: Sequence[tuple[int, int, str]] = (),
                    replay: bool = True) -> dict[str, Any]:
    """Monotony, tag and (optionally) scores at slice positions of one volume.

    Parameters
    ----------
    path : Path
        The volume file.
    model : ScoreModel
    positions : mapping of str to float, optional
        Name → fractional slice index of the volume as stored (k = 0 most caudal for the
        RAS+ NIfTI files of the shared data); their unprocessed scores are returned.
    regions : sequence of (int, int, str)
        Coarse region labels (inclusive k ranges of the stored order, weak labels of
        ``regions.json``): the per-slice region accuracy and, for ``legs`` slices, the
        share scoring below 0 (pelvis_start) are returned.
    replay : bool
        Also :func:`z_spacing_replay` for volumes of at least :data:`MIN_EXTENT_MM`.

    Returns
    -------
    dict
        Strict-JSON ready: ``increasing``, ``reversed_copy_flagged``, ``tag``,
        ``z_extent_mm``, ``z_spacing_mm``, ``observed_slope``, ``score_range``,
        ``position_scores``.
    """
    volume = read_volume(path).canonical()
    raw = predict_raw_scores(volume, model)
    result = assemble_result(raw_scores=raw, volume=volume, settings=model.settings,
                             model_info=model.info)
    reversed_result = predict(volume.reversed_slices(with_affine=False), model)
    scores = np.asarray(result.unprocessed, dtype=float)  # in the input's slice order
    truth = m.region_truth_per_slice(volume.n_slices, regions)
    legs = np.array([label == "legs" for label in truth])
    return {
        "region_accuracy": (m.region_accuracy(truth, result.body_part_examined)
                            if any(label is not None for label in truth) else None),
        "legs_slices": int(legs.sum()),
        "legs_below_zero": int(np.sum(scores[legs] < 0)) if legs.any() else 0,
        "increasing": bool(result.observed_slope is not None and result.observed_slope > 0
                           and not result.reverse_z_ordering),
        "reversed_copy_flagged": bool(reversed_result.reverse_z_ordering),
        "tag": result.body_part_examined_tag,
        "z_extent_mm": float(volume.z_extent_mm),
        "z_spacing_mm": float(volume.spacing_mm[0]),
        "observed_slope": result.observed_slope,
        "valid_z_spacing": result.valid_z_spacing,
        "score_range": [float(np.nanmin(scores)), float(np.nanmax(scores))],
        "position_scores": {name: _score_at(scores, k)
                            for name, k in sorted((positions or {}).items())},
        "z_spacing_replay": (z_spacing_replay(volume, model, raw_scores=raw)
                             if replay and volume.z_extent_mm >= MIN_EXTENT_MM else None),
    }


def z_spacing_replay(source: Path | Volume, model: Any, gammas: Sequence[float] = GAMMAS,
                     *, raw_scores: Any = None) -> dict[str, bool | None]:
    """``valid z-spacing`` of the volume with its header's z spacing scaled by 1 + γ.

    The network sees each slice in-plane only, so the raw scores do not change with the
    header's z spacing: they are computed once (or passed as ``raw_scores``, from
    :func:`bodyscore.inference.predict_raw_scores` on ``source.canonical()``) and only the
    post-processing is repeated per γ (:func:`bodyscore.assemble.assemble_result`).

    Parameters
    ----------
    source : Path or Volume
        The volume file, or the volume already read.

    Returns
    -------
    dict of str to bool or None
        ``f"{γ:+.2f}"`` → the check's verdict (None: undefined for this model and volume).
    """
    volume = (source if isinstance(source, Volume) else read_volume(source)).canonical()
    raw = raw_scores if raw_scores is not None else predict_raw_scores(volume, model)
    return {f"{g:+.2f}": assemble_result(
                raw_scores=raw, volume=volume.with_z_spacing_scaled(1.0 + g),
                settings=model.settings, model_info=model.info).valid_z_spacing
            for g in gammas}


def independence_table(position_scores: Mapping[str, Mapping[str, float | None]]
                       ) -> dict[str, Any]:
    """Table 5.10: per boundary, std (ddof 0) of its score over the volumes that have it.

    Parameters
    ----------
    position_scores : mapping of str to mapping of str to float or None
        Volume id → boundary → score (``monotony_checks(...)["position_scores"]``).

    Returns
    -------
    dict
        ``per_boundary``: boundary → {"std", "mean", "n"} (boundaries in >= 2 volumes);
        ``mean_std``: mean of the stds (None without any boundary).
    """
    readings: dict[str, list[float]] = {}
    for scores in position_scores.values():
        for name, score in scores.items():
            readings.setdefault(name, []).append(math.nan if score is None else score)
    table = {name: {"std": std, "mean": mean, "n": n}
             for name, (std, mean, n) in spread_of_readings(readings).items() if n >= 2}
    stds = [row["std"] for row in table.values()]
    return {"per_boundary": table, "mean_std": float(np.mean(stds)) if stds else None}


def format_rate(rate: Mapping[str, int] | None) -> str:
    """``"passed/total"`` of a :func:`group_rates` count ("–" without one)."""
    return f"{rate['passed']}/{rate['total']}" if rate else "–"


def _rate(flags: Sequence[bool]) -> dict[str, int]:
    return {"passed": int(sum(flags)), "total": len(flags)}


def group_rates(checks: Mapping[str, Mapping[str, Any]], group_of: Mapping[str, str]
                ) -> dict[str, dict[str, Any]]:
    """Monotony counts per group (body region, slice-thickness class, ...).

    ``increasing`` counts every volume of ≥ 10 cm (:data:`MIN_EXTENT_MM`), as the target
    does; ``reversed_copy_flagged`` the same volumes.
    """
    out: dict[str, dict[str, Any]] = {}
    for group in sorted(set(group_of.values())):
        members = [c for vid, c in checks.items()
                   if group_of.get(vid) == group and c["z_extent_mm"] >= MIN_EXTENT_MM]
        out[group] = {
            "increasing": _rate([c["increasing"] for c in members]),
            "reversed_copy_flagged": _rate([c["reversed_copy_flagged"] for c in members]),
            "n_volumes": sum(group_of.get(v) == group for v in checks),
        }
    return out


def legs_summary(checks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Slices labelled legs that score below 0 (pelvis_start), pooled and per volume."""
    per_volume = {v: {"below_zero": c["legs_below_zero"], "slices": c["legs_slices"]}
                  for v, c in sorted(checks.items()) if c.get("legs_slices")}
    return {"below_zero": sum(r["below_zero"] for r in per_volume.values()),
            "slices": sum(r["slices"] for r in per_volume.values()),
            "per_volume": per_volume}


def replay_rates(replays: Mapping[str, Mapping[str, bool | None]]) -> dict[str, dict[str, int]]:
    """Per γ: how many volumes the z-spacing check flags (``valid z-spacing`` False) out of
    those where it is defined; at γ = 0 a flag is a false alarm."""
    out: dict[str, dict[str, int]] = {}
    for verdicts in replays.values():
        for gamma, valid in verdicts.items():
            row = out.setdefault(gamma, {"flagged": 0, "defined": 0, "total": 0})
            row["total"] += 1
            if valid is not None:
                row["defined"] += 1
                row["flagged"] += int(not valid)
    return dict(sorted(out.items()))
