"""No import cycles among bodyscore's modules, lazy (function-level) imports included.

Every ``import bodyscore.x`` / ``from bodyscore.x import y`` anywhere in a module (except under
``if TYPE_CHECKING:``) is an edge; importing one's own parent package is not (it runs first
anyway). A cycle means two modules that cannot be understood or tested apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    modules = {}
    for file in (SRC / "bodyscore").rglob("*.py"):
        name = ".".join(file.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = file
    return modules


class _Imports(ast.NodeVisitor):
    def __init__(self, modules: dict[str, Path]) -> None:
        self.modules = modules
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(a.name for a in node.names if a.name in self.modules)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or node.module not in self.modules:
            return
        for alias in node.names:
            sub = f"{node.module}.{alias.name}"
            self.found.add(sub if sub in self.modules else node.module)


def import_graph() -> dict[str, set[str]]:
    """Module → the bodyscore modules it imports (parent packages left out)."""
    modules = _modules()
    graph = {}
    for name, file in modules.items():
        visitor = _Imports(modules)
        visitor.visit(ast.parse(file.read_text(encoding="utf-8")))
        graph[name] = {t for t in visitor.found if t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_sees_a_lazy_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert {"bodyscore.fast", "bodyscore.inference", "bodyscore.scoring"} <= set(graph)
    assert "bodyscore.scoring" in graph["bodyscore.fast"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
