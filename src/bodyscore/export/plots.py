"""PNG figure of one result: the slice score curve beside a coronal view coloured by region.

Needs matplotlib (``pip install bodyscore[report]``); imported lazily.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from bodyscore.errors import OutputError
from bodyscore.export.atomic import atomic_write_bytes
from bodyscore.result import ScoreResult
from bodyscore.volume import Volume

__all__ = ["REGION_COLOURS", "coronal_view", "render_png", "write_png"]

#: Colour of each body region of the body part examined dictionary (thesis table 4.6).
REGION_COLOURS: dict[str, tuple[float, float, float]] = {
    "legs": (0.55, 0.35, 0.75),
    "pelvis": (0.95, 0.55, 0.15),
    "abdomen": (0.95, 0.85, 0.20),
    "chest": (0.30, 0.70, 0.35),
    "shoulder-neck": (0.25, 0.65, 0.90),
    "head": (0.90, 0.30, 0.35),
}


def coronal_view(
    volume: Volume, *, window_hu: tuple[float, float] = (-1000.0, 1000.0)
) -> np.ndarray:
    """Coronal mid-slice of a canonical volume as a grey image in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (z, x)
        Row 0 is the most inferior slice (flip vertically to display head up).
    """
    y_mid = volume.shape[1] // 2
    plane = np.asarray(volume.array[:, y_mid, :], dtype=np.float32)
    lo, hi = window_hu
    return np.clip((plane - lo) / (hi - lo), 0.0, 1.0)


def _region_rgba(result: ScoreResult, volume: Volume) -> np.ndarray:
    """Per canonical slice, RGBA of its most cranial region (alpha 0 where none)."""
    rgba = np.zeros((volume.n_slices, 4), dtype=np.float32)
    order = volume.slice_order
    regions = result.region_of_slices()
    for k in range(volume.n_slices):
        names = regions[int(order[k])]
        if names:
            rgba[k, :3] = REGION_COLOURS.get(names[-1], (0.5, 0.5, 0.5))
            rgba[k, 3] = 0.35
    return rgba


def render_png(result: ScoreResult, volume: Volume | None = None, *, dpi: int = 110) -> bytes:
    """Render the score curve (and, with a volume, the coronal overlay) to PNG bytes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OutputError(
            "PNG output needs matplotlib; install it with: pip install 'bodyscore[report]'"
        ) from exc
    ncols = 2 if volume is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 5.0), dpi=dpi, squeeze=False)
    _plot_curve(axes[0][0], result)
    if volume is not None:
        _plot_coronal(axes[0][1], result, volume)
    title = (
        f"{Path(str(result.input.get('source', ''))).name}  tag: {result.body_part_examined_tag}"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _plot_curve(ax: Any, result: ScoreResult) -> None:
    z = result.z
    order = np.argsort(z)
    ax.plot(z[order], result.unprocessed[order], ".", ms=2, color="0.6", label="unprocessed")
    ax.plot(z[order], result.cleaned[order], "-", lw=1.5, color="C0", label="cleaned")
    for name in ("pelvis_start", "L1", "Th1", "eyes_end"):
        stats = result.lookup_table.get(name)
        if stats and stats.get("mean") is not None:
            ax.axhline(stats["mean"], color="0.85", lw=0.8, zorder=0)
            ax.text(z.min() if z.size else 0, stats["mean"], name, fontsize=7, color="0.5")
    ax.set_xlabel("z (mm, feet → head)")
    ax.set_ylabel("slice score")
    ax.legend(fontsize=8, loc="upper left")
    flags = []
    if result.reverse_z_ordering:
        flags.append("REVERSED z-order")
    if result.valid_z_spacing is False:
        flags.append("INVALID z-spacing")
    if flags:
        ax.set_title(", ".join(flags), color="C3", fontsize=9)


def _plot_coronal(ax: Any, result: ScoreResult, volume: Volume) -> None:
    image = coronal_view(volume)
    z = volume.z_mm
    sx = volume.spacing_mm[2]
    extent = (
        0.0,
        image.shape[1] * sx,
        float(z[0]),
        float(z[-1]) if z.size > 1 else float(z[0]) + 1,
    )
    ax.imshow(image, cmap="gray", origin="lower", extent=extent, aspect="auto")
    overlay = np.repeat(_region_rgba(result, volume)[:, None, :], 8, axis=1)
    ax.imshow(overlay, origin="lower", extent=extent, aspect="auto")
    handles = [_patch(colour, name) for name, colour in REGION_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("z (mm)")
    ax.set_title("coronal view, coloured by body region", fontsize=9)


def _patch(colour: tuple[float, float, float], label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, alpha=0.6, label=label)


def write_png(
    result: ScoreResult, path: str | os.PathLike[str], volume: Volume | None = None
) -> Path:
    """Render and write the PNG atomically."""
    return atomic_write_bytes(path, render_png(result, volume))
