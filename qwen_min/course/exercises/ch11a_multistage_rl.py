"""Checkers for the exercises of notebooks/11a_multistage_rl.ipynb.

    from qwen_min.course.exercises.ch11a_multistage_rl import check_mcnemar, check_fixed_paired_interval
    check_mcnemar(my_mcnemar)                       # build: my_mcnemar(before, after) -> exact two-sided McNemar p
    check_fixed_paired_interval(my_interval)        # debug: my_interval(before, after, resamples) -> (lo, hi)
"""

from __future__ import annotations

import random

import numpy as np

from qwen_min.course.exercises import compare, seed
from qwen_min.course.exercises.reference import ch11a_multistage_rl as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.eval.paired import mcnemar_exact, paired_bootstrap, paired_difference


def paired_marks(shuffle_seed: int, both: int, gained: int, lost: int, neither: int) -> tuple[list[bool], list[bool]]:
    """(before, after) marks of the same prompts, shuffled with `shuffle_seed`: `gained` right only after, `lost` only before."""
    rows = [(True, True)] * both + [(False, True)] * gained + [(True, False)] * lost + [(False, False)] * neither
    random.Random(shuffle_seed).shuffle(rows)
    return [b for b, _ in rows], [a for _, a in rows]


def check_mcnemar(student) -> None:
    """student(before, after) -> the two-sided exact McNemar p-value (a float) of two lists of marks."""
    cases = [(0, 5, 0, 3), (20, 12, 7, 30), (50, 3, 30, 17), (100, 40, 25, 35), (10, 0, 0, 10), (60, 9, 9, 2)]
    inputs = [paired_marks(seed(k), *case) for k, case in enumerate(cases)]
    compare("mcnemar", student, ref.mcnemar_p, inputs, atol=1e-12,
            hint="only the prompts where the two models disagree count; under 'no difference' each is a fair coin. "
                 "Double the probability of a split at least as uneven as the one seen, and cap it at 1.",
            forbidden=Forbidden.of([mcnemar_exact, paired_difference], packages=["scipy", "statsmodels"]))


def buggy_paired_interval(before, after, resamples=20_000):
    """95% percentile-bootstrap interval of mean(after) - mean(before), seeded. One bug."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    rng = np.random.default_rng(0)
    means_after = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(1)
    means_before = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(1)
    lo, hi = np.quantile(means_after - means_before, [0.025, 0.975])
    return float(lo), float(hi)


def check_fixed_paired_interval(student) -> None:
    """student(before, after, resamples) -> (lo, hi): the notebook's `buggy_paired_interval`, fixed."""
    cases = [(150, 40, 5, 205), (300, 20, 25, 55), (120, 60, 10, 210)]  # most prompts right (or wrong) for both
    inputs = [(*paired_marks(seed(10 + k), *case), 20_000) for k, case in enumerate(cases)]
    compare("fixed_paired_interval", student, ref.paired_interval, inputs, atol=0.01,
            hint="both models answered the SAME prompts: a resample draws prompts, and each drawn prompt brings both of "
                 "its marks. Drawing the two models' prompts separately forgets that most prompts are right (or wrong) "
                 "for both, and widens the interval.",
            forbidden=Forbidden.of([paired_bootstrap, paired_difference], packages=["scipy", "statsmodels"]))


PACKAGE_EQUIVALENTS = {"check_mcnemar": [mcnemar_exact], "check_fixed_paired_interval": [paired_bootstrap]}
