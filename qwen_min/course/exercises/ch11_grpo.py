"""Checkers for the exercises of notebooks/11_grpo.ipynb.

    from qwen_min.course.exercises.ch11_grpo import check_group_advantages, check_equal_rewards, check_fixed_k3
    check_group_advantages(my_advantages)   # build: my_advantages(rewards (P * G,), group_size) -> (P * G,)
    check_equal_rewards(my_prediction)      # predict: my_prediction() -> (loss, max |gradient|) when a group's rewards are equal
    check_fixed_k3(my_k3)                   # debug: my_k3(logps, ref_logps) -> per-token KL estimate, bug fixed
"""

from __future__ import annotations

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.qwen import Qwen
from qwen_min.train.grpo import group_advantages, grpo_loss, k3_kl, per_token_logps

VOCAB, GROUP = 50, 8


def check_group_advantages(student) -> None:
    """student(rewards (P * G,), group_size) -> (P * G,) advantages, groups of G consecutive answers."""
    g = torch.Generator().manual_seed(21)
    inputs = [(torch.tensor([1.0, 0.0, 0.0, 1.0]), 2), (torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0]), 3)]
    for p, size in [(3, 8), (5, 4), (2, 16)]:
        inputs.append(((torch.rand(p * size, generator=g) < 0.3).float(), size))  # checker rewards: 0 or 1
        inputs.append((torch.randn(p * size, generator=g), size))  # reward-model scores
    inputs.append((torch.ones(8), 4))  # every answer right: no advantage
    compare("group_advantages", student, group_advantages, inputs, atol=1e-5,
            hint="each answer is compared with the other answers to the SAME prompt: centre by the group's mean and "
                 "scale by the group's standard deviation (unbiased, as torch's default) plus 1e-4, so that a group "
                 "whose rewards are all equal gives 0, not nan.",
            forbidden=[group_advantages])


def measured_equal_rewards() -> tuple[float, float]:
    """(loss, max |gradient|) of one GRPO step on a group of 8 answers that all earned reward 1 (beta 0.04, on-policy,
    the policy still equal to its reference)."""
    torch.manual_seed(0)
    policy = Qwen(QwenConfig.from_name("tiny", vocab_size=VOCAB)).double()
    g = torch.Generator().manual_seed(0)
    batch = {"prompt_ids": torch.randint(0, VOCAB, (1, 6), generator=g).expand(GROUP, 6),  # one prompt, G answers
             "prompt_mask": torch.ones(GROUP, 6, dtype=torch.long),
             "completion_ids": torch.randint(0, VOCAB, (GROUP, 5), generator=g),
             "completion_mask": torch.ones(GROUP, 5, dtype=torch.long)}
    logps = per_token_logps(policy, batch)
    loss, _ = grpo_loss(logps, None, logps.detach(), group_advantages(torch.ones(GROUP, dtype=torch.float64), GROUP),
                        batch["completion_mask"], beta=0.04)
    loss.backward()
    return round(loss.item(), 9), round(max(p.grad.abs().max().item() for p in policy.parameters()), 9)


def check_equal_rewards(student) -> None:
    """student() -> (loss, max |gradient|): your prediction for one GRPO step on a prompt whose 8 sampled answers all
    earned reward 1, with beta 0.04, one step per batch (pi_old = pi) and the policy still equal to the reference."""
    guess = prediction("equal rewards", student)
    measured = measured_equal_rewards()
    close = (isinstance(guess, (tuple, list)) and len(guess) == 2 and all(isinstance(x, (int, float)) for x in guess)
             and all(abs(g - m) <= 1e-6 for g, m in zip(guess, measured)))
    judge_prediction("equal rewards", tuple(guess) if isinstance(guess, list) else guess, measured, close,
                     "What is each answer's advantage when all rewards of its group are equal? And what are the KL "
                     "term's value and slope where the policy equals the reference?")


def check_fixed_k3(student) -> None:
    """student(logps, ref_logps) -> per-token k3 estimate of KL(pi || pi_ref): the notebook's `buggy_k3`, fixed."""
    g = torch.Generator().manual_seed(23)
    inputs = []
    for shape in [(4,), (2, 5), (3, 7)]:
        logps = -torch.rand(shape, generator=g, dtype=torch.float64) * 4
        inputs.append((logps, logps - torch.randn(shape, generator=g, dtype=torch.float64)))
    same = -torch.rand(6, generator=g, dtype=torch.float64)
    inputs.append((same, same.clone()))
    compare("fixed_k3", student, k3_kl, inputs, atol=1e-9,
            hint="the answers were sampled from the policy pi, so the ratio whose mean is 1 under those samples is "
                 "pi_ref / pi; check which log-ratio the estimator exponentiates.",
            forbidden=[k3_kl])


PACKAGE_EQUIVALENTS = {"check_group_advantages": [group_advantages], "check_fixed_k3": [k3_kl]}
