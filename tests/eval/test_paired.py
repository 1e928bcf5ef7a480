"""Paired differences: McNemar's exact p-value equals scipy's binomial test, the bootstrap interval agrees with a
brute-force enumeration on a tiny case and with the normal approximation on a large one."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy.stats import binomtest

from qwen_min.eval.paired import mcnemar_exact, paired_bootstrap, paired_difference


def marks(n_both, n_gained, n_lost, n_neither, seed=0):
    rows = [(1, 1)] * n_both + [(0, 1)] * n_gained + [(1, 0)] * n_lost + [(0, 0)] * n_neither
    random.Random(seed).shuffle(rows)
    return [b for b, _ in rows], [a for _, a in rows]


@pytest.mark.parametrize("gained,lost", [(0, 0), (5, 0), (12, 7), (3, 30), (40, 25)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_prompts(gained, lost):
    before, after = marks(20, gained, lost, 30)
    expected = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    assert mcnemar_exact(before, after) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_quantiles_match_the_exact_resampling_distribution():
    """3 prompts: all 27 resamples enumerated give the exact distribution of the mean difference."""
    before, after = [0, 1, 0], [1, 1, 0]
    diffs = np.array(after) - np.array(before)
    exact = np.array([diffs[list(idx)].mean() for idx in itertools.product(range(3), repeat=3)])
    lo, hi = paired_bootstrap(before, after, resamples=200_000, seed=3)
    assert lo == pytest.approx(np.quantile(exact, 0.025, method="inverted_cdf"), abs=1e-9)
    assert hi == pytest.approx(np.quantile(exact, 0.975, method="inverted_cdf"), abs=1e-9)


def test_bootstrap_interval_is_close_to_the_normal_approximation_when_large():
    before, after = marks(300, 90, 40, 370)
    d = np.array(after, float) - np.array(before, float)
    half = 1.96 * d.std() / np.sqrt(len(d))
    lo, hi = paired_bootstrap(before, after)
    assert lo == pytest.approx(d.mean() - half, abs=0.005) and hi == pytest.approx(d.mean() + half, abs=0.005)


def test_paired_difference_is_seeded_and_refuses_unpaired_input():
    before, after = marks(50, 20, 5, 125)
    assert paired_difference(before, after) == paired_difference(before, after)
    d = paired_difference(before, after)
    assert (d["gained"], d["lost"], d["prompts"]) == (20, 5, 200) and d["difference"] == pytest.approx(15 / 200)
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_difference([1, 0], [1])
