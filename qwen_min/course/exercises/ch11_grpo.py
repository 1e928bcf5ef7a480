"""Checkers for the exercises of notebooks/11_grpo.ipynb (references: reference/ch11_grpo.py).

    from qwen_min.course.exercises.ch11_grpo import check_equal_rewards, check_fixed_k3, check_token_weights
    check_equal_rewards(my_prediction)      # predict: my_prediction() -> (loss, max |gradient|) when a group's rewards are equal
    check_fixed_k3(my_k3)                   # debug: my_k3(logps, ref_logps) -> per-token KL estimate, bug fixed
    check_token_weights(my_weights)         # build: my_weights(mask (answers, tokens), aggregation, max length) ->
                                            #        the weight of each token's term in the loss (GRPO, DAPO, Dr. GRPO)
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch11_grpo as ref
from qwen_min.train.grpo import AGGREGATIONS, grpo_loss, k3_kl


def check_equal_rewards(student) -> None:
    """student() -> (loss, max |gradient|): your prediction for one GRPO step on a prompt whose 8 sampled answers all
    earned reward 1, with beta 0.04, one step per batch (pi_old = pi) and the policy still equal to the reference."""
    guess = prediction("equal rewards", student)
    measured = ref.measured_equal_rewards()
    close = (isinstance(guess, tuple) and len(guess) == 2 and all(isinstance(x, (int, float)) for x in guess)
             and all(abs(g - m) <= 1e-6 for g, m in zip(guess, measured)))
    judge_prediction("equal rewards", guess, measured, close,
                     "What is each answer's advantage when all rewards of its group are equal? And what are the KL "
                     "term's value and slope where the policy equals the reference?")


def check_fixed_k3(student) -> None:
    """student(logps, ref_logps) -> per-token k3 estimate of KL(pi || pi_ref): the notebook's `buggy_k3`, fixed."""
    g = torch.Generator().manual_seed(seed(23))
    inputs = []
    for shape in [(4,), (2, 5), (3, 7)]:
        logps = -torch.rand(shape, generator=g, dtype=torch.float64) * 4
        inputs.append((logps, logps - torch.randn(shape, generator=g, dtype=torch.float64)))
    same = -torch.rand(6, generator=g, dtype=torch.float64)
    inputs.append((same, same.clone()))
    compare("fixed_k3", student, ref.k3, inputs, atol=1e-9,
            hint="the answers were sampled from the policy pi, so the ratio whose mean is 1 under those samples is "
                 "pi_ref / pi; check which log-ratio the estimator exponentiates.",
            forbidden=[k3_kl])


def _masks() -> list[torch.Tensor]:
    """Right-padded 0/1 masks (answers, tokens) of answers of different lengths."""
    g = torch.Generator().manual_seed(seed(24))
    masks = [torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])]
    for answers, tokens in [(4, 6), (8, 12), (3, 20)]:
        lengths = torch.randint(1, tokens + 1, (answers,), generator=g)
        masks.append((torch.arange(tokens)[None] < lengths[:, None]).long())
    return masks


def check_token_weights(student) -> None:
    """student(mask (answers, tokens) of 0/1, aggregation, max_completion_length) -> (answers, tokens) weights, with
    loss = (weights * per_token).sum() for aggregation "sequence" (GRPO), "token" (DAPO) or "constant" (Dr. GRPO)."""
    masks = _masks()
    inputs = [(mask, aggregation, mask.shape[1] + extra) for mask in masks for aggregation in AGGREGATIONS
              for extra in (0, 4)]
    compare("token_weights", lambda *args: torch.as_tensor(student(*args)).double(), ref.token_weights, inputs,
            atol=1e-6,
            hint="write each loss as a sum over tokens: the GRPO paper divides each answer's sum by that answer's "
                 "length and then by the number of answers; DAPO divides everything by the number of real tokens of "
                 "the batch; Dr. GRPO by answers x max_completion_length, whatever the lengths. Padding weighs 0.",
            forbidden=[grpo_loss])
    lengths = masks[-1].sum(-1)
    longest, shortest = int(lengths.argmax()), int(lengths.argmin())
    for aggregation in AGGREGATIONS:
        w = ref.token_weights(masks[-1], aggregation, masks[-1].shape[1])
        print(f"{aggregation:>8}: a token of the longest answer ({int(lengths[longest])} tokens) weighs "
              f"{w[longest, 0] / w[shortest, 0]:.2f}x one of the shortest ({int(lengths[shortest])} tokens)")


PACKAGE_EQUIVALENTS = {"check_fixed_k3": [k3_kl]}
