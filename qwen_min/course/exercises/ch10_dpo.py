"""Checkers for the exercises of notebooks/10_dpo.ipynb (references: reference/ch10_dpo.py).

    from qwen_min.course.exercises.ch10_dpo import check_simpo_loss, check_pair_gradient, check_fixed_dpo_train
    check_simpo_loss(my_simpo_loss)        # build: my_simpo_loss(logits (2n, t, v), labels (2n, t), beta, gamma) -> ()
    check_pair_gradient(my_prediction)     # predict: my_prediction() -> (|dL/d log pi(chosen)| at beta 0.01, at beta 1)
    check_fixed_dpo_train(my_train)        # debug: my_train(policy, batches, beta, lr) -> losses, bug fixed
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch10_dpo as ref
from qwen_min.course.exercises.reference.ch10_dpo import VOCAB, toy_pairs
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.model.qwen import IGNORE_INDEX

MARGIN = 10.0  # nats: log-ratio of the chosen answer minus that of the rejected one, in the predict exercise


def check_simpo_loss(student) -> None:
    """student(logits (2n, t, v), labels (2n, t), beta, gamma) -> the SimPO loss (a scalar, mean over the n pairs).
    Rows are [chosen..., rejected...]; labels hold IGNORE_INDEX on the prompt and on the padding."""
    g = torch.Generator().manual_seed(seed(12))
    inputs = []
    for pairs, t, beta, gamma in [(1, 8, 2.0, 0.5), (2, 12, 2.5, 1.0), (3, 10, 10.0, 0.0)]:
        logits = torch.randn(2 * pairs, t, VOCAB, generator=g) * 2
        labels = torch.randint(0, VOCAB, (2 * pairs, t), generator=g)
        for row in range(2 * pairs):  # every row its own prompt length and padding: answers of different lengths
            prompt = int(torch.randint(1, t // 2, (), generator=g))
            padding = int(torch.randint(0, t // 3, (), generator=g))
            labels[row, :prompt] = IGNORE_INDEX
            labels[row, t - padding:] = IGNORE_INDEX
        inputs.append((logits, labels, beta, gamma))
    compare("simpo_loss", student, ref.simpo_loss, inputs, atol=1e-5,
            hint="DPO's reward needed a second model; here an answer's reward is how likely the policy finds it per "
                 "token, so a long answer earns nothing for its length. Count only the tokens the labels keep, and "
                 "ask the chosen answer to win by the margin before the logistic loss sees the difference.",
            forbidden=Forbidden.of(packages=["trl"]))  # TRL's CPO trainer computes SimPO (loss_type="simpo")


def check_pair_gradient(student) -> None:
    """student() -> (a, b): your prediction of |d loss / d log pi(chosen)| for ONE pair whose log-ratio margin,
    (log pi/pi_ref of the chosen answer) - (log pi/pi_ref of the rejected one), is already 10 nats: (a) with beta 0.01,
    (b) with beta 1."""
    guess = prediction("gradient of a 10-nat pair", student)
    measured = (round(ref.measured_pair_gradient(0.01, MARGIN), 6), round(ref.measured_pair_gradient(1.0, MARGIN), 7))
    close = (isinstance(guess, tuple) and len(guess) == 2 and all(isinstance(x, (int, float)) for x in guess)
             and all(abs(g - m) <= 0.2 * m for g, m in zip(guess, measured)))
    judge_prediction("gradient of a 10-nat pair", guess, measured, close,
                     "Differentiate -log sigmoid(beta x margin) with respect to the chosen log-prob: one factor comes "
                     "from the chain rule, the other says how sure the model already is. Which beta has finished "
                     "with this pair?")


def check_fixed_dpo_train(student) -> None:
    """student(policy, batches, beta, lr) -> losses, one per batch: the notebook's `buggy_dpo_train`, fixed.
    Batches hold 2 pairs each, rows [chosen, chosen, rejected, rejected]."""

    def run(fn, at):
        policy, batches = toy_pairs(at)
        return torch.as_tensor(fn(policy, batches, 0.5, 1e-2), dtype=torch.float64)

    compare("fixed_dpo_train", lambda at: run(student, at), lambda at: run(ref.dpo_train, at), [(seed(0),), (seed(1),)],
            atol=1e-5,
            hint="the first loss is log 2, as it should be; so is every later one. Which model should stay as the "
                 "SFT model was, and does it?")


PACKAGE_EQUIVALENTS = {}  # SimPO has no package counterpart; the other two are a prediction and a debug
