"""Streaming NIfTI reading: the fast inflater, its zlib fallback, slabs, and streamed scoring."""

from __future__ import annotations

import gzip
import sys
import tracemalloc
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.errors import InputError
from bodyscore.inference import predict, predict_raw_scores, predict_raw_scores_streamed
from bodyscore.io import NiftiSlabs, open_slabs, read_volume
from bodyscore.io._inflate import inflater
from bodyscore.volume import VolumeGeometry

UNLABELLED = ("ibsi_sts042_legs", "ibsi_sts047_legs", "tcgalihc_bca3kf_abdomen", "vhf_feet")


def _nibabel_canonical(path: Path) -> np.ndarray:
    """What nibabel reads, as (z, y, x) in the closest RAS+ layout."""
    canonical = nib.as_closest_canonical(nib.load(str(path)))
    return np.asanyarray(canonical.dataobj).transpose(2, 1, 0)


@pytest.fixture(params=["isal", "zlib"])
def inflater_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the fast inflater and with the standard library's (isal hidden)."""
    if request.param == "isal":
        pytest.importorskip("isal")
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # `from isal import ...` → ImportError
    return str(request.param)


def _write(path: Path, data: np.ndarray, affine: np.ndarray, **header: float) -> Path:
    img = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


def test_inflater_falls_back_to_zlib(inflater_kind: str) -> None:
    module, errors = inflater()
    if inflater_kind == "zlib":
        assert module is zlib
        assert errors == (zlib.error,)
    else:
        assert module.__name__ == "isal.isal_zlib"


def test_shared_volumes_bit_identical_to_nibabel(ct_dir: Path, inflater_kind: str) -> None:
    files = sorted(ct_dir.glob("*.nii.gz"))
    unlabelled = ct_dir.parent / "ct-unlabelled"
    files += [unlabelled / f"{name}.nii.gz" for name in UNLABELLED
              if (unlabelled / f"{name}.nii.gz").is_file()]
    assert len(files) >= 21
    for file in files:
        ours = read_volume(file).array
        theirs = _nibabel_canonical(file)
        np.testing.assert_array_equal(ours, theirs, err_msg=file.name)
        if theirs.dtype == np.int16:
            assert ours.dtype == np.int16
            assert ours.tobytes() == np.ascontiguousarray(theirs).tobytes(), file.name


def _slabs_array(slabs: NiftiSlabs, n: int) -> np.ndarray:
    geometry = slabs.geometry
    out = np.zeros(geometry.shape, dtype=np.float64)
    seen = np.zeros(geometry.n_slices, dtype=int)
    for indices, slab in slabs.slabs(n):
        assert slab.shape[0] == indices.size <= n
        assert np.all(np.diff(indices) == 1)
        out[indices] = slab
        seen[indices] += 1
    assert np.all(seen == 1)
    return out


@pytest.mark.parametrize("name", ["ts_petct_slab", "ge_tilt_head", "crlm1004_abdomen"])
def test_slabs_equal_the_whole_read(ct_dir: Path, name: str) -> None:
    path = ct_dir / f"{name}.nii.gz"
    slabs = open_slabs(path)
    assert slabs is not None
    volume = read_volume(path)
    np.testing.assert_array_equal(_slabs_array(slabs, 7), volume.array)
    geometry = slabs.geometry
    expected = VolumeGeometry.of(volume)
    assert geometry.shape == expected.shape
    np.testing.assert_allclose(geometry.affine, expected.affine)
    np.testing.assert_array_equal(geometry.z_mm, expected.z_mm)
    np.testing.assert_array_equal(geometry.slice_order, expected.slice_order)
    assert geometry.spacing_mm == expected.spacing_mm
    assert dict(geometry.meta) == dict(volume.meta)
    assert geometry.warnings == volume.warnings


