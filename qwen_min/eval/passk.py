"""pass@k, the unbiased estimator of the Codex paper, and a confidence interval for pass@1.

Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", arXiv 2107.03374):
draw n >= k samples per problem, count the c that pass; the chance that k samples drawn
without replacement from those n contain at least one correct one is

    pass@k = 1 - C(n - c, k) / C(n, k)

and its mean over problems is an unbiased estimate of pass@k. (1 - (1 - c/n)^k, the naive
plug-in, is biased low.) With greedy decoding n = k = 1 and pass@1 is the fraction solved.

Design choices
- The ratio C(n-c, k) / C(n, k) is computed as a product prod_{i=n-c+1}^{n} (1 - k/i), as in
  the paper's numpy snippet: no huge binomials, no overflow for n in the hundreds.
- The interval is Wilson's score interval (95%: z = 1.96): unlike the normal approximation
  it stays inside [0, 1] and behaves at 0 or n successes. It treats the problems as
  independent draws from a population of problems like them, which is the question a
  reader of "pass@1 = 0.62" asks: how much would it move on another set of 164.
"""

from __future__ import annotations

import math


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c pass.

    >>> pass_at_k(1, 1, 1), pass_at_k(10, 0, 5), round(pass_at_k(10, 3, 1), 6)
    (1.0, 0.0, 0.3)
    >>> round(pass_at_k(10, 3, 5), 4)   # 1 - C(7,5)/C(10,5) = 1 - 21/252
    0.9167
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (n, c) per problem.

    >>> mean_pass_at_k([(1, 1), (1, 0), (1, 1), (1, 1)], k=1)
    0.75
    """
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    >>> [round(x, 3) for x in wilson_interval(101, 164)]
    [0.54, 0.687]
    >>> wilson_interval(0, 20)[0]
    0.0
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
