"""Checkers for the exercises of notebook 08_pretraining.

    from qwen_min.course.exercises.ch08_pretraining import check_next_token_loss, check_lr_schedule, check_flops_per_token
    check_next_token_loss(my_loss)         # my_loss(logits (b, t, vocab), ids (b, t)) -> mean next-token cross-entropy
    check_lr_schedule(my_lr)               # my_lr(step, lr, warmup_steps, max_steps, min_lr) -> learning rate
    check_flops_per_token(my_flops)        # my_flops(cfg, seq_len) -> training FLOPs per token
"""

from __future__ import annotations

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare
from qwen_min.model.qwen import causal_lm_loss
from qwen_min.train.flops import flops_per_token
from qwen_min.train.trainer import lr_schedule


def check_next_token_loss(student) -> None:
    """student(logits (b, t, vocab), ids (b, t)) -> scalar: mean cross-entropy of predicting ids[:, i + 1] from logits[:, i]."""
    g = torch.Generator().manual_seed(7)
    inputs = [(torch.randn(b, t, v, generator=g) * s, torch.randint(0, v, (b, t), generator=g))
              for b, t, v, s in [(1, 2, 5, 1.0), (2, 7, 11, 3.0), (4, 16, 100, 0.5)]]
    compare("next_token_loss", student, causal_lm_loss, inputs, atol=1e-5,
            hint="position i predicts token i + 1: drop the last position's logits and the first token, "
                 "then F.cross_entropy on the flattened (b * (t - 1), vocab) logits.")


def check_lr_schedule(student) -> None:
    """student(step, lr, warmup_steps, max_steps, min_lr) -> learning rate of optimizer step `step` (0-based)."""
    cases = [(1e-3, 10, 100, 1e-4), (3e-3, 100, 2000, 3e-4), (1.0, 1, 5, 0.0)]
    inputs = [(s, lr, w, m, lo) for lr, w, m, lo in cases for s in sorted({0, w - 1, w, (w + m) // 2, m - 1, m, m + 5})]
    compare("lr_schedule", student,
            lambda s, lr, w, m, lo: lr_schedule(s, lr=lr, warmup_steps=w, max_steps=m, min_lr=lo), inputs, atol=1e-9,
            hint="warmup: lr * (step + 1) / warmup_steps; after it, progress p = (step - warmup) / (max_steps - warmup), "
                 "capped at 1, and lr = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2.")


def check_flops_per_token(student) -> None:
    """student(cfg, seq_len) -> training FLOPs per token: 6 x matmul weights (LM head included) + attention."""
    inputs = [(QwenConfig.from_name(name, **kw), t) for name, kw, t in [
        ("tiny", {"vocab_size": 4096}, 128), ("small", {"vocab_size": 4096}, 256),
        ("0.5B", {}, 2048), ("7B", {}, 4096), ("tiny-moe", {"vocab_size": 300}, 64)]]
    compare("flops_per_token", student, flops_per_token, inputs, atol=0.5,
            hint="6 x (cfg.num_parameters(non_embedding=True, active=True) + vocab_size x hidden_size): the LM head "
                 "is a matmul even when tied; plus 12 x layers x heads x head_dim x seq_len for attention. "
                 "An MoE token only uses its active experts.")
