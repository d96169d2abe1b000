"""The layout of `core/`, checked from the source: no import cycle between core modules, no core module
that imports a framework or runs over 300 lines, every module in a subpackage of one idea.

Computed from each module's AST (every `import`, including those inside functions, since a lazy
import still ties two modules together), so the test needs no framework and runs nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
FRAMEWORKS = ("torch", "tinygrad")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` in the file refers to (absolute names)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from core.x import module`
    return names


def core_graph() -> dict[str, set[str]]:
    """module -> the core modules it imports (a name that is not a module, e.g. a function, is dropped)."""
    modules = core_modules()
    return {name: {n for n in imported_names(path) if n in modules and n != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. Depth-first search with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_core_imports():
    graph = core_graph()
    assert "core.model.config" in graph["core.model.params"]
    assert "core.model.config" in graph["core.model.interface"]


def test_core_has_no_import_cycle():
    cycle = find_cycle(core_graph())
    assert cycle is None, f"import cycle in core/: {' -> '.join(cycle)}"


def test_core_imports_no_framework():
    for name, path in core_modules().items():
        frameworks = {n.split(".")[0] for n in imported_names(path)} & set(FRAMEWORKS)
        assert not frameworks, f"{name} imports {sorted(frameworks)}: core/ must stay framework-neutral"


MAX_LINES = 300  # a longer module holds more than one idea: split it


def test_no_core_module_is_over_300_lines():
    long = {name: n for name, path in core_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"core modules over {MAX_LINES} lines (split each into one idea per module): {long}"


def test_every_core_module_is_in_a_subpackage():
    loose = [p.name for p in CORE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules directly in core/ (put each in the subpackage of its idea): {loose}"
    for package in (p for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = package / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), f"{package.name}/ needs a docstring"
