"""Checkers for the exercises of notebook 12_evaluation (references: reference/ch12_evaluation.py).

    from qwen_min.course.exercises import ch12_evaluation as ex
    ex.check_bootstrap_interval(my_interval)    # build: my_interval(rates, n_resamples, seed) -> (low, high), the
                                                #        95% percentile bootstrap over problems
    ex.check_interval_width(my_prediction)      # predict, then measure: my_prediction() -> the width of the 95%
                                                #        range of pass@1 on 20 problems when the true rate is 0.6
    ex.check_program(my_program)                # debug: my_program(problem, code) -> the program to run;
                                                #        ex.buggy_program holds the planted bug
"""

from __future__ import annotations

import random

from qwen_min.course.exercises import ExerciseFailed, _refuse, compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch12_evaluation as ref
from qwen_min.course.exercises.watch import Forbidden, watching
from qwen_min.eval.humaneval import load_problems, program
from qwen_min.eval.passk import wilson_interval
from qwen_min.eval.sandbox import run_programs


def check_bootstrap_interval(student) -> None:
    """student(rates (one per problem, 0..1), n_resamples, seed) -> (low, high): the 95% percentile-bootstrap interval
    of the mean pass rate over problems. Compared with the reference's within 0.01 (both resample 20,000 times)."""
    rng = random.Random(seed(12))
    inputs = [([float(rng.random() < 0.6) for _ in range(164)], 20_000, 0),   # one greedy answer per problem
              ([rng.randrange(11) / 10 for _ in range(80)], 20_000, 1),      # 10 samples per problem
              ([float(rng.random() < 0.3) for _ in range(20)], 20_000, 2),   # a 20-problem subset
              ([0.5] * 30, 20_000, 3)]                                        # no spread between problems: no width
    compare("bootstrap_interval", lambda *args: tuple(float(v) for v in student(*args)), ref.bootstrap_interval,
            inputs, atol=0.01,
            hint="resample the PROBLEMS: draw as many problem indices as there are problems, with replacement, take "
                 "the mean rate of each resample, and read the 2.5th and 97.5th percentiles of those means.",
            forbidden=[wilson_interval])


def check_interval_width(student) -> None:
    """student() -> predicted width (a fraction, e.g. 0.1) of the central 95% of measured pass@1 over 20 problems
    when the model solves each problem with probability 0.6. The prediction is read before the simulation."""
    predicted = prediction("interval_width", student)
    if type(predicted) not in (int, float) or not 0 <= predicted <= 1:
        raise ExerciseFailed(f"✗ interval_width: return a width between 0 and 1 (a fraction), got {predicted!r}")
    measured = ref.measured_interval_width()
    judge_prediction("interval_width", predicted, measured, abs(predicted - measured) <= 0.1,
                     "The standard error of a fraction is sqrt(p (1 - p) / n): with n = 20 it is ~0.11, and 95% "
                     "spans about four of them. Twenty problems tell a 40% model from an 80% one, not 60% from 65%.")


def buggy_program(problem: dict, code: str) -> str:
    """The program that passes iff `code` solves `problem` (one planted bug)."""
    return f"{code}\n\n{problem['test']}\n"


def check_program(student) -> None:
    """student(problem, code) -> program text: it must pass the canonical solution and fail a wrong one."""
    problems = load_problems(3)
    right = [p["prompt"] + p["canonical_solution"] for p in problems]
    wrong = [p["prompt"] + "    return None\n" for p in problems]
    try:
        with watching(Forbidden.of([program])) as seen:
            programs = [student(p, c) for p, c in zip(problems * 2, right + wrong)]
    except NotImplementedError:
        raise ExerciseFailed("✗ program: not implemented yet") from None
    _refuse("program", seen)
    if not all(type(text) is str for text in programs):
        raise ExerciseFailed("✗ program: return the program as a str")
    outcomes = run_programs(programs, timeout=5.0)
    passed = [o.passed for o in outcomes]
    if passed[3:] != [False] * 3:
        raise ExerciseFailed("✗ program: a solution that returns None passes: the test file defines check(candidate) "
                             "but does anything call it?")
    if passed[:3] != [True] * 3:
        errors = [o.error for o in outcomes[:3] if not o.passed]
        raise ExerciseFailed(f"✗ program: the canonical solutions fail ({errors[0]}): what name does check expect?")
    print("✓ program: the canonical solutions pass and the wrong ones fail")


PACKAGE_EQUIVALENTS = {
    "check_program": [program],
}
