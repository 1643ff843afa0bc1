"""Build the corpus of broken and hostile inputs (issue 9) into a folder.

Every case is a small file or folder (most a few kB) made from the shared real CT data
(``../shared/data/ct``: a 4x in-plane downsampled block of ``pyradiomics_lung1_chest.nii.gz`` and
the header of ``dicom/ts_petct_slab``) or, when that is absent, from a synthetic ellipse phantom.
Each :class:`Case` carries its exact expected outcome (:class:`Expect`): a result of a given shape
with given warnings, or a named :mod:`bodyscore.errors` exception whose message names the file
and the problem. ``tests/corpus/test_corpus.py`` builds the corpus once per session and checks
every case; ``python tests/corpus/make_corpus.py OUTDIR`` writes it (with ``manifest.json``) for
manual inspection or fuzzing seeds.
"""

from __future__ import annotations

import copy
import gzip
import json
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bodyscore.errors import (
    BodyscoreError,
    DicomSeriesError,
    InputError,
    MultipleSeriesError,
    UnsupportedModalityError,
)

__all__ = ["CASES", "Case", "Expect", "Sources", "build_corpus", "load_sources"]

SHARED_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct"
NX = NY = 32
NZ = 12
SPACING_ZYX = (5.0, 9.0, 9.0)


# -- expected outcomes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """Exact expected outcome of reading a case.

    Attributes
    ----------
    error : type or None
        The bodyscore exception type expected (``None``: a result is expected).
    message : tuple of str
        Lower-case substrings the error message must contain (besides the file name).
    shape : tuple of int or None
        Canonical (z, y, x) shape of a result.
    warnings : tuple of str
        Lower-case substrings that must each appear in one of the volume warnings; a result
        with an empty tuple must have no warnings at all.
    end_to_end : bool
        Also run ``bodyscore predict`` on it and check the CLI outcome.
    """

    error: type[BodyscoreError] | None = None
    message: tuple[str, ...] = ()
    shape: tuple[int, int, int] | None = None
    warnings: tuple[str, ...] = ()
    end_to_end: bool = False


def ok(
    shape: tuple[int, int, int] = (NZ, NY, NX), *warnings: str, end_to_end: bool = False
) -> Expect:
    """A result of ``shape`` with exactly these warnings (substrings)."""
    return Expect(shape=shape, warnings=warnings, end_to_end=end_to_end)


def fails(
    error: type[BodyscoreError], *message: str, end_to_end: bool = False
) -> Expect:
    """An error of type ``error`` whose message contains ``message`` substrings."""
    return Expect(error=error, message=message, end_to_end=end_to_end)


@dataclass(frozen=True)
class Sources:
    """Small source arrays every case is made from.

    Attributes
    ----------
    ct_xyz : numpy.ndarray, shape (32, 32, 12), int16
        Real chest CT in HU (NIfTI voxel order i, j, k), 9 x 9 x 5 mm voxels.
    dicom_template : pydicom.Dataset or None
        Header of a real CT file (private tags and sequences removed); None without shared data.
    """

    ct_xyz: np.ndarray
    dicom_template: object | None = field(default=None)


@dataclass(frozen=True)
class Case:
    """One corpus case: how to build it and what reading it must give."""

    name: str
    fmt: str
    category: str
    build: Callable[[Path, Sources], Path]
    expect: Expect


def _phantom() -> np.ndarray:
    xx, yy = np.mgrid[:NX, :NY]
    body = ((xx - 16) / 13.0) ** 2 + ((yy - 16) / 9.0) ** 2 < 1
    data = np.full((NX, NY, NZ), -1000, dtype=np.int16)
    data[body] = 40
    data[14:18, 18:22, :] = 700
    return data


def load_sources() -> Sources:
    """Load the source arrays from the shared data, or a phantom when it is absent."""
    nifti = SHARED_CT / "pyradiomics_lung1_chest.nii.gz"
    dicom = SHARED_CT / "dicom" / "ts_petct_slab"
    if not nifti.is_file():
        return Sources(ct_xyz=_phantom())
    import nibabel as nib
    import pydicom

    data = np.asarray(nib.load(str(nifti)).dataobj, dtype=np.float32)  # 128 x 128 x 48
    block = data[:, :, 18 : 18 + NZ].reshape(NX, 4, NY, 4, NZ).mean(axis=(1, 3))
    template = None
    files = sorted(dicom.glob("*.dcm"))
    if files:
        template = pydicom.dcmread(files[0], stop_before_pixels=True)
        template.remove_private_tags()
        for elem in list(template):
            if elem.VR == "SQ":
                del template[elem.tag]
    return Sources(ct_xyz=np.round(block).astype(np.int16), dicom_template=template)


# -- NIfTI ----------------------------------------------------------------------------------------
def _affine(spacing_zyx: tuple[float, float, float] = SPACING_ZYX) -> np.ndarray:
    return np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, _affine() if affine is None else affine)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _patch_header(path: Path, patches: dict[int, bytes]) -> Path:
    """Overwrite bytes of an uncompressed NIfTI-1 header at the given offsets."""
    raw = bytearray(path.read_bytes())
    for offset, value in patches.items():
        raw[offset : offset + len(value)] = value
    path.write_bytes(bytes(raw))
    return path


def _i16(*values: int) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def _f32(*values: float) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


NO_XFORM = {252: _i16(0, 0)}  # qform_code = sform_code = 0: the affine comes from pixdim


def _nifti_case(
    name: str, category: str, expect: Expect, make: Callable[[Path, Sources], Path]
) -> Case:
    return Case(name, "nifti", category, make, expect)


def _ct(s: Sources) -> np.ndarray:
    return s.ct_xyz.copy()


def _plain(name: str, data: Callable[[Sources], np.ndarray], **kw: object) -> Callable[..., Path]:
    def make(d: Path, s: Sources) -> Path:
        return _save_nifti(d / name, data(s), **kw)  # type: ignore[arg-type]

    return make


def _gz_bytes(d: Path, s: Sources) -> bytes:
    return _save_nifti(d / "_src.nii.gz", _ct(s)).read_bytes()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _flip_middle(data: bytes, start: int = 40) -> bytes:
    raw = bytearray(data)
    for i in range(start, len(raw) - 40, 97):
        raw[i] ^= 0x5A
    return bytes(raw)


def _bad_crc(data: bytes) -> bytes:
    raw = bytearray(data)
    raw[-8] ^= 0xFF  # gzip trailer: CRC32
    return bytes(raw)


def _uncompressed(d: Path, s: Sources, name: str, data: np.ndarray | None = None) -> Path:
    return _save_nifti(d / name, _ct(s) if data is None else data)


def _shear_affine() -> np.ndarray:
    aff = _affine()
    aff[0, 2] = 5.0  # x grows by 5 mm per slice: 45 degrees between the k axis and z
    return aff


def _oblique_affine() -> np.ndarray:
    angle = np.radians(20)
    rot = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([9.0, 9.0, 5.0])
    return aff


def _with_values(*values: tuple[tuple[slice, ...], float]) -> Callable[[Sources], np.ndarray]:
    def data(s: Sources) -> np.ndarray:
        out = _ct(s).astype(np.float32)
        for index, value in values:
            out[index] = value
        return out

    return data


def _scaled(d: Path, s: Sources, name: str, slope: float) -> Path:
    return _patch_header(_uncompressed(d, s, name), {112: _f32(slope, 0.0)})


def _huge_header(d: Path, name: str, dims: tuple[int, ...], *, gz: bool) -> Path:
    """A valid header declaring ``dims`` (int16) followed by 4 kB of data."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header["dim"][0] = len(dims)
    header["dim"][1 : 1 + len(dims)] = dims
    header["pixdim"][1:4] = 1.0
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + np.zeros(2048, np.int16).tobytes()
    return _write(d / name, gzip.compress(raw) if gz else raw)


