"""The student edition (`make student`) and the exercise solutions run through their checkers.

For every chapter notebook: the stubs of the student edition fail the checkers with "not implemented
yet" (the solutions are run against the same checkers once, by nbval, which executes every notebook);
every other cell is copied unchanged. For every chapter's checker module: each answer listed in its
PACKAGE_EQUIVALENTS (the package's own function passed straight in) is refused by its checker.
One fast student notebook is executed to show it runs up to its first exercise.
"""

import ast
import contextlib
import importlib
import io
import pkgutil
from pathlib import Path

import nbformat
import pytest

import qwen_min.course.exercises as exercises
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.student import EXERCISE_TAG, SOLUTION_TAG, STUB, stub_source, student_edition, unresolved_paths
from qwen_min.course.walkthrough import chapter_notebooks

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHAPTERS = chapter_notebooks(NOTEBOOKS)
WITH_EXERCISES = [p for p in CHAPTERS
                  if any(SOLUTION_TAG in c.metadata.get("tags", []) for c in nbformat.read(p, as_version=4).cells)]


def _tagged(nb, tag):
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def _functions(source):
    """name -> (decorators, arguments) of the top-level functions."""
    return {n.name: ([ast.dump(d) for d in n.decorator_list], ast.dump(n.args))
            for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def test_stub_source_keeps_signatures_imports_and_checker_calls():
    source = ('import torch\n'
              'from x import check_f, check_g\n\n'
              '@torch.no_grad()\n'
              'def f(a,\n'
              '      b=2):  # (b, t) -> (b,)\n'
              '    """Docstring stays."""\n'
              '    c = a + b  # a hint-free body\n'
              '    return c\n\n'
              'def g(x): return x * 2\n\n'
              'check_f(f)\n'
              'check_g(g)')
    assert stub_source(source) == ('import torch\n'
                                   'from x import check_f, check_g\n\n'
                                   '@torch.no_grad()\n'
                                   'def f(a,\n'
                                   '      b=2):  # (b, t) -> (b,)\n'
                                   '    """Docstring stays."""\n'
                                   f'    {STUB}\n\n'
                                   'def g(x):\n'
                                   f'    {STUB}\n\n'
                                   'check_f(f)\n'
                                   'check_g(g)')


@pytest.mark.parametrize("source", ["answer = 42", "f = lambda x: x", "class A:\n    pass", "for i in range(3):\n    print(i)"])
def test_stub_source_refuses_statements_that_would_leak_the_answer(source):
    with pytest.raises(ValueError, match="only imports, function definitions and checker calls"):
        stub_source(source)


def test_student_edition_names_the_bad_cell():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"),
                                         nbformat.v4.new_code_cell("answer = 42", metadata={"tags": [SOLUTION_TAG]})])
    with pytest.raises(ValueError, match="cell 1: line 1"):
        student_edition(nb)


def test_every_chapter_has_exercises():
    assert [p.name for p in CHAPTERS] == [p.name for p in WITH_EXERCISES]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_student_edition_changes_only_the_solution_cells(path):
    nb = nbformat.read(path, as_version=4)
    student = student_edition(nb)
    assert student.metadata == nb.metadata and len(student.cells) == len(nb.cells)
    for original, copy in zip(nb.cells, student.cells):
        if SOLUTION_TAG not in original.metadata.get("tags", []):
            assert copy == original
            continue
        assert EXERCISE_TAG in copy.metadata["tags"] and SOLUTION_TAG not in copy.metadata["tags"]
        assert copy.outputs == [] and copy.execution_count is None
        assert _functions(copy.source) == _functions(original.source)  # same names, decorators, signatures
        for fn in (n for n in ast.parse(copy.source).body if isinstance(n, ast.FunctionDef)):
            assert ast.dump(fn.body[-1]) == ast.dump(ast.parse(STUB).body[0])
    assert unresolved_paths(student, path.parent) == []  # written next to notebooks/, its paths resolve


