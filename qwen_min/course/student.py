"""`make student`: the student edition of the notebooks, every exercise solution replaced by a stub.

    python -m qwen_min.course.student [--out student] [notebooks/*.ipynb]

Design choices
- A solution cell (cell tag `solution`) becomes an exercise cell (tag `exercise`). Each top-level
  function keeps its decorators, its signature (with any comment on it) and its docstring; its body
  becomes `raise NotImplementedError("your code here")`. Imports and checker calls stay, so running
  the stub prints the checker's verdict "not implemented yet", and names a cell imports (such as
  `ex` in chapter 01) still exist for the exercise cells after it.
- Anything else at the top level of a solution cell (an assignment, a loop, a class) would hand out
  the answer or break the stub, so it is refused with an error naming the notebook and cell.
- The stubs are cut out of the source text at `ast` positions instead of regenerated with
  `ast.unparse`, so comments and layout outside the removed bodies survive.
- Only those cells change: their outputs and execution counts are cleared; every other cell is copied
  as is, outputs included, so students see what each step should print.
- The edition is written next to notebooks/ by default (student/), so relative paths the notebooks
  use, such as ../data/qwen2.5, resolve the same; the tool warns about any that would not.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

from qwen_min.course.walkthrough import chapter_notebooks

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
STUB = 'raise NotImplementedError("your code here")'
_KEPT = (ast.Import, ast.ImportFrom, ast.Expr)
_RELATIVE_PATH = re.compile(r"""["'](\.\./[^"']+)["']""")


def stub_source(source: str) -> str:
    """The exercise version of a solution cell: every top-level function body replaced by a stub.

    >>> print(stub_source('@cache\\ndef area(w, h):  # metres\\n    "Rectangle area."\\n    return w * h\\n\\ncheck(area)'))
    @cache
    def area(w, h):  # metres
        "Rectangle area."
        raise NotImplementedError("your code here")
    <BLANKLINE>
    check(area)
    """
    lines = source.splitlines()
    for node in reversed(ast.parse(source).body):  # bottom up, so earlier line numbers stay valid
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = _stub_function(lines, node)
        elif not isinstance(node, _KEPT):
            raise ValueError(f"line {node.lineno}: a solution cell may hold only imports, function definitions and "
                             f"checker calls, not {type(node).__name__}")
    return "\n".join(lines)


def _stub_function(lines: list[str], node: ast.FunctionDef) -> list[str]:
    has_docstring = ast.get_docstring(node, clean=False) is not None
    body = node.body[1:] if has_docstring else node.body
    if not body:
        return lines
    first = body[0]
    # col_offset counts UTF-8 bytes; the text before the body is the signature of a one-line `def f(x): return x`
    before = lines[first.lineno - 1].encode()[: first.col_offset].decode()
    if before.strip():
        head = lines[: first.lineno - 1] + [before.rstrip()]
        indent = " " * (node.col_offset + 4)
    else:
        head = lines[: first.lineno - 1]
        indent = before
    return head + [indent + STUB] + lines[node.end_lineno:]


def student_edition(nb):
    """A copy of the notebook (an nbformat node) with every solution cell stubbed, tagged `exercise` and cleared."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG not in tags:
            continue
        try:
            cell.source = stub_source(cell.source)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"cell {index}: {e}") from None
        cell.metadata["tags"] = [EXERCISE_TAG if tag == SOLUTION_TAG else tag for tag in tags]
        cell.outputs = []
        cell.execution_count = None
    return nb


def unresolved_paths(nb, folder: Path) -> list[str]:
    """The relative paths ("../...") in the notebook's code that do not exist when it runs from `folder`."""
    found = {m for cell in nb.cells if cell.cell_type == "code" for m in _RELATIVE_PATH.findall(cell.source)}
    return sorted(p for p in found if not (folder / p).exists())


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=Path("student"), help="folder for the student edition")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or chapter_notebooks()
    if not notebooks:
        print("error: no notebooks given and none in notebooks/", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        try:
            student = student_edition(nb)
        except ValueError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
        nbformat.write(student, args.out / path.name)
        n = sum(EXERCISE_TAG in c.get("metadata", {}).get("tags", []) for c in student.cells)
        print(f"{args.out / path.name}: {n} exercise cell{'s' if n != 1 else ''}")
        for missing in unresolved_paths(student, args.out):
            print(f"  warning: {missing} does not exist relative to {args.out}/; write the edition next to notebooks/")
    print(f"\nopen it with: make lab LAB_DIR={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
