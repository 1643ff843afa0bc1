"""benchmarks/run.py: the verdicts it writes and its idle check (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import run


def series(wall_s: float, rss_mb: float = 150.0, foreign: float = 0.0) -> run.Series:
    return run.Series((run.Measurement(wall_s, int(rss_mb * 1e6), 0, "", 0.0, 0.0, foreign),))


def test_bpreg_target_is_judged_at_300_and_800_slices_only() -> None:
    rows = [{"size": size, "read": series(2.0), "bodyscore": series(1.0),
             "bpreg": series(20.0)} for size in ("120x5", "300x1.5", "800x0.8")]
    lines = run._target_lines(rows, None, loaded=False)
    assert "20.0× faster than bpreg (no target at this size)" in lines[0]
    assert "20.0× faster than bpreg (target ≥ 25×): **missed**" in lines[1]
    assert "0.50× the nibabel read (target ≤ 1.0×): met" in lines[2]


def test_loaded_run_marks_every_time_verdict() -> None:
    rows = [{"size": "300x1.5", "read": series(2.0), "bodyscore": series(3.0, rss_mb=500)}]
    cohort = {"per_s": 2.5, "workers": 2}
    lines = run._target_lines(rows, cohort, loaded=True)
    assert "peak RSS 500 MB ≤ 400 MB: **missed**;" in lines[0]
    assert "(timing: loaded machine, not valid)" in lines[0]
    assert lines[1].endswith("met (timing: loaded machine, not valid)")


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc/stat")
def test_measure_reports_other_processes_cpu_as_a_share() -> None:
    before = run.busy_cpu_s()
    m = run.measure([sys.executable, "-c", "sum(range(3_000_000))"])
    assert run.busy_cpu_s() > before
    assert m.returncode == 0
    assert 0.0 <= m.foreign_cpu_share <= 1.0
    assert series(1.0, foreign=0.3).max_foreign == 0.3


def test_interleaved_alternates_the_commands(tmp_path: Path) -> None:
    log = tmp_path / "order.txt"
    commands = [[sys.executable, "-c", f"open({str(log)!r}, 'a').write({name!r})"]
                for name in ("r", "b")]
    read, ours = run.interleaved(commands, 3)
    assert log.read_text() == "rbrbrb"
    assert len(read.runs) == len(ours.runs) == 3
    assert read.ok
    assert ours.ok
