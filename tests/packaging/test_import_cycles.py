"""canet's imports run one way: no module, sub-package or package imports itself back.

Every ``import`` and ``from ... import`` statement of every module counts, also
the ones inside functions (a loop hidden by a lazy import is still a loop).
The graph is checked at three sizes: modules (``canet.training.config``),
sub-packages (``canet.training.methods``) and top-level parts (``canet.models``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import canet

PACKAGE = Path(canet.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The canet modules that ``path`` names in an import statement, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH: dict[str, set[str]] = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _collapsed(unit: Callable[[str], str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {unit(name): set() for name in GRAPH}
    for name, targets in GRAPH.items():
        out[unit(name)].update(unit(t) for t in targets if unit(t) != unit(name))
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _first(n: int) -> Callable[[str], str]:
    return lambda name: ".".join(name.split(".")[:n])


@pytest.mark.parametrize(
    ("size", "unit"),
    [("module", lambda name: name), ("sub-package", _first(3)), ("package part", _first(2))],
)
def test_no_import_cycle(size: str, unit: Callable[[str], str]) -> None:
    cycle = _cycle(_collapsed(unit))
    assert cycle is None, f"{size} import cycle: {' -> '.join(cycle or [])}"


def test_the_two_former_loops_run_one_way() -> None:
    # The config schema and the methods do not import the config loader; the schema knows no method.
    assert "canet.training.config" not in _reaches(GRAPH, "canet.training.methods")
    assert not {"canet.training.config", "canet.training.methods"} & _reaches(GRAPH, "canet.training.schema")
    assert "canet.training.methods.registry" in GRAPH["canet.training.config"]
    # Checkpoint files do not depend on the networks; the networks' loader reads checkpoint files.
    assert not {m for m in _reaches(GRAPH, "canet.checkpoint") if m.startswith("canet.models")}
    assert "canet.checkpoint" in GRAPH["canet.models.loading"]


def test_the_checker_finds_a_cycle_and_a_lazy_import(tmp_path: Path) -> None:
    """The graph counts function-level imports, and :func:`_cycle` reports a loop."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from canet.models import create_model\n    return create_model\n")
    assert _imports(lazy) == {"canet.models"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
