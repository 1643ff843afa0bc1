"""Known models, where they come from, and :func:`load_model`.

* ``"default"`` — the package shipped inside bodyscore (``bodyscore/models/default/``), model
  2026.12.1, trained self-supervised on every real CT of the project (20 annotated, 271
  unlabelled volumes). The best bundled model on real CT it has not seen (README, "Accuracy on
  real CT").
* ``"synthetic"`` — also shipped (``bodyscore/models/synthetic/``): model 2026.11.4, the
  default until 2026.11, trained on the 20 annotated volumes and 8 synthetic ones; kept only for
  synthetic CT of :mod:`bodyscore.synth`, which it scores in order and the default does not.
* ``"bpreg-public"`` — bpreg's public model (Schuhegger 2021, zenodo record 5113483,
  CC BY-SA 4.0), downloaded on first use into the user cache folder.

Retired names (:data:`RETIRED_MODELS`, e.g. ``"real-only"``) give an error that says why and
how to train the model again.

Downloads happen only when a model is asked for, never at import. A model whose sha256 is not
known in advance (the zenodo file is not pinned) is checked for structure, and the sha256 of its
first download is recorded in the cache and compared on every later load.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from bodyscore.errors import DownloadError, ModelError
from bodyscore.model.backends import BackendName, ScoreModel, default_cache_dir, open_backend
from bodyscore.model.package import (
    CONFIG_FILE,
    ModelPackage,
    load_package,
)

if TYPE_CHECKING:  # the download module (http.client, ssl) is imported only to download
    from bodyscore.model.download import DownloadLimits

__all__ = [
    "BPREG_PUBLIC",
    "DEFAULT",
    "KNOWN_MODELS",
    "RETIRED_MODELS",
    "SYNTHETIC",
    "ModelEntry",
    "fetch_model",
    "list_models",
    "load_model",
    "resolve_model_folder",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """A model bodyscore knows by name.

    Attributes
    ----------
    name : str
        Registry name (also the cache folder name).
    description : str
        One line for ``bodyscore models``.
    url : str or None
        Zip archive holding the package folder; None for a model bundled with bodyscore (in
        ``bodyscore/models/<name>/``).
    sha256 : str or None
        Expected sha256 of the archive; None when unknown (recorded on first download).
    licence : str
        Licence of the weights.
    attribution : str
        Text to cite when using the model.
    """

    name: str
    description: str
    url: str | None = None
    sha256: str | None = None
    licence: str = "unknown"
    attribution: str = ""

    def is_available(self, *, cache_dir: str | os.PathLike[str] | None = None) -> bool:
        """True when the model can be loaded without downloading (bundled or cached)."""
        if self.url is None:
            try:
                _bundled(self.name)
            except ModelError:
                return False
            return True
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return (cache / "models" / self.name / CONFIG_FILE).is_file()


DEFAULT = ModelEntry(
    name="default",
    description="bodyscore's bundled model 2026.12.1, 291 real CTs (the best on real CT; "
                "installed with the package)",
    licence="CC BY-SA 4.0",
)

SYNTHETIC = ModelEntry(
    name="synthetic",
    description="bodyscore's bundled model 2026.11.4, 20 real + 8 synthetic CTs: only for "
                "synthetic CT of bodyscore.synth (worse on real CT)",
    licence="CC BY-SA 4.0",
)

#: Names of models no longer shipped → why, and how to get them back.
RETIRED_MODELS: dict[str, str] = {
    "real-only": "model 2026.11.3 was retired in 2026.12.1: the default model is better on "
                 "every kind of real CT measured (benchmarks/accuracy/cv/comparison.md); "
                 "`bodyscore train configs/real-only.yaml` trains its recipe again",
}

BPREG_PUBLIC = ModelEntry(
    name="bpreg-public",
    description="bpreg public body part regression model (VGG16, Schuhegger 2021)",
    url="https://zenodo.org/record/5113483/files/public_bpr_model.zip?download=1",
    sha256=None,
    licence="CC BY-SA 4.0",
    attribution=(
        "Body Part Regression public model, S. Schuhegger, DKFZ; Schuhegger S., Body Part "
        "Regression for CT Images, arXiv:2110.09148 (2021); "
        "https://github.com/MIC-DKFZ/BodyPartRegression"
    ),
)

KNOWN_MODELS: dict[str, ModelEntry] = {e.name: e for e in (DEFAULT, SYNTHETIC, BPREG_PUBLIC)}


def list_models() -> list[ModelEntry]:
    """The models known by name."""
    return list(KNOWN_MODELS.values())


def _bundled(name: str) -> Path:
    """Folder of the model package ``name`` shipped in ``bodyscore/models/``."""
    folder = resources.files("bodyscore").joinpath("models").joinpath(name)
    if not (folder.is_dir() and folder.joinpath(CONFIG_FILE).is_file()):
        raise ModelError(f"the bundled model {name!r} is not installed; pass --model PATH")
    return Path(str(folder))


def _record_path(cache: Path, entry: ModelEntry) -> Path:
    return cache / "models" / f"{entry.name}.download.json"


def _write_json_atomic(path: Path, data: dict[str, str | None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    Path(tmp).replace(path)


def _package_root(folder: Path, url: str) -> Path:
    """The folder of an unpacked archive holding ``config.json`` (itself or its only subfolder)."""
    if (folder / CONFIG_FILE).is_file():
        return folder
    candidates = [p.parent for p in folder.glob(f"*/{CONFIG_FILE}")]
    if len(candidates) != 1:
        raise DownloadError(
            f"{url}: the archive does not hold exactly one model package folder "
            f"({len(candidates)} found)"
        )
    return candidates[0]


def _verify_cached(folder: Path, record: Path, entry: ModelEntry) -> bool:
    """True when the cached package matches its download record; raises when corrupted."""
    if not (folder / CONFIG_FILE).is_file() or not record.is_file():
        return False
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if saved.get("url") != entry.url:
        return False
    if entry.sha256 is not None and saved.get("archive_sha256") != entry.sha256.lower():
        return False
    package = load_package(folder)
    if saved.get("weights_sha256") != package.sha256:
        raise ModelError(
            f"{folder}: cached weights changed since download (sha256 {package.sha256}, "
            f"recorded {saved.get('weights_sha256')}); delete the folder to download again"
        )
    return True


def fetch_model(
    entry: ModelEntry,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    limits: DownloadLimits | None = None,
) -> Path:
    """Return the package folder of a downloadable model, downloading it if needed.

    Parameters
    ----------
    entry : ModelEntry
        What to fetch (a known model or one built for tests).
    cache_dir : str or path-like, optional
        Cache folder; default ``platformdirs.user_cache_dir("bodyscore")``. The package is kept
        in ``<cache_dir>/models/<entry.name>/``.

    Raises
    ------
    DownloadError
        Download or archive problems (see :func:`~bodyscore.model.download.download_file`), or
        an archive that is not a model package.
    """
    from bodyscore.model.download import download_file, remove_tree, safe_extract_zip

    if entry.url is None:
        raise ModelError(f"model {entry.name!r} has no download URL")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models = cache / "models"
    final = models / entry.name
    record = _record_path(cache, entry)
    if _verify_cached(final, record, entry):
        logger.debug("using cached model %s at %s", entry.name, final)
        return final
    logger.info(
        "downloading model %r from %s (licence: %s; cite: %s)",
        entry.name, entry.url, entry.licence, entry.attribution or "-",
    )
    archive, digest = download_file(entry.url, folder=models, sha256=entry.sha256, limits=limits)
    unpacked = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=models))
    try:
        safe_extract_zip(archive, unpacked, limits=limits)
        root = _package_root(unpacked, entry.url)
        try:
            package = load_package(root)
        except ModelError as exc:
            raise DownloadError(f"{entry.url}: archive is not a valid model package ({exc})") \
                from exc
        if final.exists():
            remove_tree(final)
        root.replace(final)
        _write_json_atomic(
            record,
            {"url": entry.url, "archive_sha256": digest, "weights_sha256": package.sha256},
        )
    finally:
        archive.unlink(missing_ok=True)
        remove_tree(unpacked)
    if entry.sha256 is None:
        logger.info("model %r: recorded archive sha256 %s", entry.name, digest)
    return final


def resolve_model_folder(
    name_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Folder of a model given by registry name or path (downloads known models if needed)."""
    if isinstance(name_or_path, str) and name_or_path in KNOWN_MODELS:
        entry = KNOWN_MODELS[name_or_path]
        if entry.url is None:
            return _bundled(entry.name)
        return fetch_model(entry, cache_dir=cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if isinstance(name_or_path, str) and name_or_path in RETIRED_MODELS:
        raise ModelError(f"{name_or_path}: {RETIRED_MODELS[name_or_path]}")
    known = ", ".join(sorted(KNOWN_MODELS))
    raise ModelError(
        f"{name_or_path}: not a model folder nor a known model name ({known}); "
        "pass a model package folder"
    )


def load_model(
    name_or_path: str | os.PathLike[str] = "default",
    *,
    backend: BackendName = "auto",
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ScoreModel:
    """Load a model by registry name (``"default"``, ``"bpreg-public"``) or package folder.

    Parameters
    ----------
    name_or_path : str or path-like
        A name from :func:`list_models` or a model package folder (bpreg folders work).
    backend : {"auto", "onnx", "torch"}
        How to run the network (see :mod:`bodyscore.model.backends`).
    threads : int, optional
        CPU threads of the backend; default all cores for ONNX.
    cache_dir : str or path-like, optional
        Download / ONNX-export cache; default the user cache folder.

    Returns
    -------
    ScoreModel

    Raises
    ------
    ModelError
        Unknown name, missing or malformed package, no usable backend.
    DownloadError
        A known model could not be downloaded.
    """
    folder = resolve_model_folder(name_or_path, cache_dir=cache_dir)
    package: ModelPackage = load_package(folder)
    entry = KNOWN_MODELS.get(name_or_path) if isinstance(name_or_path, str) else None
    if entry is not None and package.licence is None and entry.licence != "unknown":
        package = dataclasses.replace(package, licence=entry.licence)
    cache = Path(cache_dir) if cache_dir is not None else None
    return ScoreModel(package, open_backend(package, backend, threads=threads, cache_dir=cache))
