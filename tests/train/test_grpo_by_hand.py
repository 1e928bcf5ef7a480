"""One GRPO iteration written by hand from its definition equals one step of `qwen-min grpo` (qwen_min/train/grpo.py).

The definition (DeepSeekMath's GRPO, as chapter 11 writes it): sample G answers per prompt from the policy,
reward each with the task's checker, advantage A_i = (r_i - mean r) / (std r + 1e-4) within its group, minimise
the mean over answers of the mean over tokens of -min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta * k3 KL
to the frozen reference, then one AdamW step after clipping the gradient norm to 1. The conventions that make
a run reproducible are the package's documented ones: `--order plain` visits the prompts in a shuffle seeded
with seed * 1_000_003 (pass 0), rollout k samples with a torch.Generator seeded with seed * 1_000_003 + k, an
answer that stopped gets its <|im_end|> back. The log-probs are computed as one padded batch (prompts padded
on the left, answers on the right), as logit - logsumexp: at AdamW's first step the update is about
lr * sign(g), so a gradient entry that is 0 up to rounding would turn a rounding difference into one of lr.
"""

from __future__ import annotations

import copy
import random

import torch

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.tasks import checkable as tasks

TASKS = ["count", "sort"]
SEED, PROMPTS_PER_TASK, G, MAX_NEW, LR, BETA, EPS = 0, 2, 8, 8, 1e-3, 0.04, 0.2


def padded(rows, side):
    t = max(map(len, rows))
    ids = [[0] * (t - len(r)) + r if side == "left" else r + [0] * (t - len(r)) for r in rows]
    mask = [[0] * (t - len(r)) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * (t - len(r)) for r in rows]
    return torch.tensor(ids), torch.tensor(mask)


def grpo_iteration_by_hand(policy, tok, examples):
    """Rollouts, rewards, group advantages, the clipped objective with KL, the AdamW step; returns the rewards."""
    reference = copy.deepcopy(policy).requires_grad_(False)  # the frozen starting model
    order = list(range(len(examples)))
    random.Random(SEED * 1_000_003).shuffle(order)
    picked = [examples[i] for i in order for _ in range(G)]  # every prompt of the step, G times
    im_end = tok.encode("<|im_end|>", allowed_special="all")[0]
    prompts = [tok.encode(tok.render_chat(ex.prompt_messages, add_generation_prompt=True), allowed_special="all")
               for ex in picked]
    generator = torch.Generator().manual_seed(SEED * 1_000_003 + 0)  # rollout 0
    with torch.no_grad():
        outputs = qm.generate(policy, prompts, max_new_tokens=MAX_NEW, temperature=1.0, stop_ids=(im_end,),
                              generator=generator)
    replies = [tok.decode([i for i in ids if i < tok.vocab_size], skip_special=True) for ids in outputs]
    rewards = torch.tensor([float(tasks.TASKS[ex.task].check(r, ex.answer)) for ex, r in zip(picked, replies)])
    groups = rewards.view(-1, G)
    advantages = ((groups - groups.mean(-1, keepdim=True)) / (groups.std(-1, keepdim=True) + 1e-4)).flatten()

    completions = [ids + [im_end] if len(ids) < MAX_NEW else ids for ids in outputs]
    prompt_ids, prompt_mask = padded(prompts, "left")
    completion_ids, completion_mask = padded(completions, "right")
    ids, mask = torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1)
    c = completion_ids.shape[1]

    def token_logps(model):  # (b, c): log pi(token) = logit - logsumexp over the vocabulary
        logits = model(ids, attention_mask=mask)[:, -c - 1:-1]  # position i predicts token i + 1
        return logits.gather(-1, completion_ids[..., None])[..., 0] - logits.logsumexp(-1)

    policy.train()
    logps = token_logps(policy)
    with torch.no_grad():
        ref_logps = token_logps(reference)
    ratio = torch.exp(logps - logps.detach())  # pi / pi_old; pi_old is the policy that sampled: ratio 1
    a = advantages[:, None]
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - EPS, 1 + EPS) * a)
    kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
    per_token = -surrogate + BETA * kl
    m = completion_mask.float()
    loss = ((per_token * m).sum(-1) / m.sum(-1)).mean()  # mean over each answer's tokens, then over answers
    loss.backward()

    params = [p for p in policy.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    scale = min(1.0, 1.0 / (norm.item() + 1e-6))  # gradient norm clipped to 1
    beta1, beta2 = 0.9, 0.95
    with torch.no_grad():
        for p in params:  # AdamW's first step from zero moments; weight decay 0 (qwen-min grpo's default)
            g = p.grad * scale
            m_hat = (1 - beta1) * g / (1 - beta1)  # bias-corrected first moment
            v_hat = (1 - beta2) * g * g / (1 - beta2)  # and second moment
            p -= LR * m_hat / (v_hat.sqrt() + 1e-8)
    return rewards


def test_grpo_iteration_by_hand_equals_one_package_step(tiny_sft_model, tmp_path):
    assert main(["grpo", "--checkpoint", str(tiny_sft_model), "--out", str(tmp_path / "run"), "--tasks", ",".join(TASKS),
                 "--n-prompts", str(PROMPTS_PER_TASK), "--group-size", str(G),
                 "--batch-size", str(len(TASKS) * PROMPTS_PER_TASK * G), "--order", "plain", "--max-steps", "1",
                 "--lr", str(LR), "--beta", str(BETA), "--epsilon", str(EPS), "--max-new-tokens", str(MAX_NEW),
                 "--eval-prompts", "1", "--eval-every", "0", "--seed", str(SEED), "--no-progress"]) == 0
    package = qm.from_pretrained(tmp_path / "run" / "model").state_dict()

    policy, tok = qm.from_pretrained(tiny_sft_model), qm.Tokenizer.from_pretrained(tiny_sft_model)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    examples = tasks.make_examples(TASKS, "dpo", PROMPTS_PER_TASK, seed=SEED)  # the command's prompts
    rewards = grpo_iteration_by_hand(policy, tok, examples)
    hand = policy.state_dict()

    assert any(0 < g.sum() < G for g in rewards.view(-1, G))  # some group has right and wrong answers: a gradient
    moved = max((package[k] - before[k]).abs().max().item() for k in before)
    worst = max((hand[k] - package[k]).abs().max().item() for k in before)
    assert moved > 0.5 * LR  # the step moved the weights by about lr...
    assert worst <= 1e-6  # ...and the two agree far below that, in fp32
