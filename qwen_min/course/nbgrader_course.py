"""The nbgrader course: the chapter notebooks' exercises as assignments that nbgrader releases and autogrades.

    python -m qwen_min.course.nbgrader_course stamp [--check]             # nbgrader metadata into notebooks/*.ipynb
    python -m qwen_min.course.nbgrader_course release [--course DIR] [--out student]          # `make student`
    python -m qwen_min.course.nbgrader_course grade SUBMISSIONS [--course DIR] [--out grades]  # `make grade`

Design choices
- The chapter notebook is the single source of every exercise. An author writes a code cell tagged `solution`
  (imports, function definitions and checker calls only) after the chapter's "Exercises" heading; `stamp`
  turns it into nbgrader's form, idempotently: each function body between `### BEGIN SOLUTION` and
  `### END SOLUTION` (nbgrader replaces it by `raise NotImplementedError("your code here")`, keeping the
  signature and docstring), the cell marked as an nbgrader solution cell, and after it one locked, autograded
  cell per checker call (tag `graded`, 1 point). That cell's body is a hidden test: the same checker on other
  inputs (`hidden_inputs(salt)`, a salt per exercise), which the released notebook does not contain.
- An assignment is a whole chapter: `release` runs nbgrader's own `generate_assignment` on every chapter and
  copies the release next to notebooks/ (student/), so the student reads the chapter and does its exercises in one
  notebook whose relative paths (../data) resolve. The outputs of the chapter body are kept (ClearOutput is off);
  those of the solution and graded cells are removed in the course source, so no verdict or measurement leaks.
- Grading runs only the exercise section: `grade` cuts every submission down to the cells from the "Exercises"
  heading to its last graded cell, after one setup cell holding the chapter's imports that the section uses
  (taken from the teacher's notebook, not the submission). The chapter body (up to 3 minutes) is never run, and
  nbgrader's gradebook does not notice: the body holds no nbgrader cell. nbgrader's `autograde` then restores the
  graded cells from the gradebook (a student cannot edit a hidden test) and runs the section; `generate_feedback`
  writes one HTML per student and chapter, and grades.csv one row per student and exercise.
- A submission folder holds one folder per student with that student's notebooks (`<student>/<chapter>.ipynb`,
  or nbgrader's `<student>/<chapter>/<chapter>.ipynb`); the record of first predictions
  (`.qwen_min_predictions.json`) next to them travels along, so a prediction is graded as first recorded.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import copy
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import symtable
import sys
from pathlib import Path

from qwen_min.course.exercises.predictions import DEFAULT_FILE as PREDICTIONS_FILE
from qwen_min.course.walkthrough import chapter_notebooks

SOLUTION_TAG = "solution"  # the author's mark on a solution cell
GRADED_TAG = "graded"  # the autograded cells `stamp` writes (and rewrites)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("your code here")'
COURSE_ID = "qwen-min"
_EXERCISES = re.compile(r"^#+\s.*\bExercises\b", re.MULTILINE)
_KEPT = (ast.Import, ast.ImportFrom, ast.Expr)
_SCHEMA = 3


# ---------------------------------------------------------------------------- stamping
def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


def solution_regions(source: str) -> str:
    """The solution cell with every top-level function body (after its docstring) between BEGIN/END markers.

    >>> print(solution_regions('def area(w, h):  # metres\\n    "Rectangle area."\\n    return w * h\\n\\ncheck(area)'))
    def area(w, h):  # metres
        "Rectangle area."
        ### BEGIN SOLUTION
        return w * h
        ### END SOLUTION
    <BLANKLINE>
    check(area)
    """
    source = _without_markers(source)
    lines = source.splitlines()
    for node in reversed(ast.parse(source).body):  # bottom up, so earlier line numbers stay valid
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
            if not body:
                continue
            if body[0].lineno == node.lineno:
                raise ValueError(f"line {node.lineno}: write the body of {node.name} on its own lines")
            first, last = body[0].lineno - 1, node.end_lineno  # 0-based first body line, exclusive end
            indent = re.match(r"\s*", lines[first]).group(0)
            lines = lines[:first] + [indent + BEGIN] + lines[first:last] + [indent + END] + lines[last:]
        elif not isinstance(node, _KEPT):
            raise ValueError(f"line {node.lineno}: a solution cell may hold only imports, function definitions and "
                             f"checker calls, not {type(node).__name__}")
    return "\n".join(lines)


def checker_calls(source: str) -> list[tuple[str, str]]:
    """(checker call as written, checker name) for each top-level `check_*(...)` call of a solution cell."""
    calls = []
    for node in ast.parse(_without_markers(source)).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            name = ast.unparse(node.value.func).split(".")[-1]
            if name.startswith("check_"):
                calls.append((ast.unparse(node.value), name))
    return calls


def _salt(grade_id: str, course_salt: int) -> int:
    return int(hashlib.sha256(f"{course_salt}:{grade_id}".encode()).hexdigest()[:6], 16) + 1


def _cell_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def graded_cell(stem: str, call: str, checker: str, course_salt: int = 0) -> dict:
    """The autograded cell of one checker call: a hidden test running it on other inputs."""
    import nbformat

    grade_id = f"{stem}-{checker}"
    source = (f"# Graded: {checker} on inputs you have not seen (hidden test, 1 point).\n{'### BEGIN HIDDEN TESTS'}\n"
              f"from qwen_min.course.exercises import hidden_inputs\n\n"
              f"with hidden_inputs({_salt(grade_id, course_salt)}):\n    {call}\n{'### END HIDDEN TESTS'}")
    return nbformat.from_dict({  # keys in the order nbformat writes them
        "cell_type": "code", "execution_count": None, "id": _cell_id(grade_id),
        "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                  "schema_version": _SCHEMA, "solution": False, "task": False}, "tags": [GRADED_TAG]},
        "outputs": [], "source": source})


def stamped(nb, stem: str, course_salt: int = 0):
    """A copy of the notebook with nbgrader's metadata: solution regions and cells, one graded cell per checker call."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells, n = [], 0
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if GRADED_TAG in tags:
            continue  # rewritten below, after its solution cell
        cells.append(cell)
        if SOLUTION_TAG not in tags:
            continue
        n += 1
        try:
            cell.source = solution_regions(cell.source)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"cell {index}: {e}") from None
        cell.metadata = nbformat.from_dict(dict(sorted({**cell.metadata, "nbgrader": {
            "grade": False, "grade_id": f"{stem}-solution-{n}", "locked": False, "schema_version": _SCHEMA,
            "solution": True, "task": False}}.items())))
        cells += [graded_cell(stem, call, checker, course_salt) for call, checker in checker_calls(cell.source)]
    nb.cells = cells
    return nb


