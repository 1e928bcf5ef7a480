"""The chapter 8 exercise checkers accept the reference and reject plausible wrong answers."""

import math

import pytest
import torch.nn.functional as F

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch08_pretraining import check_flops_per_token, check_lr_schedule, check_next_token_loss
from qwen_min.model.qwen import causal_lm_loss
from qwen_min.train.flops import flops_per_token
from qwen_min.train.trainer import lr_schedule


def test_next_token_loss_checker():
    check_next_token_loss(causal_lm_loss)
    with pytest.raises(ExerciseFailed, match="next_token_loss: wrong"):  # forgot the shift
        check_next_token_loss(lambda logits, ids: F.cross_entropy(logits.flatten(0, 1), ids.flatten()))


def test_lr_schedule_checker():
    check_lr_schedule(lambda s, lr, w, m, lo: lr_schedule(s, lr=lr, warmup_steps=w, max_steps=m, min_lr=lo))

    def decays_to_zero(s, lr, w, m, lo):
        return lr * (s + 1) / w if s < w else lr * 0.5 * (1 + math.cos(math.pi * min(1, (s - w) / (m - w))))

    with pytest.raises(ExerciseFailed, match="lr_schedule: wrong"):
        check_lr_schedule(decays_to_zero)


def test_flops_per_token_checker():
    check_flops_per_token(flops_per_token)
    with pytest.raises(ExerciseFailed, match="flops_per_token: wrong"):  # counts the tied head once as an embedding
        check_flops_per_token(lambda cfg, t: 6 * cfg.num_parameters(non_embedding=True) + 12 * cfg.num_hidden_layers
                              * cfg.num_attention_heads * cfg.head_dim * t)
