"""Evaluation metrics of a body part regression model (thesis sec. 3.2, sec. 4.2, eq. 4.11–4.16).

Pure functions over numpy arrays and landmark tables. A *landmark table* is a mapping
``{landmark name: value}``: slice scores of the annotated landmarks of one volume, or the slice
score reference table s̄ (pseudo-labels, eq. 4.11). Names are canonicalised with
:func:`canonical_landmark_name` (``pelvis-start`` → ``pelvis_start``, ``kidneys`` → ``kidney``).

Metrics
-------
* LMSE φ̄ ± σ_φ̄ (eq. 4.12–4.15): mean over volumes of the mean squared, d-normalised landmark
  error, d = (s̄_eyes_end − s̄_pelvis_start) / 100.
* Landmark mean absolute error ± SE: the same with ``|·|`` instead of ``(·)²``; in score units of
  the 0–100 scale (not in the thesis; easier to read: "landmarks are off by 3 points").
* z-test between two LMSEs (eq. 4.16), two-sided as in the thesis, plus a one-sided p-value.
* 5-class accuracy ψ (eq. 3.7 with the classes of table 4.5).
* R² of the slice score versus physical z per volume (eq. 3.8, Tang et al.).
* Per-landmark LMSE ± SE (table 5.5), absolute error, bias and score spread (table 5.10).
* Per-slice accuracy of coarse region labels against the body part examined dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from bodyscore.errors import InputError

__all__ = [
    "CLASS_BOUNDARIES",
    "CLASS_NAMES",
    "EVALUATION_LANDMARKS",
    "LANDMARK_ALIASES",
    "LandmarkError",
    "MeanSE",
    "ZTest",
    "canonical_landmark_name",
    "canonical_table",
    "class_accuracy",
    "dataset_accuracy",
    "ground_truth_classes",
    "landmark_abs_errors",
    "landmark_mean_absolute_error",
    "landmark_mean_squared_error",
    "landmark_scores",
    "lmse_per_volume",
    "mean_with_se",
    "normalization_constant",
    "per_landmark_errors",
    "predicted_classes",
    "r_squared",
    "reference_table",
    "region_accuracy",
    "region_truth_per_slice",
    "squared_errors",
    "z_test",
]

#: The twelve evaluation landmarks l1 … l12 of thesis table 4.3 (LMSE, eq. 4.13).
EVALUATION_LANDMARKS: tuple[str, ...] = (
    "pelvis_start", "femur_end", "L5", "L3", "L1", "Th11",
    "Th8", "Th5", "Th2", "C6", "C1", "eyes_end",
)

#: Thesis table 4.5: (class, start landmark, end landmark) of the 5-class accuracy.
CLASS_BOUNDARIES: tuple[tuple[str, str, str], ...] = (
    ("pelvis", "pelvis_start", "L5"),
    ("abdomen", "L5", "Th11"),
    ("chest", "Th11", "Th2"),
    ("neck", "Th2", "C1"),
    ("head", "C1", "eyes_end"),
)
#: Class names in the order of :data:`CLASS_BOUNDARIES`; class index -1 = no class.
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CLASS_BOUNDARIES)

#: Other spellings of landmark names → the name used here (bpreg's table says ``kidney``, the
#: shared ``landmarks.json`` says ``kidneys``).
LANDMARK_ALIASES: Mapping[str, str] = MappingProxyType({"kidneys": "kidney"})


def canonical_landmark_name(name: str) -> str:
    """The canonical spelling of a landmark name: ``-`` → ``_``, aliases resolved."""
    name = str(name).strip().replace("-", "_")
    return LANDMARK_ALIASES.get(name, name)


def canonical_table(table: Mapping[str, float]) -> dict[str, float]:
    """A landmark table with canonical names and float values (non-finite values dropped)."""
    out: dict[str, float] = {}
    for name, value in table.items():
        if value is None:
            continue
        v = float(value)
        if math.isfinite(v):
            out[canonical_landmark_name(name)] = v
    return out


@dataclass(frozen=True)
class MeanSE:
    """A mean over volumes with its standard error (eq. 4.14–4.15).

    Attributes
    ----------
    mean : float
        NaN when no value is available.
    se : float
        σ/√N with the sample standard deviation (ddof = 1); NaN when N < 2.
    n : int
        Number of values (volumes) averaged.
    """

    mean: float
    se: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Strict-JSON form: ``{"mean", "se", "n"}`` with None for NaN."""
        return {"mean": _json_float(self.mean), "se": _json_float(self.se), "n": self.n}


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def mean_with_se(values: Iterable[float]) -> MeanSE:
    """Mean and standard error of the finite values (eq. 4.14, 4.15); NaNs are skipped."""
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return MeanSE(math.nan, math.nan, 0)
    se = float(np.std(arr, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return MeanSE(float(arr.mean()), se, n)


# -- landmark scores and the reference table -----------------------------------------------------
def landmark_scores(
    scores: Sequence[float | None] | np.ndarray, positions: Mapping[str, float]
) -> dict[str, float]:
    """Slice score at each landmark position, linearly interpolated at fractional indices.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Slice scores in the stored slice order; NaN/None where missing.
    positions : mapping of str to float
        Fractional slice index k of each landmark (0 = first stored slice).

    Returns
    -------
    dict of str to float
        Canonical landmark name → score. Landmarks outside ``[0, n-1]`` or next to a missing
        score are left out.

    Notes
    -----
    Differs from bpreg: bpreg truncates k to an integer index (``astype(int)``); fractional
    positions are interpolated here.
    """
    s = np.array([np.nan if v is None else float(v) for v in scores], dtype=np.float64)
    out: dict[str, float] = {}
    for name, position in positions.items():
        k = float(position)
        if not (math.isfinite(k) and 0.0 <= k <= s.size - 1):
            continue
        lo = math.floor(k)
        hi = min(lo + 1, s.size - 1)
        frac = k - lo
        value = s[lo] if frac == 0.0 else (1.0 - frac) * s[lo] + frac * s[hi]
        if math.isfinite(value):
            out[canonical_landmark_name(name)] = float(value)
    return out


def reference_table(per_volume: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Slice score reference table s̄_l: mean score of each landmark over volumes (eq. 4.11)."""
    sums: dict[str, list[float]] = {}
    for table in per_volume:
        for name, value in canonical_table(table).items():
            sums.setdefault(name, []).append(value)
    return {name: float(np.mean(values)) for name, values in sums.items()}


def normalization_constant(
    reference: Mapping[str, float], *, start: str = "pelvis_start", end: str = "eyes_end"
) -> float:
    """Normalisation constant d = (s̄_end − s̄_start) / 100 (eq. 4.12).

    Raises
    ------
    InputError
        When the reference table lacks ``start`` or ``end`` or d = 0.
    """
    table = canonical_table(reference)
    missing = [n for n in (start, end) if n not in table]
    if missing:
        raise InputError(
            f"reference table: no score for {', '.join(missing)}; the normalisation constant d "
            "needs both (use a model table that has them or other d landmarks)"
        )
    d = (table[end] - table[start]) / 100.0
    if d == 0.0:
        raise InputError(f"reference table: {start} and {end} have the same score; d = 0")
    return d


def squared_errors(
    scores: Mapping[str, float],
    reference: Mapping[str, float],
    *,
    d: float,
    landmarks: Iterable[str] | None = None,
) -> dict[str, float]:
    """Squared normalised errors ((s̄_l − s_l) / d)² of one volume's landmarks (eq. 4.13 terms).

    Only landmarks present in both tables (and in ``landmarks`` when given) are returned.
    """
    return {k: v * v for k, v in _signed_errors(scores, reference, d, landmarks).items()}


def landmark_abs_errors(
    scores: Mapping[str, float],
    reference: Mapping[str, float],
    *,
    d: float,
    landmarks: Iterable[str] | None = None,
) -> dict[str, float]:
    """Absolute normalised errors |s̄_l − s_l| / d in 0–100 score units."""
    return {k: abs(v) for k, v in _signed_errors(scores, reference, d, landmarks).items()}


def _signed_errors(
    scores: Mapping[str, float],
    reference: Mapping[str, float],
    d: float,
    landmarks: Iterable[str] | None,
) -> dict[str, float]:
    s, ref = canonical_table(scores), canonical_table(reference)
    wanted = None if landmarks is None else {canonical_landmark_name(n) for n in landmarks}
    return {
        name: (value - ref[name]) / d
        for name, value in s.items()
        if name in ref and (wanted is None or name in wanted)
    }


def lmse_per_volume(
    scores: Mapping[str, float],
    reference: Mapping[str, float],
    *,
    d: float,
    landmarks: Iterable[str] | None = None,
) -> float:
    """LMSE φ_i of one volume (eq. 4.13); NaN when no landmark is shared with the reference."""
    errors = squared_errors(scores, reference, d=d, landmarks=landmarks)
    return float(np.mean(list(errors.values()))) if errors else math.nan


def landmark_mean_squared_error(
    per_volume: Sequence[Mapping[str, float]],
    reference: Mapping[str, float],
    *,
    d: float | None = None,
    landmarks: Iterable[str] | None = EVALUATION_LANDMARKS,
) -> MeanSE:
    """LMSE φ̄ ± σ_φ̄ over volumes (eq. 4.13–4.15).

    Parameters
    ----------
    per_volume : sequence of mapping
        Landmark scores of each volume (:func:`landmark_scores`).
    reference : mapping
        Reference table s̄ (pseudo-labels, eq. 4.11) on the same score scale.
    d : float, optional
        Normalisation constant; default :func:`normalization_constant` of ``reference``.
    landmarks : iterable of str or None
        Landmarks that count; default the twelve of table 4.3; None = all shared ones.

    Returns
    -------
    MeanSE
        Volumes without any counted landmark are left out (``n`` counts the others).
    """
    d = normalization_constant(reference) if d is None else d
    names = None if landmarks is None else tuple(landmarks)
    return mean_with_se(lmse_per_volume(v, reference, d=d, landmarks=names) for v in per_volume)


def landmark_mean_absolute_error(
    per_volume: Sequence[Mapping[str, float]],
    reference: Mapping[str, float],
    *,
    d: float | None = None,
    landmarks: Iterable[str] | None = EVALUATION_LANDMARKS,
) -> MeanSE:
    """Mean over volumes of the per-volume mean |s̄_l − s_l| / d, ± SE (0–100 score units)."""
    d = normalization_constant(reference) if d is None else d
    names = None if landmarks is None else tuple(landmarks)
    values = []
    for table in per_volume:
        errors = landmark_abs_errors(table, reference, d=d, landmarks=names)
        values.append(float(np.mean(list(errors.values()))) if errors else math.nan)
    return mean_with_se(values)


@dataclass(frozen=True)
class LandmarkError:
    """Errors of one landmark over the volumes annotated with it (thesis tables 5.5, 5.10).

    Attributes
    ----------
    name : str
    n : int
        Volumes with this landmark (and a score at it).
    reference_score : float
        Pseudo-label s̄_l.
    lmse : MeanSE
        Mean of ((s̄_l − s_l)/d)² over volumes ± SE (table 5.5).
    mae : MeanSE
        Mean of |s̄_l − s_l|/d ± SE, 0–100 score units.
    bias : float
        Mean of (s_l − s̄_l)/d: positive = predicted too cranial on the score scale.
    score_std : float
        Standard deviation (ddof = 1) of s_l/d over volumes (table 5.10's σ_s); NaN if n < 2.
    """

    name: str
    n: int
    reference_score: float
    lmse: MeanSE
    mae: MeanSE
    bias: float
    score_std: float

    def to_dict(self) -> dict[str, object]:
        """Strict-JSON form."""
        return {
            "name": self.name,
            "n": self.n,
            "reference_score": _json_float(self.reference_score),
            "lmse": self.lmse.to_dict(),
            "mae": self.mae.to_dict(),
            "bias": _json_float(self.bias),
            "score_std": _json_float(self.score_std),
        }


def per_landmark_errors(
    per_volume: Sequence[Mapping[str, float]],
    reference: Mapping[str, float],
    *,
    d: float | None = None,
    landmarks: Iterable[str] | None = EVALUATION_LANDMARKS,
) -> tuple[LandmarkError, ...]:
    """Per-landmark LMSE ± SE, absolute error, bias and spread (tables 5.5, 5.10).

    Returns
    -------
    tuple of LandmarkError
        In the order of ``landmarks`` (or of the reference table when None); landmarks that no
        volume has are included with n = 0 and NaN values only when named in ``landmarks``.
    """
    ref = canonical_table(reference)
    d = normalization_constant(ref) if d is None else d
    names = list(ref) if landmarks is None else [canonical_landmark_name(n) for n in landmarks]
    tables = [canonical_table(v) for v in per_volume]
    out = []
    for name in names:
        if name not in ref:
            continue
        signed = np.array([(t[name] - ref[name]) / d for t in tables if name in t])
        scaled = np.array([t[name] / d for t in tables if name in t])
        out.append(
            LandmarkError(
                name=name,
                n=int(signed.size),
                reference_score=ref[name],
                lmse=mean_with_se(signed**2),
                mae=mean_with_se(np.abs(signed)),
                bias=float(signed.mean()) if signed.size else math.nan,
                score_std=float(np.std(scaled, ddof=1)) if scaled.size > 1 else math.nan,
            )
        )
    return tuple(out)


# -- z-test --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZTest:
    """Result of the z-test between the LMSEs of model x and model y (eq. 4.16).

    Attributes
    ----------
    statistic : float
        t = (φ̄_x − φ̄_y) / √(σ²_φ̄x + σ²_φ̄y).
    p_two_sided : float
        P(|Z| ≥ |t|) under H0: μ_φx = μ_φy (the thesis' test, sec. 4.2.1).
    p_x_better : float
        One-sided P(Z ≤ t): small when x has a significantly lower LMSE than y.
    significant : bool
        ``p_two_sided < alpha`` (the thesis: |t| > 1.96 at α = 5 %).
    alpha : float
    """

    statistic: float
    p_two_sided: float
    p_x_better: float
    significant: bool
    alpha: float

    def to_dict(self) -> dict[str, object]:
        """Strict-JSON form."""
        return {
            "statistic": _json_float(self.statistic),
            "p_two_sided": _json_float(self.p_two_sided),
            "p_x_better": _json_float(self.p_x_better),
            "significant": self.significant,
            "alpha": self.alpha,
        }

    def verdict(self, x: str = "model x", y: str = "model y") -> str:
        """One sentence: which model is better, or that they do not differ significantly."""
        if not math.isfinite(self.statistic):
            return "z-test not possible (an LMSE or its standard error is undefined)"
        level = f"{100 * self.alpha:g} %"
        if not self.significant:
            return (f"{x} and {y} do not differ significantly (t = {self.statistic:.2f}, "
                    f"two-sided p = {self.p_two_sided:.3g}, level {level})")
        better, worse = (x, y) if self.statistic < 0 else (y, x)
        return (f"{better} has a significantly lower LMSE than {worse} (t = {self.statistic:.2f},"
                f" two-sided p = {self.p_two_sided:.3g}, level {level})")


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def z_test(x: MeanSE, y: MeanSE, *, alpha: float = 0.05) -> ZTest:
    """Two-sided z-test of H0: μ_φx = μ_φy for two LMSEs with standard errors (eq. 4.16).

    Examples
    --------
    The thesis' comparison of model 13 (2.65 ± 0.28) and model 6 (3.3 ± 0.4), sec. 5.1.1:

    >>> round(z_test(MeanSE(3.3, 0.4, 50), MeanSE(2.65, 0.28, 50)).statistic, 2)
    1.33
    """
    if not 0.0 < alpha < 1.0:
        raise InputError(f"z_test: alpha={alpha} must be in (0, 1)")
    variance = x.se**2 + y.se**2
    diff = x.mean - y.mean
    if not (math.isfinite(variance) and math.isfinite(diff)) or variance <= 0.0:
        t = 0.0 if (diff == 0.0 and variance == 0.0) else math.nan
    else:
        t = diff / math.sqrt(variance)
    if not math.isfinite(t):
        return ZTest(math.nan, math.nan, math.nan, False, alpha)
    p_two = math.erfc(abs(t) / math.sqrt(2.0))
    return ZTest(t, p_two, _normal_cdf(t), p_two < alpha, alpha)


# -- 5-class accuracy (table 4.5) ----------------------------------------------------------------
def ground_truth_classes(n_slices: int, positions: Mapping[str, float]) -> np.ndarray:
    """Ground-truth class index of every slice from annotated landmarks (sec. 4.2.2).

    Slice j gets class c of table 4.5 when both boundary landmarks of c are annotated and
    ``k_start <= j < k_end`` (the top class, head, also includes ``j == k_eyes_end``). Slices
    outside [pelvis_start, eyes_end] or between unannotated boundaries get -1.

    Parameters
    ----------
    n_slices : int
    positions : mapping of str to float
        Fractional slice index k of the annotated landmarks (any names; only class boundaries
        are used). k must increase with the class order (caudal → cranial).

    Returns
    -------
    numpy.ndarray, shape (n_slices,), int
    """
    k = canonical_table(positions)
    j = np.arange(n_slices, dtype=np.float64)
    truth = np.full(n_slices, -1, dtype=np.int64)
    last = len(CLASS_BOUNDARIES) - 1
    for index, (_, start, end) in enumerate(CLASS_BOUNDARIES):
        if start not in k or end not in k:
            continue
        lo, hi = sorted((k[start], k[end]))
        inside = (j >= lo) & ((j <= hi) if index == last else (j < hi))
        truth[inside] = index
    return truth


def predicted_classes(
    scores: Sequence[float | None] | np.ndarray, reference: Mapping[str, float]
) -> np.ndarray:
    """Predicted class index of every slice from its score and the reference table (sec. 4.2.2).

    Class c when ``s̄_start <= s < s̄_end`` (head: ``s <= s̄_eyes_end``); -1 for missing scores,
    scores outside [s̄_pelvis_start, s̄_eyes_end] and classes whose boundaries the reference
    table lacks.
    """
    s = np.array([np.nan if v is None else float(v) for v in scores], dtype=np.float64)
    ref = canonical_table(reference)
    predicted = np.full(s.size, -1, dtype=np.int64)
    last = len(CLASS_BOUNDARIES) - 1
    with np.errstate(invalid="ignore"):
        for index, (_, start, end) in enumerate(CLASS_BOUNDARIES):
            if start not in ref or end not in ref:
                continue
            lo, hi = ref[start], ref[end]
            inside = (s >= lo) & ((s <= hi) if index == last else (s < hi))
            predicted[inside] = index
    return predicted


def class_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of labelled slices (truth >= 0) whose predicted class is right (eq. 3.7 inner
    mean); NaN when no slice is labelled."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape:
        raise InputError(f"class_accuracy: shapes {truth.shape} and {predicted.shape} differ")
    labelled = truth >= 0
    if not labelled.any():
        return math.nan
    return float(np.mean(truth[labelled] == predicted[labelled]))


def dataset_accuracy(per_volume: Iterable[float]) -> MeanSE:
    """Accuracy ψ: mean of the per-volume accuracies (eq. 3.7), ± SE; NaN volumes skipped."""
    return mean_with_se(per_volume)


# -- R² (eq. 3.8) --------------------------------------------------------------------------------
def r_squared(
    scores: Sequence[float | None] | np.ndarray, z_mm: Sequence[float] | np.ndarray
) -> float:
    """R² of a straight line fitted to slice score versus z (thesis eq. 3.8, Tang et al.).

    R² = 1 − Σ(s_i − ŝ_i)² / Σ(s_i − s̄)², with ŝ the least-squares line over the finite
    scores and s̄ their mean. Returns NaN with fewer than 3 finite scores or constant scores.

    Notes
    -----
    The thesis prints the denominator as Σ(ŝ_i − s̄)²; for a least-squares fit with intercept
    that form equals 1 − SSres/SSreg, which is not bounded by 1, so the usual definition with
    the total sum of squares is used.
    """
    s = np.array([np.nan if v is None else float(v) for v in scores], dtype=np.float64)
    z = np.asarray(z_mm, dtype=np.float64)
    if z.shape != s.shape:
        raise InputError(f"r_squared: {s.size} scores but {z.size} z positions")
    ok = np.isfinite(s) & np.isfinite(z)
    if ok.sum() < 3:
        return math.nan
    s, z = s[ok], z[ok]
    total = float(np.sum((s - s.mean()) ** 2))
    if total == 0.0 or np.ptp(z) == 0.0:
        return math.nan
    slope, intercept = np.polyfit(z, s, 1)
    residual = float(np.sum((s - (slope * z + intercept)) ** 2))
    return 1.0 - residual / total


# -- coarse region labels ------------------------------------------------------------------------
def region_truth_per_slice(
    n_slices: int, regions: Iterable[tuple[int, int, str]]
) -> list[str | None]:
    """The annotated region label of every slice from inclusive k ranges (None = unlabelled).

    Parameters
    ----------
    n_slices : int
    regions : iterable of (k_first, k_last, label)
        Inclusive ranges of ``landmarks.json`` ``regions``; a later range wins on overlap.
    """
    labels: list[str | None] = [None] * n_slices
    for first, last, label in regions:
        for j in range(max(0, int(first)), min(n_slices - 1, int(last)) + 1):
            labels[j] = str(label)
    return labels


def region_accuracy(
    truth: Sequence[str | None], body_part_examined: Mapping[str, Iterable[int]]
) -> float:
    """Fraction of labelled slices whose annotated region is among the slice's predicted regions.

    Parameters
    ----------
    truth : sequence of str or None, shape (n,)
        Per-slice labels (:func:`region_truth_per_slice`): legs, pelvis, abdomen, chest,
        shoulder-neck, head (the names of the body part examined dictionary, table 4.6).
    body_part_examined : mapping of str to iterable of int
        The result's dictionary: region → slice indices. Regions overlap (table 4.6), so a slice
        counts as right when its label is any of its predicted regions; a slice in no region
        (e.g. a removed tail) counts as wrong.

    Returns
    -------
    float
        NaN when no slice is labelled.
    """
    predicted: list[set[str]] = [set() for _ in truth]
    for region, indices in body_part_examined.items():
        for i in indices:
            if 0 <= int(i) < len(predicted):
                predicted[int(i)].add(str(region))
    hits = [label in predicted[j] for j, label in enumerate(truth) if label is not None]
    return float(np.mean(hits)) if hits else math.nan
