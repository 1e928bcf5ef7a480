"""Checkers for the exercises of notebook 04_model.

    from qwen_min.course.exercises import ch04_model as ex
    ex.check_initial_loss(my_prediction)    # predict: my_prediction() -> loss of a freshly initialised model (vocab 5,000)
    ex.check_rms_norm_bf16(my_rms_norm)     # debug:   my_rms_norm(x bf16, weight bf16, eps) -> bf16, bit for bit as
                                            #          RMSNorm; ex.buggy_rms_norm_bf16 holds the planted bug
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import _describe, compare, judge_prediction, prediction
from qwen_min.model.layers import RMSNorm
from qwen_min.model.qwen import Qwen, causal_lm_loss


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


def check_initial_loss(student) -> None:
    """student() -> your prediction of the next-token loss (nats) of an untrained `tiny` model with 5,000 tokens."""
    guess = prediction("initial loss", student)
    measured = measured_initial_loss()
    judge_prediction("initial loss", guess, round(measured, 3),
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.3,
                     "Weights drawn with std 0.02 make logits close to zero. What distribution over the vocabulary "
                     "does that give, and what is the cross-entropy of a target under it?")


def buggy_rms_norm_bf16(x, weight, eps):
    """x (.., d) and weight (d,) in bf16 -> bf16 RMSNorm (one planted bug)."""
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (x / rms)


def _rms_norm_reference(x, weight, eps):
    norm = RMSNorm(weight.shape[0], eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


def check_rms_norm_bf16(student) -> None:
    """student(x (.., d) bf16, weight (d,) bf16, eps) -> bf16 tensor equal bit for bit to RMSNorm in bf16."""
    g = torch.Generator().manual_seed(4)
    inputs = []
    for scale, eps, d in [(1.0, 1e-6, 64), (30.0, 1e-6, 896), (1e-3, 1e-6, 128), (5.0, 1e-5, 512)]:
        x = (torch.randn(4, 7, d, generator=g) * scale).bfloat16()
        inputs.append((x, (1 + 0.1 * torch.randn(d, generator=g)).bfloat16(), eps))
    references = iter([_rms_norm_reference(*args) for args in inputs])

    def mismatches(*args):  # share of the outputs that differ from RMSNorm's bits (a different but exact order of
        got, want = student(*args), next(references)  # operations may flip a rare last bit: up to 1% is accepted)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            return f"{_describe(got)} of dtype {getattr(got, 'dtype', None)}, expected bf16 of shape {tuple(want.shape)}"
        return (got != want).double().mean().item()

    compare("rms_norm_bf16 (share of outputs not bit-identical)", mismatches, lambda *args: 0.0, inputs, atol=0.01,
            hint="the answer is right to 2-3 digits but not bit for bit. Which part of the computation loses digits "
                 "when it runs in bf16 (8 bits of mantissa), and at which point does Qwen go back to bf16?",
            forbidden=[RMSNorm.forward, F.rms_norm])


PACKAGE_EQUIVALENTS = {
    "check_rms_norm_bf16": [_rms_norm_reference],
}
