"""Where the training volumes come from: file lists, folders, globs, and their data manifests.

A training config names its volumes as files, folders (every ``.nii``/``.nii.gz``/``.nrrd``/
``.mha`` inside, sorted) or glob patterns (``../data/openkbp/*.nii.gz``), so that ~300 volumes
need no 300-line list (issue 17). Licence and attribution of each volume come from data
manifests, tab-separated files with one row per volume (``file``, ``licence``, ``attribution``
columns, as ``../shared/data/ct-unlabelled/manifest.tsv``), and from pattern rules in the
config (``licences: {"openkbp_*": "MIT / CC BY"}``) for collections that ship a README instead
of a manifest. Every rule is keyed by volume id (file name without extension) or an
:mod:`fnmatch` pattern of it; exact ids win over patterns, earlier patterns over later ones.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from bodyscore.errors import InputError
from bodyscore.evaluate.landmarks import volume_id_from_path

__all__ = [
    "VOLUME_SUFFIXES",
    "CreditTable",
    "DataCredit",
    "dominant_region",
    "expand_sources",
    "match_rule",
    "read_data_manifests",
]

#: File name endings of volumes picked up from a folder.
VOLUME_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class DataCredit:
    """Licence and the attribution text the licence asks for, of one volume."""

    licence: str = "unknown"
    attribution: str = ""


def _is_pattern(spec: str) -> bool:
    return bool(_GLOB_CHARACTERS & set(spec))


def _volumes_in(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir()
                  if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES))


def expand_sources(specs: Iterable[str | os.PathLike[str]], *, where: str = "sources"
                   ) -> tuple[str, ...]:
    """Files, folders and glob patterns → the volume files, in order, without duplicates.

    Parameters
    ----------
    specs : iterable of path or str
        A file is kept as given (it is read, and checked, when the data are prepared); a
        folder gives its volume files (:data:`VOLUME_SUFFIXES`, sorted by name, not
        recursive); a pattern with ``*``, ``?`` or ``[`` gives its sorted matches
        (``**`` recurses).
    where : str
        Names the config key in error messages.

    Raises
    ------
    InputError
        When a folder holds no volume or a pattern matches no file: a typo in a config
        would otherwise silently train on less data.
    """
    out: list[str] = []
    for spec in specs:
        text = str(spec)
        if _is_pattern(text):
            # glob.glob: Path.glob takes no absolute pattern
            found = sorted(p for p in glob.glob(text, recursive=True)  # noqa: PTH207
                           if Path(p).is_file())
            if not found:
                raise InputError(f"{where}: pattern {text!r} matches no file; check the path "
                                 "(relative paths start at the config's folder)")
        elif Path(text).is_dir():
            found = _volumes_in(Path(text))
            if not found:
                raise InputError(f"{where}: folder {text!r} holds no volume "
                                 f"({', '.join(VOLUME_SUFFIXES)})")
        else:
            found = [text]
        out.extend(found)
    return tuple(dict.fromkeys(out))


def match_rule(rules: Mapping[str, str], volume_id: str, default: str | None = None
               ) -> str | None:
    """The value of the rule for ``volume_id``: its exact key, else the first matching
    :mod:`fnmatch` pattern (case-sensitive), else ``default``."""
    if volume_id in rules:
        return rules[volume_id]
    for pattern, value in rules.items():
        if _is_pattern(pattern) and fnmatchcase(volume_id, pattern):
            return value
    return default


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle, delimiter="\t"), [])


def read_data_manifests(paths: Sequence[str | os.PathLike[str]]) -> dict[str, DataCredit]:
    """Volume id → :class:`DataCredit` from tab-separated data manifests.

    Each file needs a ``file`` column (the volume's file name) and a ``licence`` column; an
    ``attribution`` column is read when present. A volume listed twice keeps its first row.

    Raises
    ------
    InputError
        When a manifest is unreadable or lacks the ``file``/``licence`` columns.
    """
    credits: dict[str, DataCredit] = {}
    for path in map(Path, paths):
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: cannot read the data manifest ({exc})") from exc
        header = rows[0].keys() if rows else _header(path)
        if not {"file", "licence"} <= set(header):
            raise InputError(f"{path}: a data manifest needs tab-separated 'file' and "
                             f"'licence' columns; found {sorted(k for k in header if k)}")
        for line, row in enumerate(rows, start=2):
            name = (row.get("file") or "").strip()
            if not name:
                raise InputError(f"{path}: line {line} has no 'file' value; fix the manifest")
            volume_id = volume_id_from_path(Path(name))
            credits.setdefault(volume_id, DataCredit(
                licence=(row.get("licence") or "unknown").strip(),
                attribution=(row.get("attribution") or "").strip()))
    return credits


@dataclass(frozen=True)
class CreditTable:
    """Licence and attribution of every volume: config rules first, then data manifests.

    Parameters
    ----------
    manifest_credits : mapping of str to DataCredit
        From :func:`read_data_manifests`.
    licences, attributions : mapping of str to str
        Volume id or pattern → text (:func:`match_rule`); they win over the manifests.
    """

    manifest_credits: Mapping[str, DataCredit]
    licences: Mapping[str, str]
    attributions: Mapping[str, str]

    def licence(self, volume_id: str) -> str:
        """The licence of a volume ("unknown" when no rule or manifest names it)."""
        known = self.manifest_credits.get(volume_id, DataCredit()).licence
        return match_rule(self.licences, volume_id, known) or known

    def attribution(self, volume_id: str) -> str:
        """The attribution text of a volume ("" when none is known)."""
        known = self.manifest_credits.get(volume_id, DataCredit()).attribution
        return match_rule(self.attributions, volume_id, known) or known


def dominant_region(regions: Iterable[tuple[int, int, str]]) -> str | None:
    """The coarse region label with the most slices in inclusive index ranges; ties go to
    the label met first; None without ranges."""
    counts: dict[str, int] = {}
    for first, last, label in regions:
        counts[label] = counts.get(label, 0) + last - first + 1
    return max(counts, key=lambda label: counts[label]) if counts else None
