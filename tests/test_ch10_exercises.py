"""The chapter 10 exercise checkers accept right answers and reject plausible wrong ones and the package's own."""

import copy
import math

import pytest
import torch

import qwen_min as qm
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch10_dpo import (
    MARGIN,
    PACKAGE_EQUIVALENTS,
    check_fixed_dpo_train,
    check_optimal_policy,
    check_pair_gradient,
    measured_pair_gradient,
)
from qwen_min.train.dpo import completion_logps


def test_optimal_policy_checker():
    check_optimal_policy(lambda ref, r, beta: torch.softmax(ref.log() + r / beta, dim=-1))
    with pytest.raises(ExerciseFailed, match="optimal_policy: wrong"):  # multiplied by the reward, not exp(r / beta)
        check_optimal_policy(lambda ref, r, beta: (ref * (1 + r)) / (ref * (1 + r)).sum(-1, keepdim=True))


def test_pair_gradient_is_beta_times_sigmoid_of_minus_the_scaled_margin():
    for beta in (0.01, 1.0):
        assert measured_pair_gradient(beta) == pytest.approx(beta / (1 + math.exp(beta * MARGIN)), rel=1e-6)
    check_pair_gradient(lambda: (0.00475, 4.5e-5))
    with pytest.raises(ExerciseFailed, match="you predicted"):  # beta / 2 for both: forgets the pair is half done
        check_pair_gradient(lambda: (0.005, 0.5))


def _train(policy, batches, beta, lr, frozen=True):
    reference = copy.deepcopy(policy).requires_grad_(False) if frozen else policy
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    losses = []
    for batch in batches:
        logps = completion_logps(policy(batch["input_ids"]), batch["labels"])
        with torch.no_grad():
            ref = completion_logps(reference(batch["input_ids"]), batch["labels"])
        n = len(logps) // 2
        loss, _ = qm.dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_fixed_dpo_train_checker():
    check_fixed_dpo_train(_train)
    with pytest.raises(ExerciseFailed, match="fixed_dpo_train: wrong"):  # the planted bug: the reference is the policy
        check_fixed_dpo_train(lambda *args: _train(*args, frozen=False))


@pytest.mark.parametrize("checker, answer", [(name, a) for name, answers in PACKAGE_EQUIVALENTS.items() for a in answers])
def test_checkers_reject_the_package(checker, answer):
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        globals()[checker](answer)
