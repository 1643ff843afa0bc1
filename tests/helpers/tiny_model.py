"""Build tiny randomly initialised model packages for tests (no download, < 1 s for "light").

``make_tiny_package(tmp_path)`` writes a complete package (config.json, model.pt, model.onnx,
inference-settings.json, model-card.md) whose inference settings use the published bpreg score
scale for a handful of landmarks. The weights are random, so scores are meaningless but
deterministic for a given ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bodyscore.settings import InferenceSettings

# (raw mean, transformed mean) of a few landmarks of bpreg's public model (train_val table).
_LANDMARKS: dict[str, tuple[float, float]] = {
    "pelvis_start": (-2.6928066412607827, 0.0),
    "femur_end": (-1.578836091229173, 13.616),
    "L5": (-0.60401938654281, 25.532),
    "pelvis_end": (-0.33465640983160805, 28.824),
    "Th12": (0.9848121526673084, 44.952),
    "lung_start": (0.9185906512449022, 44.143),
    "liver_end": (1.7642367219520827, 54.479),
    "lung_end": (3.474900489442804, 75.389),
    "Th1": (3.5080166928908403, 75.794),
    "teeth": (4.417317072550456, 86.908),
    "C1": (4.607597214835031, 89.234),
    "eyes_end": (5.488396673491507, 100.0),
    "head_end": (6.12293062210083, 107.756),
}

TINY_WIDTHS = (4, 8, 8, 16, 16)


def tiny_settings_dict() -> dict[str, Any]:
    """bpreg-format ``inference-settings.json`` content with the public model's scale."""
    original = {k: {"mean": raw, "std": 0.1} for k, (raw, _) in _LANDMARKS.items()}
    transformed = {k: {"mean": score, "std": 1.5} for k, (_, score) in _LANDMARKS.items()}
    return {
        "slope_mean": 0.11943406374035223,
        "slope_median": 0.11979852486475727,
        "slope_std": 0.021170553460307634,
        "tangential_slope_mean": 0.11707229310886133,
        "upper_quantile_tangential_slope": 0.20596208291836363,
        "lower_quantile_tangential_slope": 0.010051471015287916,
        "lookuptable_train_val": {"original": original, "transformed": transformed},
        "settings": {
            "upper_tangential_quantile": 0.995,
            "lower_tangential_quantile": 0.005,
            "start-landmark": "pelvis_start",
            "end-landmark": "eyes_end",
        },
    }


def tiny_config(backbone: str = "light") -> dict[str, Any]:
    """``config.json`` content of a tiny package (bpreg keys plus bodyscore's)."""
    config: dict[str, Any] = {
        "base_model": "vgg" if backbone == "vgg" else "light",
        "model_name": f"tiny-{backbone}",
        "model_version": "0.0-test",
        "licence": "CC0-1.0",
        "alpha": 0,
        "lr": 1e-4,
        "batch_size": 64,
    }
    if backbone != "vgg":
        config["backbone"] = {"widths": list(TINY_WIDTHS), "convs_per_stage": 1}
    return config


def make_tiny_package(
    tmp_path: Path, *, backbone: str = "light", seed: int = 0, export_onnx: bool = True
) -> Path:
    """Write a random model package into ``tmp_path / f"tiny-{backbone}-{seed}"``.

    Parameters
    ----------
    tmp_path : pathlib.Path
        Parent folder (pytest's ``tmp_path``).
    backbone : {"light", "vgg"}
        ``"light"``: a ~10 k-parameter light network; ``"vgg"``: bpreg's full VGG16 (60 MB,
        slow to export).
    seed : int
        torch seed of the random weights.
    export_onnx : bool
        Also write ``model.onnx``.

    Returns
    -------
    pathlib.Path
        The package folder.
    """
    import torch

    from bodyscore.model.network import build_network
    from bodyscore.model.package import save_package

    config = tiny_config(backbone)
    torch.manual_seed(seed)
    network = build_network(config)
    settings = InferenceSettings.from_bpreg_dict(tiny_settings_dict())
    folder = Path(tmp_path) / f"tiny-{backbone}-{seed}"
    save_package(
        folder,
        state_dict=network.state_dict(),
        config=config,
        settings=settings,
        model_card="# tiny test model\n\nRandom weights; for tests only.\n",
        export_onnx=export_onnx,
    )
    return folder
