"""The chapter 10 exercise checkers accept right answers and reject plausible wrong ones and the package's own."""

import copy
import math

import pytest
import torch

import qwen_min as qm
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch10_dpo import (
    MARGIN,
    check_fixed_dpo_train,
    check_pair_gradient,
    check_simpo_loss,
)
from qwen_min.course.exercises.reference.ch10_dpo import measured_pair_gradient
from qwen_min.train.dpo import completion_logps


def _simpo_by_loops(logits, labels, beta, gamma, mean=True, shift=True, margin=True):
    """SimPO written independently of the checker: token by token, one row at a time."""
    rewards = []
    for row in range(len(labels)):
        total, count = 0.0, 0
        for i in range(labels.shape[1] - 1):
            target = labels[row, i + 1] if shift else labels[row, i]
            if target != -100:
                total += torch.log_softmax(logits[row, i].double(), -1)[target]
                count += 1
        rewards.append(beta * total / (count if mean else 1))
    n = len(rewards) // 2
    losses = [-torch.nn.functional.logsigmoid(rewards[k] - rewards[n + k] - (gamma if margin else 0.0)) for k in range(n)]
    return torch.stack(losses).mean().float()


def test_simpo_checker_accepts_an_independent_answer_and_rejects_near_misses():
    check_simpo_loss(_simpo_by_loops)
    for near_miss in (dict(mean=False), dict(shift=False), dict(margin=False)):  # sum (length bias), no shift, no gamma
        with pytest.raises(ExerciseFailed, match="simpo_loss: wrong"):
            check_simpo_loss(lambda *a, kw=near_miss: _simpo_by_loops(*a, **kw))


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