def stamp(paths: list[Path], check: bool, course_salt: int = 0) -> list[Path]:
    """Write (or, with check, only list) the notebooks whose nbgrader metadata is missing or stale; ValueError naming
    every notebook whose solution cell cannot be stamped."""
    import nbformat
    from nbformat.v4.rwbase import split_lines

    stale, errors = [], []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4)
        try:
            new = stamped(nb, path.stem, course_salt)
        except ValueError as e:
            errors.append(f"{path}: {e}")
            continue
        if new == nb:
            continue
        stale.append(path)
        if not check:  # the file's own layout: lines as lists, indent 1, keys sorted if they were, a final newline
            sort_keys = json.dumps(json.loads(text), indent=1, ensure_ascii=False, sort_keys=True) + "\n" == text
            path.write_text(json.dumps(split_lines(new), indent=1, ensure_ascii=False, sort_keys=sort_keys) + "\n",
                            encoding="utf-8")
    if errors:  # the other notebooks are stamped all the same
        raise ValueError("\n".join(errors))
    return stale


# ---------------------------------------------------------------------------- the exercise section of a chapter
def _is_nbgrader(cell) -> bool:
    return "nbgrader" in cell.get("metadata", {})


def section_bounds(nb) -> tuple[int, int]:
    """(first, end): the cells from the "Exercises" heading to the last nbgrader cell, end exclusive."""
    starts = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and _EXERCISES.search(c.source)]
    graded = [i for i, c in enumerate(nb.cells) if _is_nbgrader(c)]
    if not starts or not graded or graded[0] < starts[-1]:
        raise ValueError("no nbgrader cell after an 'Exercises' heading")
    return starts[-1], graded[-1] + 1


