"""The student edition and the exercise cells: nbgrader's metadata in the chapter notebooks, its solution regions,
and the checker conventions.

The committed notebooks must carry the metadata `python -m qwen_min.course.nbgrader_course stamp` writes (an author
who adds an exercise runs `make stamp`); stamping is idempotent and keeps every cell but the solution and graded
ones; nbgrader's own generate_assignment turns a solution region into a stub that keeps the signature and the
checker calls. That stubs score zero, solutions full marks and bypasses zero under nbgrader's autograde is
tests/course/test_nbgrader.py; that a checker refuses the package's own function is checked here per module.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import nbformat
import pytest

import qwen_min.course.exercises as exercises
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.nbgrader_course import (
    BEGIN,
    END,
    GRADED_TAG,
    SOLUTION_TAG,
    checker_calls,
    section_bounds,
    setup_source,
    solution_regions,
    stamp,
    stamped,
)
from qwen_min.course.walkthrough import chapter_notebooks

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHAPTERS = chapter_notebooks(NOTEBOOKS)
WITH_EXERCISES = [p for p in CHAPTERS
                  if any(SOLUTION_TAG in c.metadata.get("tags", []) for c in nbformat.read(p, as_version=4).cells)]


def _tagged(nb, tag):
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def test_solution_regions_wrap_every_function_body_and_keep_the_rest():
    source = ('import torch\n'
              'from x import check_f, check_g\n\n'
              '@torch.no_grad()\n'
              'def f(a,\n'
              '      b=2):  # (b, t) -> (b,)\n'
              '    """Docstring stays."""\n'
              '    c = a + b  # a hint-free body\n'
              '    return c\n\n'
              'def g(x):\n'
              '    return x * 2\n\n'
              'check_f(f)\n'
              'check_g(g)')
    want = ('import torch\n'
            'from x import check_f, check_g\n\n'
            '@torch.no_grad()\n'
            'def f(a,\n'
            '      b=2):  # (b, t) -> (b,)\n'
            '    """Docstring stays."""\n'
            f'    {BEGIN}\n'
            '    c = a + b  # a hint-free body\n'
            '    return c\n'
            f'    {END}\n\n'
            'def g(x):\n'
            f'    {BEGIN}\n'
            '    return x * 2\n'
            f'    {END}\n\n'
            'check_f(f)\n'
            'check_g(g)')
    assert solution_regions(source) == want
    assert solution_regions(want) == want  # idempotent
    assert checker_calls(want) == [("check_f(f)", "check_f"), ("check_g(g)", "check_g")]


@pytest.mark.parametrize("source", ["answer = 42", "f = lambda x: x", "class A:\n    pass", "for i in range(3):\n    print(i)",
                                    "def f(x): return x"])
def test_solution_regions_refuse_what_would_leak_the_answer(source):
    with pytest.raises(ValueError, match="only imports, function definitions and checker calls|on its own lines"):
        solution_regions(source)


def test_stamping_names_the_bad_cell():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"),
                                         nbformat.v4.new_code_cell("answer = 42", metadata={"tags": [SOLUTION_TAG]})])
    with pytest.raises(ValueError, match="cell 1: line 1"):
        stamped(nb, "00_x")


def test_every_chapter_has_exercises():
    assert [p.name for p in CHAPTERS] == [p.name for p in WITH_EXERCISES]


def test_the_committed_notebooks_carry_the_nbgrader_metadata():
    """`make stamp` was run after the last change to an exercise cell (it would change nothing)."""
    assert stamp(CHAPTERS, check=True) == []


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_stamping_adds_one_graded_cell_per_checker_call_and_changes_nothing_else(path):
    nb = nbformat.read(path, as_version=4)
    new = stamped(nb, path.stem)
    assert stamped(new, path.stem) == new
    assert [c for c in new.cells if GRADED_TAG not in c.metadata.get("tags", [])
            and SOLUTION_TAG not in c.metadata.get("tags", [])] == \
           [c for c in nb.cells if GRADED_TAG not in c.metadata.get("tags", [])
            and SOLUTION_TAG not in c.metadata.get("tags", [])]
    solutions, graded = _tagged(new, SOLUTION_TAG), _tagged(new, GRADED_TAG)
    assert [name for c in solutions for _, name in checker_calls(c.source)] == \
           [c.metadata.nbgrader.grade_id.removeprefix(f"{path.stem}-") for c in graded]
    assert all(c.metadata.nbgrader.solution and not c.metadata.nbgrader.grade for c in solutions)
    assert all(c.metadata.nbgrader.grade and c.metadata.nbgrader.locked and "HIDDEN TESTS" in c.source for c in graded)
    first, end = section_bounds(new)  # every exercise cell lies in the graded section, which needs only imports
    assert all(first <= new.cells.index(c) < end for c in solutions + graded)
    setup_source(new)


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


def test_every_checker_a_notebook_calls_exists():
    checkers = {name for module in CHECKER_MODULES for name in dir(importlib.import_module(f"{exercises.__name__}.{module}"))
                if name.startswith("check_")}
    called = {name for path in WITH_EXERCISES for cell in _tagged(nbformat.read(path, as_version=4), SOLUTION_TAG)
              for _, name in checker_calls(cell.source)}
    assert called <= checkers, called - checkers


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
