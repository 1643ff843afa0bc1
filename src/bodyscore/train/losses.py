"""Loss functions of the self-supervised body part regression (thesis sec. 3.x, 4.1.4, 5.1.1).

All functions take ``scores`` of shape (B, m): the raw network outputs of the m equidistant
slices of each of the B volume samples, in increasing slice order, and average over the B·(m−1)
consecutive score differences Δs_ij = s_i,j+1 − s_ij (the 1/(B(m−1)) normalisation of eq. 4.5
and 4.7).

* :func:`heuristic_order_loss` — eq. 4.7, (σ(β·Δh_i) − σ(Δs_ij))², β in 1/mm, Δh in mm.
* :func:`classification_order_loss` — eq. 4.5 in a NaN-safe log-sigmoid form (replaces eq. 5.1).
* :func:`distance_loss` — eq. 3.5, smooth-L1 of Δs_i,j+1 − Δs_ij (mean over B·(m−2), as bpreg).
* :func:`landmark_anchor_loss` — ours: squared error of annotated slices' scores to targets.
* :func:`region_interval_loss` — ours: squared hinge keeping region-labelled slices inside
  their region's score interval.
* :func:`slope_band_loss` — ours: squared hinge keeping each sample's mean score slope inside a
  band around the expected slope (so no volume's curve can be flat or falling).
* :func:`total_loss` — α_h·L_order + α·L_dist (+ w·L_anchor + w_r·L_region + w_s·L_slope),
  eq. 5.2 with bpreg's α_h.

torch is imported inside the functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "LossTerms",
    "classification_order_loss",
    "distance_loss",
    "heuristic_order_loss",
    "landmark_anchor_loss",
    "region_interval_loss",
    "slope_band_loss",
    "total_loss",
]


def _differences(scores: torch.Tensor) -> torch.Tensor:
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (B, m) with m >= 2, got {tuple(scores.shape)}")
    return scores[:, 1:] - scores[:, :-1]


def heuristic_order_loss(scores: torch.Tensor, delta_h_mm: torch.Tensor, *,
                         beta_per_mm: float = 0.01) -> torch.Tensor:
    """Heuristic order loss, thesis eq. 4.7.

    L = 1/(B(m−1)) Σ_i Σ_j (σ(β·Δh_i) − σ(Δs_ij))², minimal at Δs_ij = β·Δh_i (eq. 4.8).

    Parameters
    ----------
    scores : torch.Tensor, shape (B, m)
    delta_h_mm : torch.Tensor, shape (B,)
        Physical distance between consecutive sampled slices of each sample, mm.
    beta_per_mm : float
        β (thesis: 0.01/mm best, table 5.3).
    """
    import torch

    diffs = _differences(scores)
    target = torch.sigmoid(beta_per_mm * delta_h_mm.to(scores.dtype)).reshape(-1, 1)
    return torch.mean((target - torch.sigmoid(diffs)) ** 2)


def classification_order_loss(scores: torch.Tensor) -> torch.Tensor:
    """Classification order loss of SSBR, thesis eq. 4.5, computed NaN-safe.

    L = −1/(B(m−1)) Σ ln σ(Δs_ij), evaluated as ``-logsigmoid(Δs)`` which is finite for every
    finite Δs (for Δs ≪ 0 it equals −Δs). Differs from the thesis' fix (eq. 5.1), which drops
    pairs whose σ(Δs) rounds to 0: here such badly ordered pairs keep their (large, finite)
    loss and a gradient of −1 instead of being ignored.
    """
    import torch

    return -torch.nn.functional.logsigmoid(_differences(scores)).mean()


def distance_loss(scores: torch.Tensor) -> torch.Tensor:
    """Distance loss, thesis eq. 3.5: smooth-L1 (eq. 3.6) of Δs_i,j+1 − Δs_ij.

    Equidistant slices should give equal score steps. Averaged over the B·(m−2) terms (bpreg's
    ``SmoothL1Loss`` mean; the thesis writes the sum). Zero when m = 2.
    """
    import torch

    diffs = _differences(scores)
    if diffs.shape[1] < 2:
        return scores.new_zeros(())
    second = diffs[:, 1:] - diffs[:, :-1]
    return torch.nn.functional.smooth_l1_loss(second, torch.zeros_like(second), beta=1.0)


def landmark_anchor_loss(scores: torch.Tensor, targets: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between annotated slices' scores and raw target scores (ours).

    Pulls the scores of slices with a known landmark towards a target raw value (e.g. the
    published model's raw landmark means) so that the learned scale matches a published one.

    Parameters
    ----------
    scores, targets : torch.Tensor, shape (B, m)
    mask : torch.Tensor of bool, shape (B, m)
        True where the slice carries a landmark with a target. No True entry: loss 0.
    """
    mask = mask.bool()
    if not bool(mask.any()):
        return scores.new_zeros(())
    return ((scores[mask] - targets[mask].to(scores.dtype)) ** 2).mean()


