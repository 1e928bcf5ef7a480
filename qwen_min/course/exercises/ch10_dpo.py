"""Checkers for the exercises of notebook 10_dpo.

    from qwen_min.course.exercises.ch10_dpo import check_completion_logps, check_dpo_loss, check_optimal_policy
    check_completion_logps(my_logps)     # my_logps(logits (b, t, v), labels (b, t)) -> (b,)
                                         # summed log-probs of the labelled tokens
    check_dpo_loss(my_loss)              # my_loss(pi_c, pi_r, ref_c, ref_r, beta) -> scalar sigmoid DPO loss
    check_optimal_policy(my_policy)      # my_policy(ref_probs (..., n), rewards (..., n), beta) -> (..., n) probabilities
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare
from qwen_min.train.dpo import completion_logps, dpo_loss, optimal_policy


def check_completion_logps(student) -> None:
    """student(logits (b, t, v), labels (b, t) with -100 on prompt and padding) -> (b,) sums of log p(label)."""
    g = torch.Generator().manual_seed(9)
    inputs = []
    for b, t, v in [(1, 4, 5), (2, 7, 11), (3, 9, 30)]:
        logits = torch.randn(b, t, v, generator=g) * 2
        labels = torch.randint(0, v, (b, t), generator=g)
        labels[:, : t // 2] = -100  # the prompt
        labels[-1, -2:] = -100  # padding at the end of the last row
        labels[0, -1] = 1  # the last position has a label: it is predicted by position t - 2
        inputs.append((logits, labels))
    compare("completion_logps", student, completion_logps, inputs, atol=1e-4,
            hint="logits[:, i] predicts labels[:, i + 1]; take log_softmax, gather the label's entry, "
                 "and SUM (not average) over the positions whose label is not -100.")


def check_dpo_loss(student) -> None:
    """student(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> scalar loss tensor."""
    g = torch.Generator().manual_seed(10)
    inputs = []
    for n, beta in [(1, 0.1), (4, 0.1), (8, 0.5), (16, 0.02)]:
        pc, pr, rc, rr = (torch.randn(n, generator=g) * 10 - 20 for _ in range(4))
        inputs.append((pc, pr, rc, rr, beta))
    z = torch.zeros(3)
    inputs.append((z, z, z, z, 0.1))  # policy == reference
    compare("dpo_loss", student, lambda *args: dpo_loss(*args)[0], inputs, atol=1e-5,
            hint="the implicit reward of an answer is beta * (policy log-prob - reference log-prob); the loss is "
                 "-log sigmoid(chosen reward - rejected reward), averaged over pairs (F.logsigmoid is stable).")


def check_optimal_policy(student) -> None:
    """student(ref_probs (..., n), rewards (..., n), beta) -> the KL-regularised optimal policy (..., n)."""
    g = torch.Generator().manual_seed(11)
    inputs = []
    for shape, beta in [((3,), 1.0), ((4,), 0.1), ((2, 5), 0.5), ((6,), 10.0)]:
        ref = torch.softmax(torch.randn(shape, generator=g) * 2, dim=-1)
        rewards = (torch.rand(shape, generator=g) < 0.5).float()
        inputs.append((ref, rewards, beta))
    compare("optimal_policy", student, optimal_policy, inputs, atol=1e-5,
            hint="pi*(y) is proportional to pi_ref(y) * exp(r(y) / beta); normalise over the last dimension "
                 "(work in log space: a softmax of log pi_ref + r / beta).")
