"""What every notebook must do with the commands it runs: check their return code where they run."""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def unchecked_main_calls(source: str) -> list[int]:
    """Line numbers of `main([...])` calls that are not `assert main([...]) == 0`.

    >>> unchecked_main_calls("main(['sft'])\\nassert main(['dpo']) == 0\\nrc = cli.main(['x'])")
    [1, 3]
    """
    code = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    tree = ast.parse(code)
    checked = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            cmp = node.test
            if (len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.Eq) and isinstance(cmp.comparators[0], ast.Constant)
                    and cmp.comparators[0].value == 0 and isinstance(cmp.left, ast.Call)):
                checked.add(id(cmp.left))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and ((isinstance(n.func, ast.Name) and n.func.id == "main")
                  or (isinstance(n.func, ast.Attribute) and n.func.attr == "main"))]
    return sorted(n.lineno for n in calls if id(n) not in checked)


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 11


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_command_run_in_a_notebook_asserts_its_return_code(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    bad = []
    for number, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            bad += [f"cell {number} line {line}" for line in unchecked_main_calls("".join(cell["source"]))]
    assert not bad, f"{path.name}: write `assert main([...]) == 0` at " + ", ".join(bad)