def region_interval_loss(scores: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                         weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared hinge keeping each slice's score inside its coarse region's interval (ours).

    A slice labelled with a coarse body region (``landmarks.json`` ``regions``: legs, pelvis,
    abdomen, chest, shoulder-neck, head) should score inside that region's interval on the
    target scale, e.g. legs below pelvis_start. L = mean over labelled slices of
    ``relu(low − s)² + relu(s − high)²``: zero inside the interval, so it only corrects slices
    in the wrong region and leaves the order loss to shape the scale within a region. Dense and
    weak where landmarks are sparse (a legs-only volume has no landmark at all). With
    ``weight`` w, L = Σ w·(relu(low − s)² + relu(s − high)²) / (number of labelled slices), so
    a region with few volumes (legs) can weigh more than its share of the slices.

    Parameters
    ----------
    scores, low, high : torch.Tensor, shape (B, m)
        Raw scores and interval bounds; ``-inf`` / ``+inf`` for an open side. A slice with both
        bounds infinite (no region label) does not count.
    weight : torch.Tensor, shape (B, m), optional
        Per-slice weight (``region_weights`` of the config); None: 1 everywhere.
    """
    import torch

    low, high = low.to(scores.dtype), high.to(scores.dtype)
    labelled = torch.isfinite(low) | torch.isfinite(high)
    if not bool(labelled.any()):
        return scores.new_zeros(())
    s = scores[labelled]
    below = torch.relu(low[labelled] - s)
    above = torch.relu(s - high[labelled])
    if weight is None:
        return (below**2 + above**2).mean()
    return (weight[labelled].to(scores.dtype) * (below**2 + above**2)).mean()


def slope_band_loss(scores: torch.Tensor, delta_h_mm: torch.Tensor, *,
                    band_per_mm: tuple[float, float]) -> torch.Tensor:
    """Squared hinge keeping each sample's score rise within a slope band (ours).

    The heuristic order loss (eq. 4.7) compares sigmoids, so its pull on a flat curve is weak
    (σ(0.5) − σ(0) = 0.12 for 50 mm): a volume without landmarks, e.g. a 15 cm buttock crop,
    can keep a flat or slightly falling curve, which the z-spacing check (sec. 4.3.3) then
    rejects and the reversed-order check cannot read. This term asks the rise over the whole
    sample, R_i = s_i,m − s_i,1, to lie in ``[low·L_i, high·L_i]`` with L_i = (m − 1)·Δh_i the
    sample's physical span: L = mean_i relu(low·L_i − R_i)² + relu(R_i − high·L_i)². Zero
    inside the band, so within it the anchors and the order loss shape the scale.

    Parameters
    ----------
    scores : torch.Tensor, shape (B, m)
    delta_h_mm : torch.Tensor, shape (B,)
        Physical distance between consecutive sampled slices, mm.
    band_per_mm : (float, float)
        (low, high) raw score per mm, 0 < low <= high. The default recipe's anchors make the
        expected raw slope β = 0.01/mm; landmark pairs ≥ 40 mm apart in the real volumes here
        rise 0.48–1.69 × β (5th–95th percentile 0.94–1.25), so the recipe uses 0.75β–1.5β.
    """
    import torch

    low, high = band_per_mm
    diffs = _differences(scores)
    rise = diffs.sum(dim=1)
    span = (diffs.shape[1] * delta_h_mm.to(scores.dtype)).reshape(-1)
    return (torch.relu(low * span - rise) ** 2 + torch.relu(rise - high * span) ** 2).mean()


@dataclass(frozen=True)
class LossTerms:
    """The total loss (a tensor, for backward) and its terms as floats for logging."""

    total: Any
    order: float
    distance: float
    anchor: float
    region: float = 0.0
    slope: float = 0.0
    correspondence: float = 0.0


def total_loss(
    scores: torch.Tensor,
    delta_h_mm: torch.Tensor,
    *,
    loss_order: str = "h",
    alpha_h: float = 1.0,
    beta_h: float = 0.01,
    alpha: float = 0.0,
    anchor_weight: float = 0.0,
    anchor_targets: torch.Tensor | None = None,
    anchor_mask: torch.Tensor | None = None,
    region_weight: float = 0.0,
    region_low: torch.Tensor | None = None,
    region_high: torch.Tensor | None = None,
    region_slice_weight: torch.Tensor | None = None,
    slope_weight: float = 0.0,
    slope_band_per_mm: tuple[float, float] = (0.0075, 0.015),
    correspondence_weight: float = 0.0,
    correspondence_scores: torch.Tensor | None = None,
    correspondence_ids: torch.Tensor | None = None,
) -> LossTerms:
    """L = α_h·L_order + α·L_dist + w·L_anchor + w_r·L_region + w_s·L_slope + w_c·L_corr
    (thesis eq. 5.2 plus bpreg's α_h weight, plus our anchor, region, slope-band and
    correspondence terms; ``correspondence_scores`` (P,) are the raw scores of the
    correspondence batch, ``correspondence_ids`` (P,) their boundary groups,
    ``region_slice_weight`` (B, m) the per-slice weights of the region term,
    :func:`bodyscore.train.correspondence.correspondence_loss`).

    ``loss_order`` is ``"h"`` (eq. 4.7, default as in bpreg's public model) or ``"c"``
    (eq. 4.5, NaN-safe).
    """
    if loss_order == "h":
        order = heuristic_order_loss(scores, delta_h_mm, beta_per_mm=beta_h)
    elif loss_order == "c":
        order = classification_order_loss(scores)
    else:
        raise ValueError(f"loss_order must be 'h' or 'c', got {loss_order!r}")
    total = alpha_h * order
    dist = distance_loss(scores)
    if alpha:
        total = total + alpha * dist
    anchor = scores.new_zeros(())
    if anchor_weight and anchor_targets is not None and anchor_mask is not None:
        anchor = landmark_anchor_loss(scores, anchor_targets, anchor_mask)
        total = total + anchor_weight * anchor
    region = scores.new_zeros(())
    if region_weight and region_low is not None and region_high is not None:
        region = region_interval_loss(scores, region_low, region_high, region_slice_weight)
        total = total + region_weight * region
    slope = scores.new_zeros(())
    if slope_weight:
        slope = slope_band_loss(scores, delta_h_mm, band_per_mm=slope_band_per_mm)
        total = total + slope_weight * slope
    correspondence = scores.new_zeros(())
    if (correspondence_weight and correspondence_scores is not None
            and correspondence_ids is not None):
        from bodyscore.train.correspondence import correspondence_loss

        correspondence = correspondence_loss(correspondence_scores, correspondence_ids)
        total = total + correspondence_weight * correspondence
    return LossTerms(total=total, order=float(order.detach()), distance=float(dist.detach()),
                     anchor=float(anchor.detach()), region=float(region.detach()),
                     slope=float(slope.detach()),
                     correspondence=float(correspondence.detach()))
