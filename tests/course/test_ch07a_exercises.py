"""The chapter 7a exercise checkers accept right answers and reject plausible wrong ones."""

import pytest
import torch

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch07a_awq_gptq import PACKAGE_EQUIVALENTS, buggy_gptq, check_gptq, check_output_error
from qwen_min.quant.linear import int4_grid


def _gptq(w, h, group_size):
    """GPTQ with H^-1 and its downdate after each column (the Cholesky form's equal in exact arithmetic)."""
    w, n = w.clone().float(), w.shape[1]
    h_inv = torch.linalg.inv(h + 0.01 * h.diag().mean() * torch.eye(n))
    codes, scales, minima = torch.zeros(w.shape, dtype=torch.uint8), [], []
    for j in range(n):
        if j % group_size == 0:
            _, scale, low = int4_grid(w[:, j:j + group_size], group_size)
            scales.append(scale[:, 0])
            minima.append(low[:, 0])
        s, z = scales[-1], minima[-1] + 8 * scales[-1]
        code = torch.round((w[:, j] - z) / s + 8).clamp(0, 15)
        error = (w[:, j] - ((code - 8) * s + z)) / h_inv[j, j]
        w[:, j + 1:] -= error[:, None] * h_inv[j, j + 1:]
        h_inv = h_inv - torch.outer(h_inv[:, j], h_inv[j]) / h_inv[j, j]
        codes[:, j] = code.to(torch.uint8)
    return codes, torch.stack(scales, 1), torch.stack(minima, 1)


def test_gptq_checker():
    check_gptq(_gptq)
    with pytest.raises(ExerciseFailed, match="gptq: wrong on input 1"):  # the planted bug: H^-1 never downdated
        check_gptq(buggy_gptq)
    with pytest.raises(ExerciseFailed, match="gptq: wrong"):  # round-to-nearest is not GPTQ
        check_gptq(lambda w, h, group_size: int4_grid(w, group_size))


def test_output_error_checker():
    check_output_error(lambda delta, h: ((delta @ h) * delta).sum(1))
    with pytest.raises(ExerciseFailed, match="output_error: wrong"):  # sums the cross terms of different rows too
        check_output_error(lambda delta, h: (delta @ h @ delta.T).sum(1))


@pytest.mark.parametrize("checker, answer", [(name, a) for name, answers in PACKAGE_EQUIVALENTS.items() for a in answers])
def test_checkers_reject_the_package(checker, answer):
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        globals()[checker](answer)