def _run_exercises(path, cells):
    """Execute the exercise cells statement by statement in one namespace holding the notebook's imports.

    Yields (checker call, its printed verdict or the ExerciseFailed it raised). Only the imports the
    cells use are executed, so this stays fast and shows the exercises need nothing else from the notebook.
    """
    nb = nbformat.read(path, as_version=4)
    trees = [ast.parse(c.source) for c in cells]
    used = {n.id for tree in trees for n in ast.walk(tree) if isinstance(n, ast.Name)}
    namespace = {"__name__": "__exercise__"}
    for cell in nb.cells:
        if cell.cell_type != "code" or SOLUTION_TAG in cell.metadata.get("tags", []):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and {
                    (a.asname or a.name).split(".")[0] for a in node.names} & used:
                exec(compile(ast.Module([node], []), path.name, "exec"), namespace)
    for tree in trees:
        for node in tree.body:
            code = compile(ast.Module([node], []), path.name, "exec")
            if not isinstance(node, ast.Expr):
                exec(code, namespace)
                continue
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(code, namespace)
                yield ast.unparse(node), out.getvalue()
            except ExerciseFailed as e:
                yield ast.unparse(node), e


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_checkers_fail_the_stubs(path):
    """The stubs of the student edition fail every checker call with "not implemented yet". That the solutions pass
    the same calls is checked once, by nbval: it runs each notebook top to bottom, solution cells included, and a
    checker that refuses an answer raises, which fails the notebook (test_solution_cells_end_with_their_checker_calls)."""
    nb = nbformat.read(path, as_version=4)
    calls = [ast.unparse(node) for cell in _tagged(nb, SOLUTION_TAG) for node in ast.parse(cell.source).body
             if isinstance(node, ast.Expr)]
    stubs = list(_run_exercises(path, _tagged(student_edition(nb), EXERCISE_TAG)))
    assert [call for call, _ in stubs] == calls and calls
    for call, verdict in stubs:
        assert isinstance(verdict, ExerciseFailed) and "not implemented yet" in str(verdict), (call, verdict)


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_solution_cells_end_with_their_checker_calls(path):
    """What makes nbval's run of a solution cell a check: its expression statements are checker calls that raise
    ExerciseFailed on a wrong answer (a bare expression would let a failing answer pass silently)."""
    for cell in _tagged(nbformat.read(path, as_version=4), SOLUTION_TAG):
        calls = [node.value for node in ast.parse(cell.source).body if isinstance(node, ast.Expr)]
        assert calls, cell.source
        for call in calls:
            assert isinstance(call, ast.Call) and ast.unparse(call.func).split(".")[-1].startswith(("check_", "show_verdict")), \
                ast.unparse(call)


CHECKER_MODULES = sorted(m.name for m in pkgutil.iter_modules(exercises.__path__) if m.name[:2] == "ch")


def test_every_chapter_with_exercises_has_a_checker_module():
    chapter = lambda name: name.split("_")[0]  # "08b_data_and_scaling" -> "08b"
    assert {chapter(p.stem) for p in WITH_EXERCISES} <= {chapter(name[2:]) for name in CHECKER_MODULES}


@pytest.mark.parametrize("module", CHECKER_MODULES)
def test_checkers_refuse_the_package_s_own_function(module):
    """The convention of qwen_min/course/exercises/__init__.py: each module lists, per checker, answers that only
    call the package's implementation; the checker must refuse every one of them."""
    mod = importlib.import_module(f"{exercises.__name__}.{module}")
    assert hasattr(mod, "PACKAGE_EQUIVALENTS"), f"{module} defines no PACKAGE_EQUIVALENTS ({{}} if none applies)"
    for check_name, answers in mod.PACKAGE_EQUIVALENTS.items():
        check = getattr(mod, check_name)
        for answer in answers:
            with pytest.raises(ExerciseFailed, match="calls the package's own"):
                check(answer)


def test_student_notebook_runs_up_to_its_first_exercise(tmp_path):
    from nbclient import NotebookClient

    path = NOTEBOOKS / "00_overview.ipynb"
    student = student_edition(nbformat.read(path, as_version=4))
    NotebookClient(student, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    code = [c for c in student.cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(code) if EXERCISE_TAG in c.metadata.get("tags", []))
    errors = [[o for o in c.outputs if o.output_type == "error"] for c in code]
    assert not any(errors[:first]), errors[:first]
    for cell, cell_errors in zip(code[first:], errors[first:]):
        if EXERCISE_TAG in cell.metadata["tags"]:
            assert [(e.ename, "not implemented yet" in e.evalue) for e in cell_errors] == [("ExerciseFailed", True)]
