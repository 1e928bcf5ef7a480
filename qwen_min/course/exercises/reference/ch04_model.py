"""Reference answer and the measurement of notebooks/04_model.ipynb's exercises (see __init__.py)."""

import functools

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.model.layers import RMSNorm
from qwen_min.model.qwen import Qwen, causal_lm_loss


@answer("ch04_model.check_initial_loss")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_initial_loss(vocab_size: int = 5000) -> float:
    """Next-token loss of a freshly initialised `tiny` model on random ids (mean of 4 seeds)."""
    losses = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = Qwen(QwenConfig.from_name("tiny", vocab_size=vocab_size)).eval()
        ids = torch.randint(0, vocab_size, (4, 64))
        with torch.no_grad():
            losses.append(causal_lm_loss(model(ids), ids).item())
    return sum(losses) / len(losses)


@answer("ch04_model.check_rms_norm_bf16")
def rms_norm_bf16(x, weight, eps):
    norm = RMSNorm(weight.shape[0], eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)
