"""Tests of bodyscore.train.sources: file lists, folders, globs, data manifests, credits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bodyscore.errors import InputError
from bodyscore.train.sources import (
    VOLUME_SUFFIXES,
    CreditTable,
    DataCredit,
    dominant_region,
    expand_sources,
    match_rule,
    read_data_manifests,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# -- expand_sources ------------------------------------------------------------------------------
def test_files_are_kept_as_given_even_when_missing(tmp_path: Path) -> None:
    # a file is checked when the data are prepared, not here; its order is the caller's
    given = [str(tmp_path / "z.nii.gz"), str(tmp_path / "missing.nrrd"), str(tmp_path / "a.mha")]
    touch(tmp_path / "z.nii.gz")
    assert expand_sources(given) == tuple(given)
    assert expand_sources([tmp_path / "z.nii.gz"]) == (str(tmp_path / "z.nii.gz"),)


def test_folder_gives_its_volume_files_sorted_by_name_not_recursive(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    for name in ("b.nii.gz", "a.nii", "c.nrrd", "d.mha", "e.mhd", "F.NII.GZ"):
        touch(folder / name)
    for name in ("notes.txt", "e.raw", "manifest.tsv", "landmarks.json"):
        touch(folder / name)
    touch(folder / "sub" / "deep.nii.gz")  # not recursive
    (folder / "dir.nii.gz").mkdir()  # a folder named like a volume is no volume
    got = expand_sources([folder])
    names = [Path(p).name for p in got]
    assert names == sorted(["b.nii.gz", "a.nii", "c.nrrd", "d.mha", "e.mhd", "F.NII.GZ"])
    assert all(Path(p).parent == folder for p in got)
    assert all(p.lower().endswith(VOLUME_SUFFIXES) for p in got)


def test_glob_patterns_sorted_and_double_star_recurses(tmp_path: Path) -> None:
    for rel in ("x/b.nii.gz", "x/a.nii.gz", "x/c.nii", "x/sub/d.nii.gz", "x/sub/deeper/e.nii.gz"):
        touch(tmp_path / rel)
    (tmp_path / "x" / "f.nii.gz").mkdir()  # directories never match
    flat = expand_sources([str(tmp_path / "x" / "*.nii.gz")])
    assert [Path(p).name for p in flat] == ["a.nii.gz", "b.nii.gz"]
    deep = expand_sources([str(tmp_path / "x" / "**" / "*.nii.gz")])
    assert sorted(Path(p).relative_to(tmp_path / "x").as_posix() for p in deep) == [
        "a.nii.gz", "b.nii.gz", "sub/d.nii.gz", "sub/deeper/e.nii.gz"]
    assert list(deep) == sorted(deep)
    single = expand_sources([str(tmp_path / "x" / "?.nii")])
    assert [Path(p).name for p in single] == ["c.nii"]
    bracket = expand_sources([str(tmp_path / "x" / "[ab].nii.gz")])
    assert [Path(p).name for p in bracket] == ["a.nii.gz", "b.nii.gz"]


def test_duplicates_removed_keeping_the_first_occurrence(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    a, b, c = (touch(folder / n) for n in ("a.nii.gz", "b.nii.gz", "c.nii.gz"))
    got = expand_sources([b, folder, str(folder / "*.nii.gz"), a, str(c)])
    assert got == (str(b), str(a), str(c))


@pytest.mark.parametrize("where", ["sources", "unlabelled_sources"])
def test_empty_folder_is_an_error_naming_the_key(tmp_path: Path, where: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    touch(empty / "readme.txt")
    with pytest.raises(InputError, match=rf"{where}: folder .*empty.* holds no volume"):
        expand_sources([empty], where=where)


@pytest.mark.parametrize("where", ["sources", "unlabelled_sources"])
def test_pattern_without_match_is_an_error_naming_the_key(tmp_path: Path, where: str) -> None:
    touch(tmp_path / "a.nii.gz")
    (tmp_path / "only_a_dir.nii.gz").mkdir()
    for pattern in ("*.nrrd", "only_a_dir*", "nowhere/**/*.nii.gz"):
        with pytest.raises(InputError, match=rf"^{where}: pattern .* matches no file"):
            expand_sources([str(tmp_path / "a.nii.gz"), str(tmp_path / pattern)], where=where)


def test_no_specs_give_nothing() -> None:
    assert expand_sources([]) == ()


# -- match_rule ----------------------------------------------------------------------------------
def test_exact_id_beats_an_earlier_pattern() -> None:
    rules = {"openkbp_*": "pattern", "openkbp_007": "exact"}
    assert match_rule(rules, "openkbp_007") == "exact"
    assert match_rule(rules, "openkbp_008") == "pattern"


def test_first_matching_pattern_wins_and_default_otherwise() -> None:
    rules = {"ts_*": "first", "ts_abd*": "second", "*": "catch-all"}
    assert match_rule(rules, "ts_abdomen") == "first"
    assert match_rule({"ts_abd*": "second", "ts_*": "first"}, "ts_abdomen") == "second"
    assert match_rule(rules, "vhf_head") == "catch-all"
    assert match_rule({"ts_*": "x"}, "vhf_head") is None
    assert match_rule({"ts_*": "x"}, "vhf_head", "fallback") == "fallback"
    assert match_rule({}, "v", "d") == "d"


def test_patterns_are_case_sensitive_and_plain_keys_exact() -> None:
    assert match_rule({"OPENKBP_*": "x"}, "openkbp_1") is None
    assert match_rule({"openkbp": "x"}, "openkbp_1") is None  # no pattern character: exact
    assert match_rule({"pt_?": "x"}, "pt_1") == "x"
    assert match_rule({"pt_?": "x"}, "pt_12") is None
    assert match_rule({"pt_[12]": "x"}, "pt_2") == "x"


_IDS = st.text(alphabet="abc_01", min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(rules=st.dictionaries(_IDS, st.text(max_size=3), max_size=6), volume_id=_IDS,
       default=st.none() | st.text(max_size=3))
def test_rules_without_patterns_are_a_plain_lookup(rules: dict[str, str], volume_id: str,
                                                   default: str | None) -> None:
    assert match_rule(rules, volume_id, default) == rules.get(volume_id, default)


@settings(max_examples=150, deadline=None)
@given(prefixes=st.lists(st.text(alphabet="abc", max_size=3), min_size=1, max_size=5,
                         unique=True),
       volume_id=st.text(alphabet="abc", min_size=0, max_size=5))
def test_first_matching_prefix_pattern_wins(prefixes: list[str], volume_id: str) -> None:
    rules = {f"{p}*": f"rule{i}" for i, p in enumerate(prefixes)}
    expected = next((f"rule{i}" for i, p in enumerate(prefixes) if volume_id.startswith(p)),
                    None)
    assert match_rule(rules, volume_id) == expected


# -- read_data_manifests -------------------------------------------------------------------------
def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_manifest_rows_by_volume_id(tmp_path: Path) -> None:
    first = write_tsv(tmp_path / "m1.tsv", [
        ["file", "region", "licence", "attribution"],
        ["pelvis_01.nii.gz", "pelvis", "CC BY 4.0", "Doe et al. 2020"],
        [" legs_02.nii ", "legs", " CC0 ", ""],
        ["chest.nrrd", "chest", "", "Someone"],
        ["pelvis_01.nii.gz", "pelvis", "OTHER", "later row"],  # first row kept
    ])
    second = write_tsv(tmp_path / "m2.tsv", [
        ["licence", "file"],  # column order does not matter; attribution optional
        ["MIT", "sub/knee.nii.gz"],
        ["GPL", "pelvis_01.nii.gz"],  # an earlier manifest wins
    ])
    credits = read_data_manifests([first, second])
    assert credits == {
        "pelvis_01": DataCredit("CC BY 4.0", "Doe et al. 2020"),
        "legs_02": DataCredit("CC0", ""),
        "chest": DataCredit("unknown", "Someone"),
        "knee": DataCredit("MIT", ""),
    }
    assert read_data_manifests([]) == {}


@pytest.mark.parametrize("header", [["file", "attribution"], ["licence", "attribution"],
                                    ["name", "license"]])
def test_manifest_without_file_or_licence_column_is_an_error(tmp_path: Path,
                                                             header: list[str]) -> None:
    path = write_tsv(tmp_path / "bad.tsv", [header, ["a.nii.gz", "x"]])
    with pytest.raises(InputError, match=r"bad\.tsv: a data manifest needs .*'file'.*'licence'"):
        read_data_manifests([path])


def test_comma_separated_manifest_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "comma.tsv"
    path.write_text("file,licence\na.nii.gz,MIT\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"comma\.tsv"):
        read_data_manifests([path])


def test_unreadable_manifests_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.tsv: cannot read the data manifest"):
        read_data_manifests([tmp_path / "absent.tsv"])
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"file\tlicence\n\xff\xfe\x00a\tb\n")
    with pytest.raises(InputError, match=r"binary\.tsv: cannot read"):
        read_data_manifests([binary])


def test_short_row_is_an_input_error(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "short.tsv", [["licence", "file"], ["MIT"]])
    with pytest.raises(InputError, match=r"short\.tsv"):
        read_data_manifests([path])


# -- CreditTable ---------------------------------------------------------------------------------
def test_credit_rules_beat_manifests_and_unknown_is_the_default() -> None:
    table = CreditTable(
        manifest_credits={"pelvis_01": DataCredit("CC BY 4.0", "Doe"),
                          "openkbp_001": DataCredit("from manifest", "manifest text")},
        licences={"openkbp_*": "MIT / CC BY", "pelvis_01": "CC BY-SA"},
        attributions={"openkbp_*": "OpenKBP challenge"})
    assert table.licence("openkbp_001") == "MIT / CC BY"  # pattern rule beats the manifest
    assert table.attribution("openkbp_001") == "OpenKBP challenge"
    assert table.licence("pelvis_01") == "CC BY-SA"  # exact rule beats the manifest
    assert table.attribution("pelvis_01") == "Doe"  # no attribution rule: the manifest's
    assert table.licence("nobody") == "unknown"
    assert table.attribution("nobody") == ""
    assert table.licence("openkbp_999") == "MIT / CC BY"  # rule without a manifest row
    empty = CreditTable({}, {}, {})
    assert (empty.licence("x"), empty.attribution("x")) == ("unknown", "")


def test_credit_table_from_a_manifest_file(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "manifest.tsv", [["file", "licence", "attribution"],
                                                 ["legs.nii.gz", "CC0", "Visible Human"]])
    table = CreditTable(read_data_manifests([path]), {}, {"leg*": "rule text"})
    assert table.licence("legs") == "CC0"
    assert table.attribution("legs") == "rule text"


# -- dominant_region -----------------------------------------------------------------------------
def test_dominant_region_counts_inclusive_ranges_summed_per_label() -> None:
    regions = [(0, 4, "legs"), (5, 12, "pelvis"), (13, 16, "legs")]  # legs 5 + 4 = 9 > 8
    assert dominant_region(regions) == "legs"
    assert dominant_region([(0, 0, "a"), (1, 2, "b")]) == "b"
    assert dominant_region([(3, 3, "head")]) == "head"
    assert dominant_region([]) is None


def test_dominant_region_ties_go_to_the_first_label_met() -> None:
    assert dominant_region([(0, 3, "chest"), (4, 7, "abdomen")]) == "chest"
    assert dominant_region([(4, 7, "abdomen"), (0, 3, "chest")]) == "abdomen"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 20), st.sampled_from("abcd")),
                min_size=1, max_size=8))
def test_dominant_region_has_the_most_slices(spans: list[tuple[int, int, str]]) -> None:
    regions = [(first, first + length, label) for first, length, label in spans]
    counts: dict[str, int] = {}
    for first, last, label in regions:
        counts[label] = counts.get(label, 0) + last - first + 1
    best = dominant_region(regions)
    assert best is not None
    assert counts[best] == max(counts.values())
    first_best = next(label for _, _, label in regions if counts[label] == max(counts.values()))
    assert best == first_best
