"""Checkers for the exercises of notebook 12_evaluation.

    from qwen_min.course.exercises import ch12_evaluation as ex
    ex.check_pass_at_k(my_pass_at_k)            # build: my_pass_at_k(n, c, k) -> the unbiased estimator
    ex.check_interval_width(my_prediction)      # predict, then measure: my_prediction() -> the width of the 95%
                                                #        range of pass@1 on 20 problems when the true rate is 0.6
    ex.check_program(my_program)                # debug: my_program(problem, code) -> the program to run;
                                                #        ex.buggy_program holds the planted bug
"""

from __future__ import annotations

import random
from math import comb

from qwen_min.course.exercises import ExerciseFailed, _watching, compare, judge_prediction, prediction
from qwen_min.eval.humaneval import load_problems, program
from qwen_min.eval.passk import mean_pass_at_k, pass_at_k
from qwen_min.eval.sandbox import run_programs


def _pass_at_k_exact(n, c, k):
    return 1.0 - comb(n - c, k) / comb(n, k)


def check_pass_at_k(student) -> None:
    """student(n, c, k) -> 1 - C(n-c, k) / C(n, k), without overflow for n in the hundreds."""
    inputs = [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 8, 3), (20, 0, 10), (200, 13, 100), (200, 190, 20),
              (500, 40, 250)]
    compare("pass_at_k", student, _pass_at_k_exact, inputs, atol=1e-9,
            hint="pass@k is the chance that k samples drawn WITHOUT replacement from the n include a correct one; "
                 "1 - (1 - c/n)^k draws with replacement (biased low).",
            forbidden=[pass_at_k, mean_pass_at_k])


def check_interval_width(student) -> None:
    """student() -> predicted width (a fraction, e.g. 0.1) of the central 95% of measured pass@1 over 20 problems
    when the model solves each problem with probability 0.6. The prediction is read before the simulation."""
    predicted = prediction("interval_width", student)
    if not isinstance(predicted, (int, float)) or not 0 <= predicted <= 1:
        raise ExerciseFailed(f"✗ interval_width: return a width between 0 and 1 (a fraction), got {predicted!r}")
    rng = random.Random(12)
    scores = sorted(sum(rng.random() < 0.6 for _ in range(20)) / 20 for _ in range(20_000))
    measured = round(scores[int(0.975 * len(scores))] - scores[int(0.025 * len(scores))], 2)
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
    with _watching([program]) as used:
        try:
            programs = [student(p, c) for p, c in zip(problems * 2, right + wrong)]
        except NotImplementedError:
            raise ExerciseFailed("✗ program: not implemented yet") from None
    if used:
        raise ExerciseFailed(f"✗ program: calls the package's own {used[0]}, which computes the answer; write it yourself.")
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
    "check_pass_at_k": [pass_at_k],
    "check_program": [program],
}
