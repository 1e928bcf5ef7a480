"""Checkers for the exercises of notebook 04_model (references: reference/ch04_model.py).

    from qwen_min.course.exercises import ch04_model as ex
    ex.check_initial_loss(my_prediction)    # predict: my_prediction() -> loss of a freshly initialised model (vocab 5,000)
    ex.check_rms_norm_bf16(my_rms_norm)     # debug:   my_rms_norm(x bf16, weight bf16, eps) -> bf16, bit for bit as
                                            #          RMSNorm; ex.buggy_rms_norm_bf16 holds the planted bug
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen_min.course.exercises import _describe, compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch04_model as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.model.layers import RMSNorm


def check_initial_loss(student) -> None:
    """student() -> your prediction of the next-token loss (nats) of an untrained `tiny` model with 5,000 tokens."""
    guess = prediction("initial loss", student)
    measured = ref.measured_initial_loss()
    judge_prediction("initial loss", guess, round(measured, 3),
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.3,
                     "Weights drawn with std 0.02 make logits close to zero. What distribution over the vocabulary "
                     "does that give, and what is the cross-entropy of a target under it?")


def buggy_rms_norm_bf16(x, weight, eps):
    """x (.., d) and weight (d,) in bf16 -> bf16 RMSNorm (one planted bug)."""
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * (x / rms)


def check_rms_norm_bf16(student) -> None:
    """student(x (.., d) bf16, weight (d,) bf16, eps) -> bf16 tensor equal bit for bit to RMSNorm in bf16."""
    g = torch.Generator().manual_seed(seed(4))
    inputs = []
    for scale, eps, d in [(1.0, 1e-6, 64), (30.0, 1e-6, 896), (1e-3, 1e-6, 128), (5.0, 1e-5, 512)]:
        x = (torch.randn(4, 7, d, generator=g) * scale).bfloat16()
        inputs.append((x, (1 + 0.1 * torch.randn(d, generator=g)).bfloat16(), eps))
    references = iter([ref.rms_norm_bf16(*args) for args in inputs])

    def mismatches(*args):  # share of the outputs that differ from RMSNorm's bits (a different but exact order of
        got, want = student(*args), next(references)  # operations may flip a rare last bit: up to 1% is accepted)
        if type(got) is not torch.Tensor or got.shape != want.shape or got.dtype != want.dtype:
            return f"{_describe(got)} of dtype {getattr(got, 'dtype', None)}, expected bf16 of shape {tuple(want.shape)}"
        return (got != want).double().mean().item()

    compare("rms_norm_bf16 (share of outputs not bit-identical)", mismatches, lambda *args: 0.0, inputs, atol=0.01,
            hint="the answer is right to 2-3 digits but not bit for bit. Which part of the computation loses digits "
                 "when it runs in bf16 (8 bits of mantissa), and at which point does Qwen go back to bf16?",
            # torch's own RMSNorm in every form (torch.rms_norm, F.rms_norm, nn.RMSNorm, the aten op), transformers'
            forbidden=Forbidden.of([RMSNorm.forward, F.rms_norm, torch.nn.RMSNorm.forward],
                                   modules=["transformers.models.qwen2.modeling_qwen2"], builtins=["rms_norm"]))


PACKAGE_EQUIVALENTS = {
    "check_rms_norm_bf16": [ref.rms_norm_bf16, lambda x, w, eps: torch.rms_norm(x.float(), (x.shape[-1],), eps=eps)
                            .to(x.dtype) * w],
}
