"""Tests of bodyscore.inference: chunked raw-score inference and predict()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bodyscore.inference import RawScores, predict, predict_raw_scores
from bodyscore.model import load_model
from bodyscore.preprocess import preprocess_slices
from bodyscore.volume import Volume

SRC = Path(__file__).resolve().parents[1] / "src"


def _volume(n: int = 9, *, flip: bool = False) -> Volume:
    rng = np.random.default_rng(5)
    array = rng.integers(-1000, 1200, size=(n, 80, 90)).astype(np.int16)
    array[0] = -1024  # an empty (air only) slice
    affine = np.diag([2.5, 2.5, 3.0, 1.0])
    if flip:
        affine[2, 2] = -3.0
    return Volume(array=array, spacing_mm=(3.0, 2.5, 2.5), affine=affine, source="synthetic")


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def _run_in_fresh_interpreter(code: str) -> None:
    """Run ``code`` in a new Python process (clean ``sys.modules``); fail with its stderr."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_raw_scores_equal_direct_prediction_for_any_batch_size(model):
    volume = _volume()
    direct = model.predict_raw(preprocess_slices(volume.array, pixel_spacing_mm=(2.5, 2.5)))
    calls = []
    for batch_size in (1, 4, 64):
        scores = predict_raw_scores(volume, model, batch_size=batch_size,
                                    progress=lambda d, t: calls.append((d, t)))
        assert isinstance(scores, RawScores)
        np.testing.assert_allclose(scores.raw, direct, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(scores.empty, [True] + [False] * 8)
    assert calls[:3] == [(1, 9), (2, 9), (3, 9)]
    assert calls[-1] == (9, 9)


def test_raw_scores_are_in_canonical_order(model):
    stored_head_first = _volume(flip=True)
    scores = predict_raw_scores(stored_head_first, model, batch_size=4)
    reference = predict_raw_scores(_volume(), model, batch_size=4)
    np.testing.assert_allclose(scores.raw, reference.raw[::-1], atol=1e-6)
    assert scores.empty[-1]
    assert not scores.empty[0]


def test_raw_scores_validation():
    with pytest.raises(ValueError, match="differ in length"):
        RawScores(raw=np.zeros(3), empty=np.zeros(2, bool))


def test_predict_volume_gives_score_result(model):
    pytest.importorskip("bodyscore.assemble")
    from bodyscore.result import ScoreResult

    result = predict(_volume(), model, batch_size=4)
    assert isinstance(result, ScoreResult)


def test_predict_reads_files(tiny_model_dir, ct_dir):
    import bodyscore.io

    if not hasattr(bodyscore.io, "read_volume"):
        pytest.skip("bodyscore.io.read_volume not available yet")
    result = predict(ct_dir / "ts_petct_slab.nii.gz", tiny_model_dir)
    assert len(result.to_dict()["unprocessed slice scores"]) == 20


def test_scoring_a_nifti_file_imports_no_scipy_ndimage_dicom_reader_or_download(tmp_path):
    """Issue 18: each of these imports costs a tenth of a second or more per process."""
    code = (
        "import sys, numpy as np\n"
        "from bodyscore.cli import main\n"
        "from bodyscore.io import volume_from_array, write_nifti\n"
        "ct = np.full((12, 64, 64), -1000, np.int16); ct[:, 16:48, 16:48] = 40\n"
        f"path = {str(tmp_path / 'ct.nii.gz')!r}\n"
        "write_nifti(volume_from_array(ct, (5.0, 2.0, 2.0)), path)\n"
        f"assert main(['predict', path, '-o', {str(tmp_path / 'out')!r}]) == 0\n"
        "loaded = [m for m in ('scipy.ndimage', 'bodyscore.io.dicom', 'bodyscore.io.crop_writer',\n"
        "          'bodyscore.model.download', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    _run_in_fresh_interpreter(code)


def test_import_bodyscore_and_onnx_inference_do_not_import_torch(tiny_model_dir):
    code = (
        "import sys, numpy as np, bodyscore\n"
        "from bodyscore.model import load_model\n"
        "import bodyscore.inference, bodyscore.preprocess\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        f"m = load_model({str(tiny_model_dir)!r}, backend='onnx')\n"
        "m.predict_raw(np.full((2, 1, 128, 128), -1, np.float32))\n"
        "assert 'torch' not in sys.modules, 'onnx inference'\n"
    )
    _run_in_fresh_interpreter(code)
