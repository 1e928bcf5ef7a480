"""Reference answer and the measurement of notebooks/12_evaluation.ipynb's exercises (see __init__.py)."""

import functools
import random

import torch

from qwen_min.course.exercises.watch import answer
from qwen_min.eval.humaneval import program


@answer("ch12_evaluation.check_bootstrap_interval")
def bootstrap_interval(rates, n_resamples, seed):
    """Percentile bootstrap over problems: the 2.5th and 97.5th percentiles of the means of n_resamples resamples."""
    rates = torch.as_tensor(rates, dtype=torch.float64)
    picks = torch.randint(0, len(rates), (n_resamples, len(rates)), generator=torch.Generator().manual_seed(seed))
    means = rates[picks].mean(1)
    return torch.quantile(means, 0.025).item(), torch.quantile(means, 0.975).item()


@answer("ch12_evaluation.check_interval_width")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_interval_width(rate: float = 0.6, problems: int = 20, runs: int = 20_000) -> float:
    """Width of the central 95% of measured pass@1 over `problems` problems, each solved with probability `rate`."""
    rng = random.Random(12)
    scores = sorted(sum(rng.random() < rate for _ in range(problems)) / problems for _ in range(runs))
    return round(scores[int(0.975 * len(scores))] - scores[int(0.025 * len(scores))], 2)


@answer("ch12_evaluation.check_program")
def program_text(problem: dict, code: str) -> str:
    return program(problem, code)