NIFTI_CASES: list[Case] = [
    _nifti_case("nifti_reference", "reference", ok(end_to_end=True), _plain("ref.nii.gz", _ct)),
    _nifti_case(
        "nifti_gz_truncated_half", "truncated/corrupted gzip",
        fails(InputError, "truncated"),
        lambda d, s: _write(d / "half.nii.gz", _gz_bytes(d, s)[: len(_gz_bytes(d, s)) // 2]),
    ),
    _nifti_case(
        "nifti_gz_truncated_in_header", "truncated/corrupted gzip",
        fails(InputError, "not a readable nifti"),
        lambda d, s: _write(d / "stub.nii.gz", _gz_bytes(d, s)[:60]),
    ),
    _nifti_case(
        "nifti_gz_corrupted_stream", "truncated/corrupted gzip",
        fails(InputError, "nifti"),
        lambda d, s: _write(d / "bitrot.nii.gz", _flip_middle(_gz_bytes(d, s))),
    ),
    _nifti_case(
        "nifti_gz_bad_crc", "truncated/corrupted gzip",
        fails(InputError, "damaged"),
        lambda d, s: _write(d / "badcrc.nii.gz", _bad_crc(_gz_bytes(d, s))),
    ),
    _nifti_case(
        "nifti_gz_suffix_but_plain", "truncated/corrupted gzip",
        fails(InputError, "not a readable nifti"),
        lambda d, s: _write(
            d / "plain.nii.gz", _uncompressed(d, s, "_plain_src.nii").read_bytes()
        ),
    ),
    _nifti_case(
        "nifti_empty_file", "truncated/corrupted gzip",
        fails(InputError, "not a readable nifti"),
        lambda d, s: _write(d / "empty.nii", b""),
    ),
    _nifti_case(
        "nifti_random_bytes", "truncated/corrupted gzip",
        fails(InputError, "not a readable nifti"),
        lambda d, s: _write(d / "noise.nii", np.random.default_rng(0).bytes(4000)),
    ),
    _nifti_case(
        "nifti_dims_exceed_data", "header dims disagree with data",
        fails(InputError, "truncated or the header is corrupt"),
        lambda d, s: _patch_header(_uncompressed(d, s, "dims_big.nii"), {46: _i16(40)}),
    ),
    _nifti_case(
        "nifti_gz_dims_exceed_data", "header dims disagree with data",
        fails(InputError, "damaged"),
        lambda d, s: _write(
            d / "dims_big.nii.gz",
            gzip.compress(
                _patch_header(_uncompressed(d, s, "_dims.nii"), {46: _i16(40)}).read_bytes()
            ),
        ),
    ),
    _nifti_case(
        "nifti_dims_below_data", "header dims disagree with data",
        ok((6, NY, NX)),
        lambda d, s: _patch_header(_uncompressed(d, s, "dims_small.nii"), {46: _i16(6)}),
    ),
    _nifti_case(
        "nifti_negative_dim", "header dims disagree with data",
        fails(InputError, "nifti"),
        lambda d, s: _patch_header(_uncompressed(d, s, "negdim.nii"), {46: _i16(-5)}),
    ),
    _nifti_case(
        "nifti_zero_dim", "header dims disagree with data",
        fails(InputError, "empty axis"),
        lambda d, s: _patch_header(_uncompressed(d, s, "zerodim.nii"), {46: _i16(0)}),
    ),
    _nifti_case(
        "nifti_vox_offset_past_end", "header dims disagree with data",
        fails(InputError, "damaged"),
        lambda d, s: _patch_header(_uncompressed(d, s, "offset.nii"), {108: _f32(1e6)}),
    ),
    _nifti_case(
        "nifti_bad_magic", "truncated/corrupted gzip",
        fails(InputError, "nifti"),
        lambda d, s: _patch_header(_uncompressed(d, s, "magic.nii"), {344: b"xyz\0"}),
    ),
    _nifti_case(
        "nifti_zero_spacing", "zero/negative/NaN spacing",
        fails(InputError, "zero or nan"),
        lambda d, s: _patch_header(
            _uncompressed(d, s, "zero_dz.nii"), {88: _f32(0.0), **NO_XFORM}
        ),
    ),
    _nifti_case(
        "nifti_nan_spacing", "zero/negative/NaN spacing",
        fails(InputError, "zero or nan"),
        lambda d, s: _patch_header(
            _uncompressed(d, s, "nan_dx.nii"), {80: _f32(float("nan")), **NO_XFORM}
        ),
    ),
    _nifti_case(
        "nifti_negative_spacing_no_xform", "zero/negative/NaN spacing",
        ok(),
        lambda d, s: _patch_header(
            _uncompressed(d, s, "neg_dz.nii"), {88: _f32(-5.0), **NO_XFORM}
        ),
    ),
    _nifti_case(
        "nifti_singular_affine", "non-orthogonal/singular affine",
        fails(InputError, "singular"),
        lambda d, s: _patch_header(
            _uncompressed(d, s, "singular.nii"), {252: _i16(0, 1), 312: _f32(0, 0, 0, 0)}
        ),
    ),
    _nifti_case(
        "nifti_nan_affine", "non-orthogonal/singular affine",
        fails(InputError, "not finite"),
        lambda d, s: _patch_header(
            _uncompressed(d, s, "nan_sform.nii"),
            {252: _i16(0, 1), 280: _f32(float("nan"))},
        ),
    ),
    _nifti_case(
        "nifti_sheared_affine", "non-orthogonal/singular affine",
        ok((NZ, NY, NX), "not orthogonal"),
        _plain("sheared.nii.gz", _ct, affine=_shear_affine()),
    ),
    _nifti_case(
        "nifti_oblique_affine", "non-orthogonal/singular affine",
        ok(),
        _plain("oblique.nii.gz", _ct, affine=_oblique_affine()),
    ),
    _nifti_case(
        "nifti_some_nan_voxels", "NaN/inf/extreme voxel values",
        ok((NZ, NY, NX), "non-finite", end_to_end=True),
        _plain("some_nan.nii.gz", _with_values(((slice(3, 9), slice(4, 6), slice(2, 3)), np.nan))),
    ),
    _nifti_case(
        "nifti_inf_voxels", "NaN/inf/extreme voxel values",
        ok((NZ, NY, NX), "non-finite"),
        _plain("inf.nii.gz", _with_values(((slice(0, 2), slice(0, 2), slice(None)), -np.inf))),
    ),
    _nifti_case(
        "nifti_all_nan", "NaN/inf/extreme voxel values",
        fails(InputError, "every voxel is nan"),
        _plain("all_nan.nii.gz", lambda s: np.full((NX, NY, NZ), np.nan, np.float32)),
    ),
    _nifti_case(
        "nifti_extreme_float_values", "NaN/inf/extreme voxel values",
        ok(end_to_end=True),
        _plain("extreme.nii.gz", _with_values(((slice(0, 4), slice(None), slice(None)), 3e38),
                                             ((slice(4, 8), slice(None), slice(None)), -3e38))),
    ),
    _nifti_case(
        "nifti_slope_overflows_to_inf", "NaN/inf/extreme voxel values",
        ok((NZ, NY, NX), "non-finite"),
        lambda d, s: _scaled(d, s, "slope_inf.nii", 1e37),
    ),
    _nifti_case(
        "nifti_float64_data", "NaN/inf/extreme voxel values",
        ok(),
        _plain("f64.nii.gz", lambda s: _ct(s).astype(np.float64)),
    ),
    _nifti_case(
        "nifti_rgb_voxels", "NaN/inf/extreme voxel values",
        fails(InputError, "not a scalar intensity"),
        _plain("rgb.nii.gz", lambda s: np.zeros((NX, NY, NZ), dtype=[("R", "u1"), ("G", "u1"),
                                                                      ("B", "u1")])),
    ),
    _nifti_case(
        "nifti_all_air", "all-air/all-bone volumes",
        ok(end_to_end=True),
        _plain("air.nii.gz", lambda s: np.full((NX, NY, NZ), -1000, np.int16)),
    ),
    _nifti_case(
        "nifti_all_bone", "all-air/all-bone volumes",
        ok(end_to_end=True),
        _plain("bone.nii.gz", lambda s: np.full((NX, NY, NZ), 1500, np.int16)),
    ),
    *[
        _nifti_case(
            f"nifti_{n}_slices", "1-3 slices", ok((n, NY, NX), end_to_end=n == 1),
            _plain(f"n{n}.nii.gz", lambda s, n=n: _ct(s)[:, :, :n]),  # type: ignore[misc]
        )
        for n in (1, 2, 3)
    ],
    _nifti_case(
        "nifti_2d", "2D/4D", ok((1, NY, NX), "2-d image"),
        lambda d, s: _save_nifti(d / "flat.nii.gz", _ct(s)[:, :, 0], np.diag([9.0, 9, 1, 1])),
    ),
    _nifti_case(
        "nifti_4d_singleton", "2D/4D", ok(),
        _plain("t1.nii.gz", lambda s: _ct(s)[..., None]),
    ),
    _nifti_case(
        "nifti_4d_two_volumes", "2D/4D", fails(InputError, "4-d image", end_to_end=True),
        _plain("t2.nii.gz", lambda s: np.stack([_ct(s), _ct(s)], axis=-1)),
    ),
    _nifti_case(
        "nifti_1d", "2D/4D", fails(InputError, "1-d image"),
        _plain("line.nii.gz", lambda s: _ct(s)[:, 0, 0]),
    ),
    _nifti_case(
        "nifti_huge_dims_uncompressed", "huge header dims, little data",
        fails(InputError, "truncated or the header is corrupt"),
        lambda d, s: _huge_header(d, "huge.nii", (2000, 2000, 500), gz=False),
    ),
    _nifti_case(
        "nifti_huge_dims_gz", "huge header dims, little data",
        fails(InputError, "truncated or the header is corrupt"),
        lambda d, s: _huge_header(d, "huge.nii.gz", (2000, 2000, 500), gz=True),
    ),
    _nifti_case(
        "nifti_absurd_dims", "huge header dims, little data",
        fails(InputError, "header is probably corrupt"),
        lambda d, s: _huge_header(d, "absurd.nii.gz", (32767, 32767, 32767), gz=True),
    ),
]


# -- NRRD / MetaImage -----------------------------------------------------------------------------
def _nrrd_text(
    *,
    sizes: str = f"{NX} {NY} {NZ}",
    dimension: int = 3,
    directions: str = "(9,0,0) (0,9,0) (0,0,5)",
    encoding: str = "raw",
    data_file: str | None = None,
    kinds: str = "domain domain domain",
    type_: str = "short",
) -> bytes:
    lines = [
        "NRRD0004",
        f"type: {type_}",
        f"dimension: {dimension}",
        *(["space: left-posterior-superior"] if directions else []),
        f"sizes: {sizes}",
        f"space directions: {directions}" if directions else "spacings: 9 9",
        f"kinds: {kinds}",
        "endian: little",
        f"encoding: {encoding}",
        *(["space origin: (0,0,0)"] if directions else []),
    ]
    if data_file is not None:
        lines.append(f"data file: {data_file}")
    return ("\n".join(lines) + "\n\n").encode()


def _zyx_bytes(s: Sources) -> bytes:
    return np.ascontiguousarray(s.ct_xyz.transpose(2, 1, 0)).astype("<i2").tobytes()


def _nrrd(name: str, *, data: Callable[[Sources], bytes] = _zyx_bytes,
          **header: str | int) -> Callable[[Path, Sources], Path]:
    def make(d: Path, s: Sources) -> Path:
        payload = data(s)
        if header.get("encoding") == "gzip":
            payload = gzip.compress(payload)
        return _write(d / name, _nrrd_text(**header) + payload)  # type: ignore[arg-type]

    return make


def _mha_text(
    *,
    dims: str = f"{NX} {NY} {NZ}",
    ndims: int = 3,
    spacing: str = "9 9 5",
    matrix: str = "1 0 0 0 1 0 0 0 1",
    compressed: bool = False,
    data_file: str = "LOCAL",
    extra: str = "",
) -> bytes:
    lines = [
        "ObjectType = Image",
        f"NDims = {ndims}",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compressed}",
        f"TransformMatrix = {matrix}",
        "Offset = 0 0 0",
        f"ElementSpacing = {spacing}",
        f"DimSize = {dims}",
        "ElementType = MET_SHORT",
        *([extra] if extra else []),
        f"ElementDataFile = {data_file}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _mha(name: str, *, data: Callable[[Sources], bytes] = _zyx_bytes,
         **header: str | int | bool) -> Callable[[Path, Sources], Path]:
    def make(d: Path, s: Sources) -> Path:
        payload = data(s)
        if header.get("compressed"):
            payload = zlib.compress(payload)
        return _write(d / name, _mha_text(**header) + payload)  # type: ignore[arg-type]

    return make


def _itk_case(name: str, category: str, expect: Expect,
              make: Callable[[Path, Sources], Path]) -> Case:
    return Case(name, "itk", category, make, expect)


def _truncate(
    make: Callable[[Path, Sources], Path], keep: float
) -> Callable[[Path, Sources], Path]:
    def wrapped(d: Path, s: Sources) -> Path:
        path = make(d, s)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return path

    return wrapped


def _nhdr_missing_data(d: Path, s: Sources) -> Path:
    return _write(d / "detached.nhdr", _nrrd_text(data_file="gone.raw"))


ITK_CASES: list[Case] = [
    _itk_case("nrrd_reference_gzip", "reference", ok(end_to_end=True),
              _nrrd("ref.nrrd", encoding="gzip")),
    _itk_case("mha_reference", "reference", ok(), _mha("ref.mha")),
    _itk_case("nrrd_gz_truncated", "truncated/corrupted gzip",
              fails(InputError, "damaged"), _truncate(_nrrd("cut.nrrd", encoding="gzip"), 0.5)),
    _itk_case("nrrd_gz_corrupted", "truncated/corrupted gzip", fails(InputError, "damaged"),
              lambda d, s: _write(d / "rot.nrrd", _nrrd_text(encoding="gzip")
                                  + _flip_middle(gzip.compress(_zyx_bytes(s)), 20))),
    _itk_case("mha_compressed_corrupted", "truncated/corrupted gzip",
              fails(InputError, "damaged"),
              lambda d, s: _write(d / "rot.mha", _mha_text(compressed=True)
                                  + _flip_middle(zlib.compress(_zyx_bytes(s)), 20))),
    _itk_case("nrrd_raw_sizes_exceed_data", "header dims disagree with data",
              fails(InputError, "truncated"), _nrrd("short.nrrd", sizes=f"{NX} {NY} 40")),
    _itk_case("mha_truncated", "header dims disagree with data",
              fails(InputError, "truncated"), _truncate(_mha("cut.mha"), 0.6)),
    _itk_case("nrrd_garbage_header", "truncated/corrupted gzip",
              fails(InputError, "not a readable image"),
              lambda d, s: _write(d / "junk.nrrd", b"NRRD0004\nthis: is\x00\xff not\n\n" * 3)),
    _itk_case("nhdr_missing_data_file", "header dims disagree with data",
              fails(InputError, "nhdr"), _nhdr_missing_data),
    _itk_case("mhd_missing_data_file", "header dims disagree with data",
              fails(InputError, "mhd"),
              lambda d, s: _write(d / "detached.mhd", _mha_text(data_file="gone.raw"))),
    _itk_case("nrrd_zero_spacing", "zero/negative/NaN spacing",
              fails(InputError, "nrrd"),
              _nrrd("zero.nrrd", directions="(9,0,0) (0,9,0) (0,0,0)")),
    _itk_case("nrrd_nan_spacing", "zero/negative/NaN spacing",
              fails(InputError, "nrrd"),
              _nrrd("nan.nrrd", directions="(9,0,0) (0,9,0) (0,0,nan)")),
    _itk_case("mha_zero_spacing", "zero/negative/NaN spacing",
              fails(InputError, "zero or nan"), _mha("zero.mha", spacing="9 9 0")),
    _itk_case("mha_negative_spacing", "zero/negative/NaN spacing",  # ITK: a flipped axis
              ok(), _mha("neg.mha", spacing="9 9 -5")),
    _itk_case("mha_singular_direction", "non-orthogonal/singular affine",
              fails(InputError, "singular"), _mha("sing.mha", matrix="1 0 0 0 1 0 0 0 0")),
    _itk_case("nrrd_sheared_directions", "non-orthogonal/singular affine",
              ok((NZ, NY, NX), "not orthogonal"),
              _nrrd("shear.nrrd", directions="(9,0,0) (0,9,0) (0,4,3)")),
    _itk_case("mha_float_nan", "NaN/inf/extreme voxel values",
              ok((NZ, NY, NX), "non-finite"),
              lambda d, s: _write(
                  d / "nan.mha",
                  _mha_text().replace(b"MET_SHORT", b"MET_FLOAT")
                  + np.where(np.arange(NX * NY * NZ) % 7 == 0, np.nan,
                             s.ct_xyz.transpose(2, 1, 0).ravel()).astype("<f4").tobytes())),
    _itk_case("nrrd_2d", "2D/4D", ok((1, NY, NX), "2-d image"),
              _nrrd("flat.nrrd", sizes=f"{NX} {NY}", dimension=2, directions="",
                    kinds="domain domain", data=lambda s: _zyx_bytes(s)[: NX * NY * 2])),
    _itk_case("mha_4d", "2D/4D", fails(InputError, "4-d image"),
              _mha("four.mha", ndims=4, dims=f"{NX} {NY} 6 2", spacing="9 9 5 1",
                   matrix="1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1")),
    _itk_case("nrrd_4d_list", "2D/4D", fails(InputError, "2 components per voxel"),
              _nrrd("four.nrrd", sizes=f"{NX} {NY} 6 2", dimension=4,
                    directions="(9,0,0) (0,9,0) (0,0,5) none",
                    kinds="domain domain domain list")),
    _itk_case("mha_vector_voxels", "NaN/inf/extreme voxel values",
              fails(InputError, "components per voxel"),
              _mha("vec.mha", extra="ElementNumberOfChannels = 2",
                   data=lambda s: _zyx_bytes(s) * 2)),
    _itk_case("nrrd_huge_sizes", "huge header dims, little data",
              fails(InputError, "header is probably corrupt"),
              _nrrd("huge.nrrd", sizes="40000 40000 40000", encoding="gzip")),
    _itk_case("mha_huge_dims", "huge header dims, little data",
              fails(InputError, "header is corrupt"),
              _mha("huge.mha", dims="1500 1500 900", compressed=True)),
]


# -- DICOM ----------------------------------------------------------------------------------------
_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def _uid(*parts: int | str) -> str:
    return _UID_ROOT + ".".join(str(p) for p in parts)


def _dicom_base(s: Sources) -> object:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    if s.dicom_template is not None:
        ds = copy.deepcopy(s.dicom_template)
    else:
        ds = Dataset()
        ds.PatientName = "Corpus^Case"
        ds.PatientID = "corpus"
        ds.StudyInstanceUID = _uid(1)
        ds.SOPClassUID = CTImageStorage
    assert isinstance(ds, pydicom.Dataset)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = NY, NX
    ds.PixelSpacing = [9.0, 9.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 5.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.SeriesDescription = "corpus"
    for keyword in ("NumberOfFrames", "SpacingBetweenSlices"):
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def _dicom_series(
    folder: Path,
    s: Sources,
    *,
    n: int = NZ,
    z_mm: list[float] | None = None,
    series: str = "1",
    modality: str = "CT",
    per_slice: Callable[[int, object], None] | None = None,
    name: Callable[[int], str] = lambda k: f"slice_{k:03d}.dcm",
) -> Path:
    """Write an uncompressed CT series of ``n`` 32 x 32 slices (real HU) into ``folder``."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    z = [5.0 * k for k in range(n)] if z_mm is None else z_mm
    base = _dicom_base(s)
    assert isinstance(base, pydicom.Dataset)
    for k, zk in enumerate(z):
        ds = copy.deepcopy(base)
        ds.Modality = modality
        ds.SeriesInstanceUID = _uid(2, series)
        ds.SOPInstanceUID = _uid(3, series, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-144.0, -144.0, float(zk)]
        hu = s.ct_xyz[:, :, k % s.ct_xyz.shape[2]].T  # (rows=y, cols=x)
        ds.PixelData = (hu.astype(np.int32) + 1024).astype("<i2").tobytes()
        if per_slice is not None:
            per_slice(k, ds)
        ds["PixelData"].VR = "OW"
        _save(folder / name(k), ds)
    return folder


def _save(path: Path, ds: object) -> None:
    """Write explicit VR little endian, whatever transfer syntax the file meta claims."""
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info

    with path.open("wb") as raw:
        fp = DicomFileLike(raw)
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)


def _dicom_case(name: str, category: str, expect: Expect,
                make: Callable[[Path, Sources], Path]) -> Case:
    return Case(name, "dicom", category, make, expect)


def _series_with(folder_name: str, **kw: object) -> Callable[[Path, Sources], Path]:
    def make(d: Path, s: Sources) -> Path:
        return _dicom_series(d / folder_name, s, **kw)  # type: ignore[arg-type]

    return make


def _drop(keyword: str, only: int | None = None) -> Callable[[int, object], None]:
    def edit(k: int, ds: object) -> None:
        if (only is None or k == only) and keyword in ds:  # type: ignore[operator]
            delattr(ds, keyword)

    return edit


def _set(keyword: str, value: object, only: int | None = None) -> Callable[[int, object], None]:
    def edit(k: int, ds: object) -> None:
        if only is None or k == only:
            setattr(ds, keyword, value)

    return edit


def _two_series(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "two_ct", s, n=6)
    return _dicom_series(folder, s, n=5, series="2", name=lambda k: f"b_{k:03d}.dcm")


def _ct_plus_others(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "ct_pt_mr", s)
    _dicom_series(folder, s, n=4, series="7", modality="PT", name=lambda k: f"pt_{k}.dcm")
    _dicom_series(folder, s, n=3, series="8", modality="MR", name=lambda k: f"mr_{k}.dcm")
    return folder


def _with_duplicates(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "dups", s)
    _dicom_series(folder, s, n=3, name=lambda k: f"copy_{k:03d}.dcm",
                  per_slice=_set("SOPInstanceUID", _uid(9, 9)))
    return folder


def _tilted(k: int, ds: object) -> None:
    ds.GantryDetectorTilt = 15.0
    tilt = np.radians(15.0)
    ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(tilt)), float(np.sin(tilt))]
    ds.ImagePositionPatient = [-144.0, -144.0, 5.0 * k]


def _wrong_syntax(uid: str) -> Callable[[int, object], None]:
    def edit(k: int, ds: object) -> None:
        ds.file_meta.TransferSyntaxUID = uid

    return edit


def _with_junk(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "with junk", s)
    (folder / "README.txt").write_text("not dicom")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 200)
    (folder / "empty").write_bytes(b"")
    (folder / "fake.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 60)
    (folder / "notes.nii.gz").write_bytes(gzip.compress(b"hello"))
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "loop").symlink_to("..")
    return folder


def _with_link_loop_file(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "file_loop", s)
    (folder / "a.dcm").symlink_to("b.dcm")
    (folder / "b.dcm").symlink_to("a.dcm")
    return folder


def _input_link_loop(d: Path, s: Sources) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "loop_a.nii.gz").symlink_to("loop_b.nii.gz")
    (d / "loop_b.nii.gz").symlink_to("loop_a.nii.gz")
    return d / "loop_a.nii.gz"


def _multiframe(k: int, ds: object) -> None:
    ds.NumberOfFrames = 2


def _localizer(k: int, ds: object) -> None:
    if k == 0:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]


def _short_pixels(k: int, ds: object) -> None:
    if k == 4:
        ds.PixelData = ds.PixelData[:100]


def _huge_rows(k: int, ds: object) -> None:
    ds.Rows = 12000
    ds.Columns = 12000


def _truncated_file(d: Path, s: Sources) -> Path:
    folder = _dicom_series(d / "cut_file", s)
    victim = folder / "slice_005.dcm"
    victim.write_bytes(victim.read_bytes()[:-600])
    return folder


def _spaces_unicode(d: Path, s: Sources) -> Path:
    return _dicom_series(d / "Séries ü 头部 CT" / "a b", s)


def _nested(d: Path, s: Sources) -> Path:
    folder = d / "nested"
    _dicom_series(folder / "x" / "y", s, n=6)
    _dicom_series(folder / "z", s, n=6, z_mm=[5.0 * k for k in range(6, 12)],
                  name=lambda k: f"later_{k}.dcm",
                  per_slice=lambda k, ds: setattr(ds, "SOPInstanceUID", _uid(3, 1, k + 6)))
    return folder


GAP_Z = [0.0, 5.0, 10.0, 15.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0]
VAR_Z = [0.0, 2.0, 4.0, 6.0, 11.0, 16.0, 21.0, 31.0, 41.0, 51.0, 61.0, 71.0]

DICOM_CASES: list[Case] = [
    _dicom_case("dicom_reference", "reference", ok(end_to_end=True), _series_with("ref")),
    _dicom_case("dicom_missing_ipp", "DICOM missing tags",
                fails(DicomSeriesError, "imagepositionpatient missing", end_to_end=True),
                _series_with("no_ipp", per_slice=_drop("ImagePositionPatient"))),
    _dicom_case("dicom_missing_ipp_one_file", "DICOM missing tags",
                fails(DicomSeriesError, "imagepositionpatient missing"),
                _series_with("no_ipp_one", per_slice=_drop("ImagePositionPatient", 5))),
    _dicom_case("dicom_missing_pixel_spacing", "DICOM missing tags",
                fails(DicomSeriesError, "pixelspacing missing"),
                _series_with("no_ps", per_slice=_drop("PixelSpacing"))),
    _dicom_case("dicom_missing_orientation", "DICOM missing tags",
                fails(DicomSeriesError, "imageorientationpatient missing"),
                _series_with("no_iop", per_slice=_drop("ImageOrientationPatient"))),
    _dicom_case("dicom_missing_rescale", "DICOM missing tags",
                ok((NZ, NY, NX), "rescaleslope/rescaleintercept missing"),
                _series_with("no_rescale", per_slice=lambda k, ds: (
                    _drop("RescaleSlope")(k, ds), _drop("RescaleIntercept")(k, ds)))),
    _dicom_case("dicom_zero_pixel_spacing", "zero/negative/NaN spacing",
                fails(DicomSeriesError, "not positive"),
                _series_with("zero_ps", per_slice=_set("PixelSpacing", [0.0, 9.0]))),
    _dicom_case("dicom_nan_position", "zero/negative/NaN spacing",
                fails(DicomSeriesError, "imagepositionpatient must have 3 finite values"),
                _series_with("nan_ipp", per_slice=_set(
                    "ImagePositionPatient", ["nan", "0", "0"], only=3))),
    _dicom_case("dicom_non_orthonormal_iop", "non-orthogonal/singular affine",
                fails(DicomSeriesError, "not orthonormal"),
                _series_with("bad_iop", per_slice=_set("ImageOrientationPatient",
                                                       [1, 0, 0, 1, 0, 0]))),
    _dicom_case("dicom_two_ct_series", "mixed series/modalities",
                fails(MultipleSeriesError, "2 ct series", "--series", end_to_end=True),
                _two_series),
    _dicom_case("dicom_ct_pt_mr_mixed", "mixed series/modalities", ok(), _ct_plus_others),
    _dicom_case("dicom_mr_only", "non-CT modality",
                fails(UnsupportedModalityError, "modality mr", end_to_end=True),
                _series_with("mr", modality="MR")),
    _dicom_case("dicom_seg_modality", "non-CT modality",
                fails(UnsupportedModalityError, "modality seg"),
                _series_with("seg", modality="SEG", n=3)),
    _dicom_case("dicom_duplicate_slices", "duplicate/missing slices",
                ok((NZ, NY, NX), "duplicate positions dropped"), _with_duplicates),
    _dicom_case("dicom_missing_slices", "duplicate/missing slices",
                ok((NZ, NY, NX), "non-uniform slice spacing", end_to_end=True),
                _series_with("gap", z_mm=GAP_Z)),
    _dicom_case("dicom_varying_spacing", "varying slice thickness",
                ok((NZ, NY, NX), "non-uniform slice spacing"), _series_with("var", z_mm=VAR_Z)),
    _dicom_case("dicom_varying_thickness_tag", "varying slice thickness",
                ok(), _series_with("thick", per_slice=lambda k, ds: setattr(
                    ds, "SliceThickness", 1.0 + k % 3))),
    _dicom_case("dicom_gantry_tilt", "gantry tilt", ok((NZ, NY, NX), "gantry tilt 15.0"),
                _series_with("tilt", per_slice=_tilted)),
    _dicom_case("dicom_jpeg_syntax_raw_data", "wrong/unknown transfer syntax",
                fails(InputError, "cannot decode compressed pixel data", end_to_end=True),
                _series_with("jpeg_lie", per_slice=_wrong_syntax("1.2.840.10008.1.2.4.50"))),
    _dicom_case("dicom_unknown_syntax", "wrong/unknown transfer syntax",
                fails(InputError, "transfer syntax"),
                _series_with("private_ts", per_slice=_wrong_syntax("1.2.3.4.5.6.7"))),
    _dicom_case("dicom_big_endian_syntax_lie", "wrong/unknown transfer syntax",
                fails(InputError, "no dicom image files found"),
                _series_with("be_lie", n=3, per_slice=_wrong_syntax("1.2.840.10008.1.2.2"))),
    _dicom_case("dicom_non_dicom_files", "non-DICOM files in the folder", ok(), _with_junk),
    _dicom_case("dicom_only_junk", "non-DICOM files in the folder",
                fails(InputError, "no dicom image files found"),
                lambda d, s: _write(d / "junk_only" / "a.txt", b"hello").parent),
    _dicom_case("dicom_symlink_loop_files", "symlink loops", ok(), _with_link_loop_file),
    _dicom_case("input_symlink_loop", "symlink loops",
                fails(InputError, "symbolic link", end_to_end=True), _input_link_loop),
    _dicom_case("dicom_unicode_spaces_path", "paths with spaces and non-ASCII names",
                ok(end_to_end=True), _spaces_unicode),
    _dicom_case("dicom_nested_folders", "non-DICOM files in the folder", ok(), _nested),
    _dicom_case("dicom_one_slice", "1-3 slices", ok((1, NY, NX)), _series_with("one", n=1)),
    _dicom_case("dicom_two_slices", "1-3 slices", ok((2, NY, NX)), _series_with("two", n=2)),
    _dicom_case("dicom_multiframe", "2D/4D", fails(DicomSeriesError, "multi-frame"),
                _series_with("mf", n=2, per_slice=_multiframe)),
    _dicom_case("dicom_localizer_mixed_in", "mixed series/modalities",
                ok((NZ - 1, NY, NX), "1 localizer images ignored"),
                _series_with("loc", per_slice=_localizer)),
    _dicom_case("dicom_short_pixel_data", "header dims disagree with data",
                fails(InputError, "slice_004.dcm"),
                _series_with("short_px", per_slice=_short_pixels)),
    _dicom_case("dicom_truncated_file", "truncated/corrupted gzip",
                fails(InputError, "slice_005.dcm"), _truncated_file),
    _dicom_case("dicom_huge_rows_little_data", "huge header dims, little data",
                fails(InputError, "slice_000.dcm"),
                _series_with("huge_rows", n=10, per_slice=_huge_rows)),
    _dicom_case("dicom_extreme_rescale", "NaN/inf/extreme voxel values",
                ok((NZ, NY, NX), "non-finite"),
                _series_with("slope", per_slice=_set("RescaleSlope", "1e36"))),
]

NAME_CASES: list[Case] = [
    _nifti_case("nifti_unicode_spaces_path", "paths with spaces and non-ASCII names",
                ok(end_to_end=True),
                _plain("dossier patient é/scan ü 头 01.nii.gz", _ct)),
    _itk_case("nrrd_unicode_name", "paths with spaces and non-ASCII names", ok(),
              _nrrd("Ünïcödé scan.nrrd")),
]

# -- regressions found by benchmarks/fuzz/fuzz_readers.py ----------------------------------------
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
_FUZZ_SUFFIXES = {"nifti": (".nii", ".nii.gz"), "dicom": (".dcm", ".dcm"), "itk": (".nrrd", ".mha")}


def _fuzz_input(file_name: str) -> Callable[[Path, Sources], Path]:
    """A crash input saved by libFuzzer: first byte selects the suffix, the rest is the file."""

    def make(d: Path, s: Sources) -> Path:
        data = (REGRESSIONS / file_name).read_bytes()
        target = file_name.split("-", maxsplit=1)[0]
        return _write(d / f"input{_FUZZ_SUFFIXES[target][data[0] & 1]}", data[1:])

    return make


FUZZ_CASES: list[Case] = [
    Case("fuzz_nifti_degenerate_affine", "nifti", "fuzz regressions",
         _fuzz_input("nifti-crash-c673af4beed02ce062cd3967694c2f319679daa3"),
         fails(InputError, "degenerate")),  # was: nibabel OrientationError
    Case("fuzz_dicom_unknown_vr", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-8f4c0c814eedf3211a5e23ad631f625443f27506"),
         fails(InputError, "not a readable dicom image")),  # was: pydicom NotImplementedError
    Case("fuzz_mha_1d_short", "itk", "fuzz regressions",
         _fuzz_input("itk-crash-ee4540a6e6e9a33edaf8a8de84a6e007090b16b8"),
         fails(InputError, "truncated")),  # was: SimpleITK RuntimeError (1-D image)
    Case("fuzz_dicom_bad_value_length", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-696a1266b13f1d74a4eee70b1c8bc27057ddd44d"),
         fails(InputError, "not a readable dicom image")),  # was: pydicom BytesLengthException
    Case("fuzz_mha_data_file_pattern_step_0", "itk", "fuzz regressions",
         _fuzz_input("itk-crash-99a8dc9d23d5483dd3b594d614f8d6bf662829f6"),
         fails(InputError, "header is corrupt")),  # was: SIGFPE in ITK MetaIO (process killed)
    Case("fuzz_dicom_unknown_vr_in_series_uid", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-a8d5d9bddf9fc5f2a0e0e5398e797fc634e7acd8"),
         fails(InputError, "not a readable dicom image")),  # was: pydicom NotImplementedError
    Case("fuzz_dicom_multivalued_rescale", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-defc16af1dcd8b8e6576377309b8975b2be5166d"),
         fails(DicomSeriesError, "not single finite numbers")),  # was: TypeError in float()
    Case("fuzz_dicom_unknown_vr_in_file_meta", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-b6f0607e2441018eea723f7a0b3add25e8e8c141"),
         fails(InputError, "not a readable dicom image")),  # was: pydicom NotImplementedError
    Case("fuzz_dicom_unknown_vr_in_pixel_data", "dicom", "fuzz regressions",
         _fuzz_input("dicom-crash-a37dd0f2311459a617c6667c9749a3e5457d448d"),
         fails(InputError, "cannot read the pixel data")),  # was: pydicom NotImplementedError
]

CASES: dict[str, Case] = {
    c.name: c for c in [*NIFTI_CASES, *ITK_CASES, *DICOM_CASES, *NAME_CASES, *FUZZ_CASES]
}


def build_corpus(out_dir: Path, sources: Sources | None = None) -> dict[str, Path]:
    """Build every case into ``out_dir/<case name>/``.

    Returns
    -------
    dict
        case name → input path (file or folder) to read.
    """
    sources = sources or load_sources()
    paths: dict[str, Path] = {}
    for name, case in CASES.items():
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        paths[name] = case.build(folder, sources)
        for helper in folder.glob("_*"):
            helper.unlink()
    return paths


def main(argv: list[str]) -> int:
    """``python make_corpus.py OUTDIR``: build the corpus and a ``manifest.json``."""
    if len(argv) != 1:
        sys.stderr.write("usage: make_corpus.py OUTDIR\n")
        return 2
    out = Path(argv[0])
    paths = build_corpus(out)
    manifest = {
        name: {
            "path": str(paths[name].relative_to(out)),
            "format": case.fmt,
            "category": case.category,
            "error": case.expect.error.__name__ if case.expect.error else None,
            "message": list(case.expect.message),
            "shape": case.expect.shape,
            "warnings": list(case.expect.warnings),
        }
        for name, case in CASES.items()
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
