"""Two models scored on the same prompts: the difference of their accuracies, with a 95% interval and a p-value.

    diff = paired_difference(before, after)      # before, after: one bool per prompt, the same prompts in order
    diff["difference"], diff["interval"], diff["p_value"]       # e.g. 0.12, (0.07, 0.17), 2e-6

Design choices
- Paired, not two independent samples: both models answer the very same prompts, and most prompts are right
  (or wrong) for both. Only the discordant prompts, right for one model and wrong for the other, carry
  information about the difference; two separate Wilson intervals that overlap can still hide a clear gain.
- The p-value is McNemar's exact test: under "no difference" each discordant prompt is a fair coin, so the
  count that one model wins is Binomial(discordant, 1/2); two-sided, the doubled smaller tail, capped at 1
  (what scipy.stats.binomtest(..., p=0.5) gives; tests/eval/test_paired.py compares).
- The interval is a seeded percentile bootstrap over prompts (10,000 resamples): resample prompts with
  replacement, keep each prompt's pair of marks together, take the 2.5% and 97.5% quantiles of the mean
  difference. It needs no normal approximation and stays inside [-1, 1]; the same seed gives the same interval.
- The bootstrap takes scores as well as marks (chapter 11: a reward model's score of each held-out reply).
- A gain "excludes zero" when the whole interval lies above 0; the p-value and the interval agree except
  at the edge.
"""

from __future__ import annotations

import math

import numpy as np


def mcnemar_exact(before: list[bool], after: list[bool]) -> float:
    """Two-sided exact McNemar p-value of paired marks.

    >>> round(mcnemar_exact([1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]), 4)   # 5 gained, 0 lost: 2 / 2**5
    0.0625
    """
    gained = sum(1 for b, a in zip(before, after) if a and not b)
    lost = sum(1 for b, a in zip(before, after) if b and not a)
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap(before: list[bool], after: list[bool], resamples: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of mean(after) - mean(before), prompts resampled with their two values: marks
    (right / wrong) or scores (a reward model's, chapter 11)."""
    diffs = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)  # (n,) each in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(1)  # (resamples,)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(before: list[bool], after: list[bool], resamples: int = 10_000, seed: int = 0) -> dict:
    """Accuracy of `after` minus that of `before` on the same prompts: difference, 95% interval, McNemar p, counts.

    >>> d = paired_difference([0] * 150 + [1] * 50, [1] * 40 + [0] * 110 + [1] * 45 + [0] * 5)   # 40 gained, 5 lost
    >>> d["difference"], d["gained"], d["lost"], d["interval"][0] > 0, d["p_value"] < 1e-6
    (0.175, 40, 5, True, True)
    """
    if len(before) != len(after) or not before:
        raise ValueError(f"paired marks need the same non-zero number of prompts, got {len(before)} and {len(after)}")
    return {"difference": (sum(map(bool, after)) - sum(map(bool, before))) / len(before),
            "interval": paired_bootstrap(before, after, resamples, seed=seed),
            "p_value": mcnemar_exact(before, after),
            "gained": sum(1 for b, a in zip(before, after) if a and not b),
            "lost": sum(1 for b, a in zip(before, after) if b and not a), "prompts": len(before)}
