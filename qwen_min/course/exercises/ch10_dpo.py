"""Checkers for the exercises of notebooks/10_dpo.ipynb.

    from qwen_min.course.exercises.ch10_dpo import check_simpo_loss, check_pair_gradient, check_fixed_dpo_train
    check_simpo_loss(my_simpo_loss)        # build: my_simpo_loss(logits (2n, t, v), labels (2n, t), beta, gamma) -> ()
    check_pair_gradient(my_prediction)     # predict: my_prediction() -> (|dL/d log pi(chosen)| at beta 0.01, at beta 1)
    check_fixed_dpo_train(my_train)        # debug: my_train(policy, batches, beta, lr) -> losses, bug fixed
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.qwen import IGNORE_INDEX, Qwen
from qwen_min.train.dpo import completion_logps, dpo_loss

VOCAB = 50
MARGIN = 10.0  # nats: log-ratio of the chosen answer minus that of the rejected one, in the predict exercise


def simpo_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024, "Simple Preference Optimization with a Reference-Free Reward"), the reference
    answer of the build exercise: each answer's reward is beta times its mean log-prob per completion token (no
    reference model), and the chosen answer must beat the rejected one by the margin gamma. Rows [chosen..., rejected...]."""
    lengths = (labels[:, 1:] != IGNORE_INDEX).sum(-1)  # (2n,) completion tokens per row
    reward = beta * completion_logps(logits, labels) / lengths  # (2n,)
    n = len(reward) // 2
    return -F.logsigmoid(reward[:n] - reward[n:] - gamma).mean()


def check_simpo_loss(student) -> None:
    """student(logits (2n, t, v), labels (2n, t), beta, gamma) -> the SimPO loss (a scalar, mean over the n pairs).
    Rows are [chosen..., rejected...]; labels hold IGNORE_INDEX on the prompt and on the padding."""
    g = torch.Generator().manual_seed(12)
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
    compare("simpo_loss", student, simpo_loss, inputs, atol=1e-5,
            hint="DPO's reward needed a second model; here an answer's reward is how likely the policy finds it per "
                 "token, so a long answer earns nothing for its length. Count only the tokens the labels keep, and "
                 "ask the chosen answer to win by the margin before the logistic loss sees the difference.")


def measured_pair_gradient(beta: float, margin: float = MARGIN) -> float:
    """|d loss / d log pi(chosen)| of one pair whose log-ratio margin is `margin` nats, measured by autograd."""
    policy_chosen = torch.tensor([-5.0 + margin], requires_grad=True)  # the reference gave both answers -5
    loss, _ = dpo_loss(policy_chosen, torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-5.0]), beta=beta)
    loss.backward()
    return abs(policy_chosen.grad.item())


def check_pair_gradient(student) -> None:
    """student() -> (a, b): your prediction of |d loss / d log pi(chosen)| for ONE pair whose log-ratio margin,
    (log pi/pi_ref of the chosen answer) - (log pi/pi_ref of the rejected one), is already 10 nats: (a) with beta 0.01,
    (b) with beta 1."""
    guess = prediction("gradient of a 10-nat pair", student)
    measured = (round(measured_pair_gradient(0.01), 6), round(measured_pair_gradient(1.0), 7))
    close = (isinstance(guess, (tuple, list)) and len(guess) == 2 and all(isinstance(x, (int, float)) for x in guess)
             and all(abs(g - m) <= 0.2 * m for g, m in zip(guess, measured)))
    judge_prediction("gradient of a 10-nat pair", tuple(guess) if isinstance(guess, list) else guess, measured, close,
                     "Differentiate -log sigmoid(beta x margin) with respect to the chosen log-prob: one factor comes "
                     "from the chain rule, the other says how sure the model already is. Which beta has finished "
                     "with this pair?")


def _toy_pairs(seed: int):
    """A tiny policy and batches of 2 pairs: rows [chosen, chosen, rejected, rejected], prompt labels -100."""
    torch.manual_seed(seed)
    policy = Qwen(QwenConfig.from_name("tiny", vocab_size=VOCAB))
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(4):
        ids = torch.randint(0, VOCAB, (4, 12), generator=g)
        ids[2:, :6] = ids[:2, :6]  # the same prompt for both answers of a pair
        labels = ids.clone()
        labels[:, :6] = IGNORE_INDEX
        batches.append({"input_ids": ids, "labels": labels})
    return policy, batches


def _dpo_train(policy, batches, beta, lr):
    reference = copy.deepcopy(policy).eval().requires_grad_(False)  # frozen at the start: the SFT model
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    losses = []
    for batch in batches:
        logps = completion_logps(policy(batch["input_ids"]), batch["labels"])
        with torch.no_grad():
            ref = completion_logps(reference(batch["input_ids"]), batch["labels"])
        n = len(logps) // 2
        loss, _ = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def check_fixed_dpo_train(student) -> None:
    """student(policy, batches, beta, lr) -> losses, one per batch: the notebook's `buggy_dpo_train`, fixed.
    Batches hold 2 pairs each, rows [chosen, chosen, rejected, rejected]."""

    def run(fn, seed):
        policy, batches = _toy_pairs(seed)
        return torch.as_tensor(fn(policy, batches, 0.5, 1e-2), dtype=torch.float64)

    compare("fixed_dpo_train", lambda seed: run(student, seed), lambda seed: run(_dpo_train, seed), [(0,), (1,)],
            atol=1e-5,
            hint="the first loss is log 2, as it should be; so is every later one. Which model should stay as the "
                 "SFT model was, and does it?")


PACKAGE_EQUIVALENTS = {}  # SimPO has no package counterpart; the other two are a prediction and a debug