@pytest.mark.parametrize(
    "flips", [(1, 1, 1), (-1, 1, -1), (1, -1, -1), "swap-ij"], ids=str
)
def test_slabs_of_reoriented_files(tmp_path: Path, flips: object) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(-1000, 2000, size=(9, 7, 11)).astype(np.int16)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    if flips == "swap-ij":  # file i runs anterior, j runs right
        affine = np.array([[0, 0.9, 0, 0], [0.8, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1.0]])
    else:
        affine[:3, :3] *= np.asarray(flips, dtype=float)
    path = _write(tmp_path / "r.nii.gz", data, affine)
    slabs = NiftiSlabs(path)
    assert slabs.streamable
    volume = read_volume(path)
    np.testing.assert_array_equal(_slabs_array(slabs, 4), volume.array)
    np.testing.assert_array_equal(slabs.geometry.slice_order, volume.slice_order)
    assert slabs.geometry.shape == volume.shape


def test_scaled_float_data_with_nan_and_big_endian(tmp_path: Path) -> None:
    data = np.linspace(-900, 900, 6 * 5 * 8, dtype=">f4").reshape(6, 5, 8)
    data[1, 2, 3] = np.nan
    path = _write(tmp_path / "f.nii.gz", data, np.diag([1.0, 1.0, 3.0, 1.0]),
                  scl_slope=2.0, scl_inter=-10.0)
    volume = read_volume(path)
    assert volume.array.dtype == np.float32
    assert volume.warnings == ("1 non-finite voxels (NaN/inf) replaced by -1024 HU",)
    slabs = NiftiSlabs(path)
    np.testing.assert_array_equal(_slabs_array(slabs, 3), volume.array)
    assert slabs.geometry.warnings == volume.warnings
    expected = np.nan_to_num(_nibabel_canonical(path), nan=-1024)
    np.testing.assert_allclose(volume.array, expected, rtol=1e-6)


def test_sagittal_slice_axis_is_not_streamed(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), dtype=np.int16)
    affine = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    path = _write(tmp_path / "s.nii.gz", data, affine)  # file i runs superior
    assert not NiftiSlabs(path).streamable
    assert open_slabs(path) is None
    with pytest.raises(InputError, match="third axis"):
        next(NiftiSlabs(path).slabs(2))


def _good_gz(tmp_path: Path) -> tuple[Path, bytes]:
    data = np.arange(20 * 16 * 12, dtype=np.int16).reshape(20, 16, 12) % 1500 - 1000
    path = _write(tmp_path / "good.nii.gz", data, np.diag([1.0, 1.0, 2.0, 1.0]))
    return path, path.read_bytes()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "gzip stream ends early; the file is truncated"),
        (lambda raw: raw[:-8] + bytes([raw[-8] ^ 0xFF]) + raw[-7:], "corrupt"),
        (lambda raw: raw[:-2] + bytes([raw[-2] ^ 0x01]) + raw[-1:], "corrupt"),  # length field
        (lambda raw: raw + gzip.compress(b"\0" * 3_000_000), "more data than the header"),
    ],
    ids=["truncated", "bad-crc", "bad-length", "too-much-data"],
)
def test_damaged_streams_same_errors_both_inflaters(
    tmp_path: Path, inflater_kind: str, damage: object, message: str
) -> None:
    _, raw = _good_gz(tmp_path)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(damage(raw))  # type: ignore[operator]
    with pytest.raises(InputError, match=message) as whole:
        read_volume(bad)
    assert str(whole.value).startswith(str(bad))
    with pytest.raises(InputError) as streamed:
        for _ in NiftiSlabs(bad).slabs(3):
            pass
    assert str(streamed.value) == str(whole.value)


def test_concatenated_members_and_zero_padding(tmp_path: Path, inflater_kind: str) -> None:
    path, raw = _good_gz(tmp_path)
    inflated = gzip.decompress(raw)
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(inflated[:5000]) + gzip.compress(inflated[5000:]) + b"\0" * 64)
    np.testing.assert_array_equal(read_volume(multi).array, read_volume(path).array)


def test_plain_nii_streams(tmp_path: Path) -> None:
    path, raw = _good_gz(tmp_path)
    plain = tmp_path / "plain.nii"
    plain.write_bytes(gzip.decompress(raw))
    slabs = NiftiSlabs(plain)
    np.testing.assert_array_equal(_slabs_array(slabs, 6), read_volume(path).array)


