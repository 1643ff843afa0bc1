"""Safety audit of the source tree (issue 9): no unpickling of untrusted data, no shell, guarded
zip extraction, no credentials in log messages. Static checks parse every module with ``ast``."""

from __future__ import annotations

import ast
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodyscore.errors import DownloadError
from bodyscore.model.download import DownloadLimits, safe_extract_zip

SRC = Path(__file__).resolve().parents[2] / "src" / "bodyscore"
SECRET = re.compile(r"pass(word|wd)?|token|secret|credential|authori[sz]ation|api_?key|auth",
                    re.IGNORECASE)
#: torch.load call sites still using weights_only=False, with the reason; each must go.
KNOWN_UNSAFE_TORCH_LOAD: dict[str, str] = {}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    yield from (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


TORCH_LOADS = [
    (rel, call.lineno, call)
    for rel, tree in _modules()
    for call in _calls(tree)
    if _dotted(call.func) == "torch.load"
]


def test_torch_load_call_sites_found() -> None:
    assert len(TORCH_LOADS) >= 2  # the model backends load weights


@pytest.mark.parametrize(
    ("rel", "call"),
    [
        pytest.param(
            rel,
            call,
            id=f"{rel}:{line}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_UNSAFE_TORCH_LOAD[rel])]
            if rel in KNOWN_UNSAFE_TORCH_LOAD
            else [],
        )
        for rel, line, call in TORCH_LOADS
    ],
)
def test_torch_load_uses_weights_only(rel: str, call: ast.Call) -> None:
    assert _is_true(_keyword(call, "weights_only")), f"{rel}:{call.lineno}"


def test_no_shell_no_pickle() -> None:
    offences = []
    for rel, tree in _modules():
        for call in _calls(tree):
            name = _dotted(call.func)
            if _is_true(_keyword(call, "shell")):
                offences.append(f"{rel}:{call.lineno} shell=True")
            if name in {"os.system", "os.popen", "pickle.load", "pickle.loads", "marshal.loads"}:
                offences.append(f"{rel}:{call.lineno} {name}")
            if name.endswith(".load") and _is_true(_keyword(call, "allow_pickle")):
                offences.append(f"{rel}:{call.lineno} allow_pickle=True")
    assert offences == []


def test_zip_extraction_only_through_the_guard() -> None:
    extracting = []
    guarded_use = []
    for rel, tree in _modules():
        for call in _calls(tree):
            name = _dotted(call.func)
            if name.endswith((".extractall", ".extract")) or name == "shutil.unpack_archive":
                extracting.append(rel)
            if name.endswith("safe_extract_zip"):
                guarded_use.append(rel)
    assert set(extracting) <= {"model/download.py"}, extracting
    assert "model/registry.py" in guarded_use


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../evil.txt": b"x"}, "unsafe path"),
        ({"/etc/evil": b"x"}, "unsafe path"),
        ({"ok/../../evil": b"x"}, "unsafe path"),
        ({"bomb.bin": b"\0" * (4 << 20)}, "compression ratio"),
        ({f"f{i}": b"" for i in range(12)}, "too many"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "bomb", "many-members"],
)
def test_safe_extract_zip_refuses_hostile_archives(
    tmp_path: Path, members: dict[str, bytes], message: str
) -> None:
    archive = tmp_path / "hostile.zip"
    archive.write_bytes(_zip(members))
    target = tmp_path / "unpacked"
    with pytest.raises(DownloadError, match=message):
        safe_extract_zip(archive, target, limits=DownloadLimits(max_members=10))
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_zip_extracts_a_normal_archive(tmp_path: Path) -> None:
    archive = tmp_path / "ok.zip"
    archive.write_bytes(_zip({"pkg/config.json": b"{}", "pkg/model.onnx": b"\1\2\3"}))
    safe_extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "model.onnx").read_bytes() == b"\1\2\3"


def test_no_credentials_in_log_or_print_calls() -> None:
    """No logging/print call passes a variable or attribute whose name looks like a secret."""
    offences = []
    log_methods = {"debug", "info", "warning", "error", "exception", "critical", "log"}
    for rel, tree in _modules():
        for call in _calls(tree):
            name = _dotted(call.func)
            is_log = name.split(".")[-1] in log_methods and name.split(".")[0] in {
                "logger", "log", "logging", "LOGGER", "_log", "_logger",
            }
            if not (is_log or name == "print"):
                continue
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                for node in ast.walk(arg):
                    ident = node.id if isinstance(node, ast.Name) else (
                        node.attr if isinstance(node, ast.Attribute) else None
                    )
                    if ident is not None and SECRET.search(ident):
                        offences.append(f"{rel}:{call.lineno} logs {ident}")
    assert offences == []
