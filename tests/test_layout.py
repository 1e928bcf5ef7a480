"""The package's shape: no import circles, library modules free of argparse, every module importable."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qwen_min"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Package modules `path` imports anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # a module's own package (qwen_min.model for qwen_min.model.qwen) is imported first by Python anyway
        graph[name] = imported_modules(path, set(files)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None.

    >>> find_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_in_the_package():
    graph = import_graph()
    assert len(graph) > 30 and "qwen_min.model.qwen" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_package_imports_are_at_the_top_of_each_module():
    """Imports of qwen_min's own modules sit at module level; only cli.py loads command modules by name."""
    late = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m == "qwen_min" or m.startswith("qwen_min.") for m in mods):
                    late.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not late, "imports of qwen_min inside functions: " + ", ".join(late)


def test_library_modules_do_not_parse_arguments():
    """argparse and sys.argv live in command modules (*_command.py, cli.py), benchmarks (bench/: each module is the
    `qwen-min bench NAME` command of one benchmark) and the course scripts (walkthrough, student edition) only."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        exempt = path.name in {"cli.py", "__main__.py"} or path.stem.endswith("command")
        if exempt or "bench" in path.parts or "course" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if "argparse" in text or "sys.argv" in text or "def add_arguments" in text:
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, "argument parsing in library modules: " + ", ".join(offenders)


@pytest.mark.parametrize("name", sorted(n for n in import_graph() if not n.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)