def _free_names(source: str) -> set[str]:
    """Global names a cell reads without binding them itself."""
    free, bound = set(), set()

    def walk(table):
        for symbol in table.get_symbols():
            if table.get_type() == "module":
                if symbol.is_assigned() or symbol.is_imported():
                    bound.add(symbol.get_name())
                elif symbol.is_referenced():
                    free.add(symbol.get_name())
            elif symbol.is_global() and symbol.is_referenced():
                free.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(source, "<cell>", "exec"))
    return free - bound


def setup_source(nb) -> str:
    """The imports of the chapter body that the exercise section reads, in notebook order; ValueError naming any other
    name the section would need from the body (an exercise must not depend on state the chapter computed)."""
    first, end = section_bounds(nb)
    code = [c.source for c in nb.cells[first:end] if c.cell_type == "code"]
    needed = set().union(*map(_free_names, code)) - set(dir(builtins)) if code else set()
    needed -= {n for source in code for n in _bound_by(source)}
    imports = []
    for cell in nb.cells[:first]:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = {(a.asname or a.name).split(".")[0] for a in node.names}
                if names & needed:
                    imports.append(ast.unparse(node))
                    needed -= names
    if needed:
        raise ValueError(f"the exercise section reads {', '.join(sorted(needed))} from the chapter body")
    return "\n".join(dict.fromkeys(imports))


def _bound_by(source: str) -> set[str]:
    table = symtable.symtable(source, "<cell>", "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def exercise_section(submitted, source):
    """The submitted notebook cut down to its exercise section, after a setup cell made from the teacher's `source`."""
    import nbformat

    nb = copy.deepcopy(submitted)
    first, end = section_bounds(nb)
    setup = nbformat.v4.new_code_cell(setup_source(source))
    setup["id"] = "setup"
    nb.cells = [setup] + nb.cells[first:end]
    return nb


# ---------------------------------------------------------------------------- the course folder
NBGRADER_CONFIG = f'''# Written by `python -m qwen_min.course.nbgrader_course`: the nbgrader settings of the qwen-min course.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "{COURSE_ID}"
c.ClearSolutions.code_stub = {{"python": {STUB!r}}}
c.ClearOutput.enabled = False  # the chapter body's outputs stay in the release; exercise cells have none
c.Execute.timeout = 900  # a graded section runs its checkers twice (visible and hidden inputs)
c.Execute.kernel_name = "python3"
'''


def write_course(course: Path, notebooks: list[Path]) -> list[str]:
    """The nbgrader course folder: its config and source/<chapter>/<chapter>.ipynb for every chapter with exercises
    (outputs of the nbgrader cells removed). Returns the assignment names."""
    import nbformat

    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    names = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if not any(_is_nbgrader(c) for c in nb.cells):
            continue
        for cell in nb.cells:
            if _is_nbgrader(cell) and cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        folder = course / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / path.name)
        names.append(path.stem)
    return names


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command in the course folder (its nbgrader config file applies); raise on failure."""
    command = [sys.executable, "-m", "nbgrader", *args, "--force", "--log-level=WARN"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its alembic
    done = subprocess.run(command, cwd=course, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {course}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def release(course: Path, out: Path | None, notebooks: list[Path]) -> list[str]:
    """generate_assignment for every chapter; copies each release notebook to out/ (the student edition)."""
    names = write_course(course, notebooks)
    for name in names:
        nbgrader(course, "generate_assignment", name)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(course / "release" / name / f"{name}.ipynb", out / f"{name}.ipynb")
    return names


def _submissions(folder: Path, names: list[str]) -> dict[tuple[str, str], Path]:
    """(student, chapter) -> submitted notebook, for <student>/<chapter>.ipynb and <student>/<chapter>/<chapter>.ipynb."""
    found = {}
    for student in sorted(p for p in folder.iterdir() if p.is_dir()):
        for name in names:
            for path in (student / f"{name}.ipynb", student / name / f"{name}.ipynb"):
                if path.exists():
                    found[student.name, name] = path
    return found


def grade(submissions: Path, course: Path, out: Path, notebooks: list[Path]) -> Path:
    """Autograde every submission's exercise section; feedback HTML and grades.csv (student x exercise) into out/."""
    import nbformat

    names = write_course(course, notebooks)
    sources = {name: nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4) for name in names}
    for name in names:
        if not (course / "release" / name).exists():
            nbgrader(course, "generate_assignment", name)  # records the assignment and its graded cells
    found = _submissions(submissions, names)
    if not found:
        raise ValueError(f"no submission in {submissions}: expected <student>/<chapter>.ipynb for chapters {names}")
    for (student, name), path in found.items():
        folder = course / "submitted" / student / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        nbformat.write(exercise_section(nbformat.read(path, as_version=4), sources[name]), folder / f"{name}.ipynb")
        if (path.parent / PREDICTIONS_FILE).exists():
            shutil.copy(path.parent / PREDICTIONS_FILE, folder / PREDICTIONS_FILE)
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted({name for _, name in found}):
        nbgrader(course, "autograde", name)
        nbgrader(course, "generate_feedback", name)
    rows = _scores(course, found)
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "chapter", "exercise", "score", "max_score"])
        writer.writerows(rows)
    for student, name in found:
        html = course / "feedback" / student / name / f"{name}.html"
        if html.exists():
            (out / "feedback" / student).mkdir(parents=True, exist_ok=True)
            shutil.copy(html, out / "feedback" / student / f"{name}.html")
    return out / "grades.csv"


