"""The chapter 8c exercise checkers accept right answers and reject plausible wrong ones."""

import pytest
import torch

import qwen_min as qm
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch08c_long_context import (
    check_dca_distances,
    check_fixed_merge,
    check_loss_at_4x,
)
from qwen_min.course.exercises.reference.ch08c_long_context import measured_ratio_at_4x, trained_at_64_tokens


def _distances(n, chunk_size, local_size, cap=None):
    cl = chunk_size - local_size
    cap = chunk_size if cap is None else cap
    out = torch.full((n, n), -1, dtype=torch.long)
    for i in range(n):
        for j in range(i + 1):
            apart = i // cl - j // cl
            q = i % cl if apart == 0 else min(i % cl + cl, cap) if apart == 1 else min(2 * cl - 1, cap)
            out[i, j] = q - j % cl
    return out


def test_dca_distances_checker():
    check_dca_distances(_distances)
    with pytest.raises(ExerciseFailed, match="dca_distances: wrong"):  # the paper's cap, not vLLM's
        check_dca_distances(lambda n, c, l: _distances(n, c, l, cap=c - 1))
    with pytest.raises(ExerciseFailed, match="dca_distances: wrong"):  # no chunks at all: plain distances
        check_dca_distances(lambda n, c, l: (torch.arange(n)[:, None] - torch.arange(n)[None, :]).masked_fill(
            torch.arange(n)[None, :] > torch.arange(n)[:, None], -1))


def _merge(x, y, stable=True):
    (out_x, lse_x), (out_y, lse_y) = x, y
    if not stable:  # the notebook's planted bug: exp of raw log-sum-exps overflows
        wx, wy = torch.exp(lse_x), torch.exp(lse_y)
        return (wx * out_x + wy * out_y) / (wx + wy), torch.log(wx + wy)
    lse = torch.logaddexp(lse_x, lse_y)
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    return out_x * torch.exp(lse_x - safe) + out_y * torch.exp(lse_y - safe), lse


def test_fixed_merge_checker():
    check_fixed_merge(_merge)
    with pytest.raises(ExerciseFailed, match="fixed_merge: wrong"):
        check_fixed_merge(lambda x, y: _merge(x, y, stable=False))


def test_measured_ratio_measures_a_copy_and_refuses_wrong_rows():
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=50, max_position_embeddings=16))
    assert measured_ratio_at_4x(model, torch.randint(0, 50, (2, 64))) > 0
    assert model.config.max_position_embeddings == 16  # the checker measures a copy
    with pytest.raises(ValueError, match="rows must be"):
        measured_ratio_at_4x(model, torch.randint(0, 50, (2, 60)))


def test_loss_at_4x_checker():
    ratio = measured_ratio_at_4x(*trained_at_64_tokens())
    assert ratio == measured_ratio_at_4x(*trained_at_64_tokens())  # built once, seeded
    check_loss_at_4x(lambda: ratio * 1.2)
    with pytest.raises(ExerciseFailed, match="you predicted"):
        check_loss_at_4x(lambda: ratio * 3)
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check_loss_at_4x(lambda: (_ for _ in ()).throw(NotImplementedError))
