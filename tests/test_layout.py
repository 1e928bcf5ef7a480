"""The package's shape: layers between its folders, no import circles, library modules free of argparse and of
command modules, `qwen-min --help` without torch, every module importable."""

import ast
import importlib
import re
import subprocess
import sys
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


# The layers, lowest first: a module imports from its own layer or below, never above. Top-level modules count as
# folders of one. "commands" are the command-line modules wherever they live (cli.py, command.py, *_command.py,
# */command.py, bench/: each of its modules is a `qwen-min bench NAME`): they sit above every library module.
LAYERS = [
    ("paths", "progress", "formats", "config", "gguf"),  # foundations: files, numbers, the GGUF format
    ("tokenizer", "model"),  # chapters 1-5
    ("quant",),  # chapter 7's formats, on the model's layers
    ("checkpoints", "generation"),  # reading, writing and loading models (qm.load); decoding
    ("tasks",),  # checkable tasks and preference pairs
    ("train",),  # the loop and its stages (pretrain, sft, dpo, grpo)
    ("eval", "corpus", "scaling"),  # evaluations, pre-training data, hyper-parameter sweeps
    ("course",),  # the notebooks' checkers and scripts
    ("commands",),
]


def is_command(module: str) -> bool:
    parts = module.split(".")
    return parts[-1] in ("cli", "command", "__main__") or parts[-1].endswith("_command") or parts[1:2] == ["bench"]


def layer_of(module: str) -> str:
    """qwen_min.model.qwen -> "model"; qwen_min.formats -> "formats"; qwen_min.eval.humaneval_command -> "commands"."""
    return "commands" if is_command(module) else module.split(".")[1]


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Folder -> the folders its modules import (the package's own __init__ left out: it imports nothing itself)."""
    out: dict[str, set[str]] = {}
    for a, bs in graph.items():
        if a == "qwen_min":
            continue
        out.setdefault(layer_of(a), set()).update(layer_of(b) for b in bs if b != "qwen_min" and layer_of(b) != layer_of(a))
    return out


def test_every_folder_has_a_layer():
    named = {name for layer in LAYERS for name in layer}
    assert set(folder_graph(import_graph())) <= named, "add the new folder to LAYERS: " + ", ".join(
        sorted(set(folder_graph(import_graph())) - named))


def test_no_module_imports_from_a_layer_above_its_own():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = [f"{a} -> {b}" for a, bs in import_graph().items() if a != "qwen_min" for b in bs
              if b != "qwen_min" and rank.get(layer_of(b), 0) > rank.get(layer_of(a), 0)]
    assert not upward, "imports that go up a layer: " + ", ".join(sorted(upward))


def test_no_import_circles_between_folders():
    graph = folder_graph(import_graph())
    assert find_cycle({"a": {"b"}, "b": {"a"}})  # the finder works on this shape of graph too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_library_modules_never_import_command_modules():
    wrong = [f"{a} -> {b}" for a, bs in import_graph().items() if not is_command(a) for b in bs if is_command(b)]
    assert not wrong, ", ".join(sorted(wrong))


def test_help_imports_neither_torch_nor_any_command():
    """`qwen-min --help` is instant: the command table names modules, it does not import them."""
    code = ("import sys; from qwen_min.cli import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('qwen_min.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "['qwen_min.cli']"


@pytest.mark.parametrize("name", sorted(n for n in import_graph() if not n.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)


# Files that docstrings and comments name outside this repository (other projects' sources).
OTHER_PROJECTS = {"evalplus/codegen.py", "evalplus/provider/utility.py", "execution.py", "trl/trainer/dpo_trainer.py",
                  "langid.py"}
FILE_NAME = re.compile(r"(?<![\w./*<>-])((?:[\w-]+/)*[\w-]+\.py)\b")
MODULE_PATH = re.compile(r"(?<![\w.])qwen_min(?:\.\w+)+")


def prose(path: Path):
    """The docstrings and comments of a Python file."""
    text = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if doc := ast.get_docstring(node, clean=False):
                yield doc
    yield from (line.split("#", 1)[1] for line in text.splitlines() if "#" in line)


def test_docstrings_name_files_and_modules_that_exist():
    """A file named in prose (`model/qwen.py`, `tests/model/test_rope.py`) exists beside the module, in the package,
    in the repository or in tests/; a dotted name under qwen_min is a module or a name in one. Files that moved leave
    no stale names behind."""
    repo = PACKAGE.parent
    stale = []
    for path in [*PACKAGE.rglob("*.py"), *(repo / "tests").rglob("*.py")]:
        for text in prose(path):
            for name in FILE_NAME.findall(text):
                bases = (path.parent, PACKAGE, repo, repo / "tests")
                if name not in OTHER_PROJECTS and not any((base / name).exists() for base in bases):
                    stale.append(f"{path.relative_to(repo)}: {name}")
            for dotted in MODULE_PATH.findall(text):
                module, _, attribute = dotted.rpartition(".")
                as_path = lambda name: repo / name.replace(".", "/")
                files = [as_path(module).with_suffix(".py"), as_path(module) / "__init__.py"]
                if not (as_path(dotted).with_suffix(".py").exists() or as_path(dotted).is_dir()
                        or any(f.exists() and attribute in f.read_text(encoding="utf-8") for f in files)):
                    stale.append(f"{path.relative_to(repo)}: {dotted}")
    assert not stale, "names of files or modules that do not exist: " + ", ".join(sorted(set(stale)))
