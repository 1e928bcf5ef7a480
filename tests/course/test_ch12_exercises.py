"""The chapter 12 exercise checkers accept right answers and reject plausible wrong ones."""

import numpy as np
import pytest

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch12_evaluation import check_bootstrap_interval


def _bootstrap(rates, n_resamples, seed):
    rates = np.asarray(rates, dtype=float)
    means = np.random.default_rng(seed).choice(rates, size=(n_resamples, len(rates))).mean(1)
    return tuple(float(q) for q in np.quantile(means, [0.025, 0.975]))


def _over_samples(rates, n_resamples, seed):  # 10 samples per problem taken as independent trials: too narrow
    p, n = float(np.mean(rates)), 10 * len(rates)
    half = 1.96 * (p * (1 - p) / n) ** 0.5
    return p - half, p + half


def test_bootstrap_interval_checker():
    check_bootstrap_interval(_bootstrap)
    with pytest.raises(ExerciseFailed, match="bootstrap_interval: wrong"):
        check_bootstrap_interval(_over_samples)