def _scores(course: Path, found) -> list[tuple]:
    """(student, chapter, exercise, score, max_score) of every graded cell, from nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{(course / 'gradebook.db').resolve()}", COURSE_ID) as gradebook:
        for student, name in sorted(found):
            notebook = gradebook.find_submission_notebook(name, name, student)
            for g in sorted(notebook.grades, key=lambda g: g.cell.name):
                if g.cell.max_score:
                    exercise = g.cell.name.removeprefix(f"{name}-")
                    rows.append((student, name, exercise, g.score, g.max_score))
    return rows


# ---------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_stamp = sub.add_parser("stamp", help="write nbgrader's metadata into the chapter notebooks")
    p_stamp.add_argument("--check", action="store_true", help="only list the notebooks that lack it (exit 1 if any)")
    p_stamp.add_argument("--salt", type=int, default=0, help="changes every hidden test's inputs")
    p_release = sub.add_parser("release", help="generate_assignment for every chapter; the student edition")
    p_release.add_argument("--out", type=Path, default=Path("student"), help="where the release notebooks go")
    p_grade = sub.add_parser("grade", help="autograde a folder of submissions: <student>/<chapter>.ipynb")
    p_grade.add_argument("submissions", type=Path)
    p_grade.add_argument("--out", type=Path, default=Path("grades"), help="grades.csv and feedback/<student>/*.html")
    for p in (p_stamp, p_release, p_grade):
        p.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="the chapter notebooks' folder")
    for p in (p_release, p_grade):
        p.add_argument("--course", type=Path, default=Path("build/course"), help="the nbgrader course folder")
    args = parser.parse_args(argv)
    notebooks = chapter_notebooks(args.notebooks)
    try:
        if args.command == "stamp":
            stale = stamp(notebooks, args.check, args.salt)
            for path in stale:
                print(f"{path}: {'lacks or has stale nbgrader metadata' if args.check else 'stamped'}")
            return 1 if args.check and stale else 0
        if args.command == "release":
            names = release(args.course, args.out, notebooks)
            print(f"{len(names)} assignments released into {args.course / 'release'}; student edition in {args.out}/")
            print(f"open it with: make lab LAB_DIR={args.out}")
            return 0
        csv_path = grade(args.submissions, args.course, args.out, notebooks)
        print(f"grades: {csv_path}; feedback: {args.out / 'feedback'}/<student>/<chapter>.html")
        return 0
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
