"""Reference answers and the measurement of notebooks/11_grpo.ipynb's exercises (see __init__.py)."""

import functools

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.model.qwen import Qwen
from qwen_min.train.grpo import group_advantages, grpo_loss, k3_kl, per_token_logps

VOCAB, GROUP = 50, 8


@answer("ch11_grpo.check_fixed_k3")
def k3(logps, ref_logps):
    return k3_kl(logps, ref_logps)


@answer("ch11_grpo.check_token_weights")
def token_weights(mask, aggregation, max_completion_length):
    """What `grpo_loss` weighs each token's term by: d loss / d logps with ratio 1, advantage -1 and no KL, where
    each token's term is its ratio, so its gradient is its weight."""
    logps = torch.zeros(mask.shape, dtype=torch.float64, requires_grad=True)
    loss, _ = grpo_loss(logps, None, None, -torch.ones(mask.shape[0], dtype=torch.float64), mask, beta=0.0,
                        aggregation=aggregation, max_completion_length=max_completion_length)
    loss.backward()
    return logps.grad


@answer("ch11_grpo.check_equal_rewards")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
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
