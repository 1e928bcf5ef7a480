"""Reference answers of notebooks/11a_multistage_rl.ipynb's exercises (see __init__.py)."""

from math import lgamma, log

import torch

from qwen_min.course.exercises.watch import answer


@answer("ch11a_multistage_rl.check_mcnemar")
def mcnemar_p(before, after) -> float:
    """Exact two-sided McNemar p: the binomial tail of the discordant prompts, doubled, capped at 1 (log-space pmf)."""
    up = sum(1 for x, y in zip(before, after) if y and not x)
    down = sum(1 for x, y in zip(before, after) if x and not y)
    n, k = up + down, min(up, down)
    if n == 0:
        return 1.0
    tail = sum(torch.tensor(lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) - n * log(2), dtype=torch.float64).exp().item()
               for i in range(k + 1))
    return min(1.0, 2.0 * tail)


@answer("ch11a_multistage_rl.check_fixed_paired_interval")
def paired_interval(before, after, resamples) -> tuple[float, float]:
    """Percentile bootstrap over prompts, each prompt's two marks drawn together (torch's generator)."""
    d = torch.tensor([float(y) - float(x) for x, y in zip(before, after)], dtype=torch.float64)  # (n,)
    g = torch.Generator().manual_seed(1000 + len(d))
    means = d[torch.randint(0, len(d), (resamples, len(d)), generator=g)].mean(1)  # (resamples,)
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return lo.item(), hi.item()
