"""Never lose a result: multi-input ``bodyscore predict`` killed with SIGKILL and resumed.

Also: outputs never overwrite inputs; a full disk and a read-only output folder give one-line
:class:`~bodyscore.errors.OutputError` messages; stale ``*.part`` files of a killed write are
removed by the next successful write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bodyscore.cli import main
from bodyscore.errors import OutputError
from bodyscore.export import atomic
from bodyscore.export.atomic import STALE_PART_AGE_S, atomic_write_text, remove_stale_parts

SRC = Path(__file__).resolve().parents[1] / "src"
N_INPUTS = 8
RUNNER = "from bodyscore.cli import main; import sys; sys.exit(main(sys.argv[1:]))"


def _inputs(folder: Path, n: int = N_INPUTS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        data = rng.normal(0, 300, size=(48, 48, 40)).astype(np.int16)
        path = folder / f"case {i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 5.0, 1.0])), str(path))
        paths.append(path)
    return paths


def _predict_command(inputs: list[Path], out: Path, model: Path) -> list[str]:
    return [
        sys.executable, "-c", RUNNER, "-q", "predict", *map(str, inputs), "-o", str(out),
        "--model", str(model), "--csv", "--skip-existing",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run_and_kill(cmd: list[str], out: Path, *, after_outputs: int, timeout_s: float) -> bool:
    """Start ``cmd``; SIGKILL it once ``after_outputs`` JSON files exist. True if it was killed."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if len(list(out.glob("*.json"))) >= after_outputs:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return True
            time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()
            pytest.fail("predict did not finish in time")
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.timeout(240)
def test_predict_survives_sigkill_and_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    inputs = _inputs(tmp_path / "in put")
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    out = tmp_path / "out"
    cmd = _predict_command(inputs, out, tiny_model_dir)
    kills = 0
    for target in (1, 3, 5):  # kill three times, each after more results exist
        kills += _run_and_kill(cmd, out, after_outputs=target, timeout_s=120)
        done = sorted(p.name for p in out.glob("*.json"))
        for name in done:  # whatever exists after a kill is complete and parses
            json.loads((out / name).read_text(encoding="utf-8"))
            assert (out / name).with_suffix(".csv").is_file(), f"{name} without its CSV"
    assert kills >= 1, "predict finished before it could be killed; make the inputs bigger"
    final = subprocess.run(
        cmd, env=_env(), capture_output=True, text=True, timeout=180, check=False
    )
    assert final.returncode == 0, final.stderr
    expected = {f"case {i:02d}" for i in range(N_INPUTS)}
    assert {p.stem for p in out.glob("*.json")} == expected  # each exactly once, no "_2"
    assert {p.stem for p in out.glob("*.csv")} == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.json" for s in expected] + [f"{s}.csv" for s in expected]
    ), "leftover temporary files"
    for stem in expected:
        data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert len(data["unprocessed slice scores"]) == 40
        rows = (out / f"{stem}.csv").read_text(encoding="utf-8").strip().splitlines()
        assert len(rows) == 41
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs} == digests


def test_stale_part_files_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    stale = tmp_path / ".a.json.k1ll3d.part"
    other = tmp_path / ".b.json.k1ll3d.part"
    in_progress = tmp_path / ".a.json.writing.part"   # another process's write, just now
    for path in (stale, other, in_progress):
        path.write_text("half")
    old = time.time() - 2 * STALE_PART_AGE_S
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    assert not stale.exists()
    assert in_progress.exists()  # younger than STALE_PART_AGE_S: left to its writer
    assert other.exists()  # belongs to another target, whose own write removes it
    assert remove_stale_parts(tmp_path / "b.json") == [other]
    assert remove_stale_parts(target, min_age_s=0.0) == [in_progress]


def test_output_never_overwrites_an_input(tmp_path: Path, tiny_model_dir: Path) -> None:
    inputs = _inputs(tmp_path, n=2)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    rc = main(["-q", "predict", *map(str, inputs), "-o", str(tmp_path), "--model",
               str(tiny_model_dir), "--csv"])
    assert rc == 0
    assert all(p.read_bytes() == data for p, data in before.items())
    assert len(list(tmp_path.glob("*.json"))) == 2
    rc = main(["-q", "predict", str(inputs[0]), "-o", str(inputs[0]), "--model",
               str(tiny_model_dir)])
    assert rc == 1
    assert before[inputs[0]] == inputs[0].read_bytes()


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_disk_full_gives_one_line_output_error(
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (src,) = _inputs(tmp_path / "in", n=1)
    out = tmp_path / "out"

    def full(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    rc = main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)])
    line = _one_error(capsys)
    assert rc == 1
    assert "no space left on the device" in line
    assert "case 00.json" in line
    assert list(out.iterdir()) == []  # no partial file, no temporary file
    with pytest.raises(OutputError, match="no space left"):
        atomic.atomic_write_text(out / "x.json", "{}")


def test_read_only_output_dir_gives_one_line_output_error(
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (src,) = _inputs(tmp_path / "in", n=1)
    out = tmp_path / "locked"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: simulate the refusal of a read-only folder
        import tempfile

        def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
            raise PermissionError(errno.EROFS, "Read-only file system", str(out))

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    else:
        out.chmod(0o500)
    rc = main(["-q", "predict", str(src), "-o", str(out), "--model", str(tiny_model_dir)])
    line = _one_error(capsys)
    assert rc == 1
    assert "permission denied (read-only or not writable)" in line
    assert "locked" in line
