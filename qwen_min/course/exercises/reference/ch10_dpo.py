"""Reference answers, the measurement and the shared setting of notebooks/10_dpo.ipynb's exercises
(see __init__.py)."""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.model.qwen import IGNORE_INDEX, Qwen
from qwen_min.train.dpo import completion_logps, dpo_loss

VOCAB = 50


@answer("ch10_dpo.check_simpo_loss")
def simpo_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024, "Simple Preference Optimization with a Reference-Free Reward"): each answer's reward
    is beta times its mean log-prob per completion token (no reference model), and the chosen answer must beat the
    rejected one by the margin gamma. Rows [chosen..., rejected...]."""
    per_token = completion_logps(logits, labels) / (labels[:, 1:] != IGNORE_INDEX).sum(-1)  # (2n,)
    chosen, rejected = per_token.chunk(2)
    return F.softplus(gamma - beta * (chosen - rejected)).mean()  # -log sigmoid(z) = softplus(-z)


@answer("ch10_dpo.check_pair_gradient")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_pair_gradient(beta: float, margin: float = 10.0) -> float:
    """|d loss / d log pi(chosen)| of one pair whose log-ratio margin is `margin` nats, measured by autograd."""
    policy_chosen = torch.tensor([-5.0 + margin], requires_grad=True)  # the reference gave both answers -5
    loss, _ = dpo_loss(policy_chosen, torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-5.0]), beta=beta)
    loss.backward()
    return abs(policy_chosen.grad.item())


def toy_pairs(seed: int):
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


@answer("ch10_dpo.check_fixed_dpo_train")
def dpo_train(policy, batches, beta, lr):
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