def test_streamed_scores_equal_scores_of_the_read_volume(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from bodyscore.model import load_model

    model = load_model(tiny_model_dir)
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1500, size=(40, 36, 70)).astype(np.int16)
    data[:, :, :5] = -1000  # empty slices
    path = _write(tmp_path / "v.nii.gz", data, np.diag([-1.5, 1.5, -2.0, 1.0]))  # LPI: flipped
    raw, geometry = predict_raw_scores_streamed(NiftiSlabs(path), model, batch_size=16)
    expected = predict_raw_scores(read_volume(path), model, batch_size=16)
    np.testing.assert_allclose(raw.raw, expected.raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(raw.empty, expected.empty)
    assert raw.empty[-5:].all()  # file k 0..4 are the most superior slices
    assert not raw.empty[:-5].any()
    assert geometry.shape == (70, 36, 40)
    streamed = predict(path, model, batch_size=16)
    whole = predict(read_volume(path), model, batch_size=16)
    assert streamed.input == whole.input
    np.testing.assert_allclose(np.asarray(streamed.cleaned, dtype=float),
                               np.asarray(whole.cleaned, dtype=float), atol=1e-4, equal_nan=True)


def test_streamed_scoring_never_holds_the_volume(tmp_path: Path, tiny_model_dir: Path) -> None:
    from bodyscore.model import load_model

    model = load_model(tiny_model_dir)
    data = np.full((256, 256, 400), -1000, dtype=np.int16)  # 52 MB of int16
    data[60:200, 60:200, :] = 40
    path = _write(tmp_path / "big.nii.gz", data, np.diag([0.9, 0.9, 1.0, 1.0]))
    volume_bytes = data.nbytes
    del data
    tracemalloc.start()
    try:
        predict(path, model, batch_size=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * volume_bytes, f"peak {peak / 1e6:.1f} MB, volume {volume_bytes / 1e6} MB"


def test_streamed_predict_reports_damage_found_mid_stream(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from bodyscore.model import load_model

    rng = np.random.default_rng(1)
    data = rng.integers(-1000, 1500, size=(40, 36, 90)).astype(np.int16)
    raw = _write(tmp_path / "v.nii.gz", data, np.diag([1.0, 1.0, 2.0, 1.0])).read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: int(len(raw) * 0.8)])  # the header and most slabs are fine
    with pytest.raises(InputError, match="ends early") as streamed:
        predict(cut, load_model(tiny_model_dir), batch_size=8)
    with pytest.raises(InputError) as whole:
        read_volume(cut)
    assert str(streamed.value) == str(whole.value)


def test_streaming_follows_the_packages_input_grid(tmp_path: Path) -> None:
    """A package with 64² input at 7 mm (the next default's grid) is streamed on that grid."""
    pytest.importorskip("torch")
    import torch

    from bodyscore.model import load_model
    from bodyscore.model.network import build_network
    from bodyscore.model.package import save_package
    from bodyscore.settings import InferenceSettings
    from helpers.tiny_model import tiny_config, tiny_settings_dict

    config = {**tiny_config("light"), "preprocessing": {"size": 64, "target_spacing_mm": 7.0}}
    torch.manual_seed(0)
    folder = save_package(tmp_path / "grid64", state_dict=build_network(config).state_dict(),
                          config=config,
                          settings=InferenceSettings.from_bpreg_dict(tiny_settings_dict())).path
    model = load_model(folder)
    seen: list[tuple[int, ...]] = []
    predict_raw = model.predict_raw

    def spy(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape[1:])
        return predict_raw(batch)

    model.predict_raw = spy  # type: ignore[method-assign]
    data = np.random.default_rng(2).integers(-1000, 1500, size=(300, 280, 24)).astype(np.int16)
    path = _write(tmp_path / "v.nii.gz", data, np.diag([1.2, 1.2, 3.0, 1.0]))
    raw, _ = predict_raw_scores_streamed(NiftiSlabs(path), model, batch_size=8)
    assert set(seen) == {(1, 64, 64)}
    expected = predict_raw_scores(read_volume(path), model, batch_size=8)
    np.testing.assert_allclose(raw.raw, expected.raw, rtol=1e-5, atol=1e-6)
