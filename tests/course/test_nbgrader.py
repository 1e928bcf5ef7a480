"""nbgrader's own generate_assignment and autograde on the course (issue #29): the reference solutions score full
marks, the released stubs zero, and a student made of the known bypasses zero.

The course is built from the chapter notebooks stamped in memory (so this holds before `make stamp` too; that the
committed notebooks are stamped is test_student.py). Three students hand in:
- `reference`: the teacher's notebooks themselves (the solutions);
- `stubs`: the released notebooks as a student receives them;
- `bypass`: the released notebooks of the chapters the bypasses apply to, every exercise function written as one
  of the bypasses of tests/course/test_bypasses.py (the reference answer imported from the reference module, the
  same behind `sys.setprofile(None)`, in a thread, rebuilt from its code object, `mock.ANY`, the public library
  functions, and a prediction whose wrong first try sits in the record file next to the right second one).
Grading runs only each chapter's exercise section; about 4 minutes on 2 cores for all of it.
"""

import ast
import csv
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import nbformat
import pytest

import qwen_min.course.exercises as exercises
from qwen_min.course.exercises.predictions import DEFAULT_FILE
from qwen_min.course.exercises.watch import ANSWER_OF, all_answers
from qwen_min.course.nbgrader_course import (
    BEGIN,
    END,
    GRADED_TAG,
    SOLUTION_TAG,
    STUB,
    checker_calls,
    grade,
    release,
    stamped,
)
from qwen_min.course.walkthrough import chapter_notebooks

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
all_answers()
MODULES = sorted(m.name for m in pkgutil.iter_modules(exercises.__path__) if m.name[:2] == "ch")
BYPASS_CHAPTERS = ["00_overview", "02_rope", "03_attention", "04_model", "06_official_checkpoint", "07_quantization",
                   "08_pretraining", "09_sft", "10_dpo", "12_evaluation"]
ROTATION = ["reference", "setprofile", "thread", "rebuilt", "any"]
IMPORT_ANSWERS = ["from qwen_min.course.exercises.watch import ANSWER_OF, all_answers", "all_answers()"]
# the public library functions of the issue, by checker: the body of an answer that only calls them
LIBRARY = {
    "check_q8_0": ["import gguf", "return gguf.quants.Q8_0.quantize({0})"],
    "check_dequantize_q5_0": ["import gguf", "return gguf.quants.Q5_0.dequantize({0})"],
    "check_rms_norm_bf16": ["import torch",
                                       "return {1} * torch.rms_norm({0}.float(), ({0}.shape[-1],), eps={2}).to({0}.dtype)"],
    "check_gqa_attention": [
        "import torch.nn.functional as F",
        "return F.scaled_dot_product_attention({0}, {1}, {2}, is_causal=True, enable_gqa=True)"],
    "check_rope_at_positions": [
        "import torch", "from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb",
        "d = {0}.shape[-1]", "a = {1}[..., None].float() / {2} ** (torch.arange(0, d, 2).float() / d)",
        "a = torch.cat((a, a), dim=-1)", "return apply_rotary_pos_emb({0}, {0}, a.cos(), a.sin())[0]"],
}
# the "reference answer importable from the module the student imports", by checker
REFERENCE = ["check_simpo_loss", "check_fixed_lora_merge", "check_fixed_train",
             "check_pair_gradient"]
SECOND_TRY = "check_mlp_share"  # wrong first prediction recorded, the right one returned


def _key(checker: str) -> str:
    return next(f"{m}.{checker}" for m in MODULES if hasattr(importlib.import_module(f"{exercises.__name__}.{m}"), checker))


def _call(key: str, params: list[str]) -> str:
    fn = ANSWER_OF[key]
    if params:
        return f"ANSWER_OF[{key!r}]({', '.join(params)})"
    required = [p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
    return f"ANSWER_OF[{key!r}]({', '.join(['1.0'] * len(required))})"


def _bypass(kind: str, key: str, params: list[str]) -> list[str]:
    """The body of an exercise function that tries bypass `kind` with the registered answer of checker `key`."""
    call = _call(key, params)
    if kind == "library":
        return [line.format(*params) for line in LIBRARY[key.split(".")[1]]]
    if kind == "reference":
        return IMPORT_ANSWERS + [f"return {call}"]
    if kind == "setprofile":
        return ["import sys", "sys.setprofile(None)"] + IMPORT_ANSWERS + [f"return {call}"]
    if kind == "thread":
        return ["import threading"] + IMPORT_ANSWERS + [
            "out = []", f"worker = threading.Thread(target=lambda: out.append({call}))", "worker.start()", "worker.join()",
            "return out[0]"]
    if kind == "rebuilt":
        return ["import types"] + IMPORT_ANSWERS + [
            f"fn = ANSWER_OF[{key!r}]", "fn = getattr(fn, '__wrapped__', fn)",
            "mine = types.FunctionType(fn.__code__.replace(co_name='mine', co_filename='<mine>'), fn.__globals__, 'mine', "
            "fn.__defaults__, fn.__closure__)", f"return mine{call.split(']', 1)[1]}"]
    return ["from unittest import mock", "return mock.ANY"]


def _bypass_notebook(released, source, stem: str, record: dict) -> dict:
    """The released notebook with every stub replaced by a bypass; `record` gets the wrong first predictions."""
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    solutions = {n.name: n for c in source.cells if SOLUTION_TAG in c.metadata.get("tags", [])
                 for n in ast.parse(c.source).body if isinstance(n, ast.FunctionDef)}
    n = 0
    for cell in nb.cells:
        if SOLUTION_TAG not in cell.metadata.get("tags", []):
            continue
        checker_of = {ast.parse(call).body[0].value.args[0].id: name for call, name in checker_calls(cell.source)}
        lines = cell.source.splitlines()
        for node in reversed([n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)
                              and n.name in checker_of]):  # a helper no checker is handed keeps its stub
            checker = checker_of[node.name]
            key = _key(checker)
            params = [a.arg for a in node.args.args]
            stub = next(i for i in range(node.lineno - 1, node.end_lineno) if lines[i].strip() == STUB)
            indent = lines[stub][: len(lines[stub]) - len(lines[stub].lstrip())]
            if checker == SECOND_TRY:  # the right prediction, after a wrong one was recorded
                body = "\n".join(ast.unparse(statement) for statement in solutions[node.name].body).splitlines()
                record["MLP share of a 7B layer"] = 0.5
            else:
                kind = "library" if checker in LIBRARY else "reference" if checker in REFERENCE else ROTATION[n % len(ROTATION)]
                body = _bypass(kind, key, params)
                n += 1
            lines[stub:stub + 1] = [indent + line for line in body]
        cell.source = "\n".join(lines)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nbgrader")
    notebooks, submissions = root / "notebooks", root / "submissions"
    notebooks.mkdir()
    sources = {}
    for path in chapter_notebooks(NOTEBOOKS):
        sources[path.stem] = stamped(nbformat.read(path, as_version=4), path.stem)
        nbformat.write(sources[path.stem], notebooks / path.name)
    chapters = chapter_notebooks(notebooks)
    names = release(root / "course", root / "student", chapters)
    for student in ("reference", "stubs", "bypass"):
        (submissions / student).mkdir(parents=True)
    record = {}
    for name in names:
        nbformat.write(sources[name], submissions / "reference" / f"{name}.ipynb")
        released = nbformat.read(root / "student" / f"{name}.ipynb", as_version=4)
        nbformat.write(released, submissions / "stubs" / f"{name}.ipynb")
        if name in BYPASS_CHAPTERS:
            nbformat.write(_bypass_notebook(released, sources[name], name, record), submissions / "bypass" / f"{name}.ipynb")
    (submissions / "bypass" / DEFAULT_FILE).write_text(json.dumps(record))
    grades = grade(submissions, root / "course", root / "grades", chapters)
    with open(grades) as f:
        rows = list(csv.DictReader(f))
    return {"root": root, "names": names, "rows": rows, "sources": sources}


def _scores(graded, student):
    return {(r["chapter"], r["exercise"]): (float(r["score"]), float(r["max_score"])) for r in graded["rows"]
            if r["student"] == student}


def test_the_release_holds_no_solution_and_no_hidden_test(graded):
    for name in graded["names"]:
        cells = nbformat.read(graded["root"] / "student" / f"{name}.ipynb", as_version=4).cells
        text = "\n".join(c.source for c in cells)
        assert BEGIN not in text and END not in text and "HIDDEN TESTS" not in text and "hidden_inputs" not in text, name
        solutions = [c for c in cells if SOLUTION_TAG in c.metadata.get("tags", [])]
        assert solutions and all(STUB in c.source and not c.outputs for c in solutions), name


def test_every_exercise_is_graded_once_per_student(graded):
    exercises_of = {(name, c.metadata.nbgrader.grade_id.removeprefix(f"{name}-")) for name, nb in graded["sources"].items()
                    for c in nb.cells if GRADED_TAG in c.metadata.get("tags", [])}
    assert set(_scores(graded, "reference")) == exercises_of
    assert set(_scores(graded, "stubs")) == exercises_of
    assert {chapter for chapter, _ in _scores(graded, "bypass")} == set(BYPASS_CHAPTERS)


def test_the_reference_solutions_score_full_marks(graded):
    lost = {k: v for k, v in _scores(graded, "reference").items() if v[0] != v[1]}
    assert not lost, lost


def test_the_stubs_score_zero(graded):
    scored = {k: v for k, v in _scores(graded, "stubs").items() if v[0] != 0}
    assert not scored, scored


def test_every_bypass_scores_zero(graded):
    scores = _scores(graded, "bypass")
    assert len(scores) >= 25
    scored = {k: v for k, v in scores.items() if v[0] != 0}
    assert not scored, scored


def test_feedback_for_every_student_and_chapter(graded):
    feedback = graded["root"] / "grades" / "feedback"
    for student, chapters in (("reference", graded["names"]), ("bypass", BYPASS_CHAPTERS)):
        for name in chapters:
            html = feedback / student / f"{name}.html"
            assert html.exists() and "Graded:" in html.read_text(), html
