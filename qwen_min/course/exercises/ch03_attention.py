"""Checkers for the exercises of notebook 03_attention (references: reference/ch03_attention.py).

    from qwen_min.course.exercises import ch03_attention as ex
    ex.check_padded_mask(my_mask)            # build:   my_mask(attention_mask (b, t) of 0/1) -> bool (b, 1, t, t)
    ex.check_no_mask_loss(my_prediction)     # predict: my_prediction() -> "A", "B" or "C" (see the notebook)
    ex.check_gqa_attention(my_attention)     # debug:   my_attention(q, k, v) -> causal GQA output; ex.buggy_gqa has the bug
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch03_attention as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.model.attention import attention_mask_for, eager_attention, sdpa_attention

# transformers' masks and attention functions (repeat_kv, eager / sdpa attention), where it is installed
_TRANSFORMERS_MASKS = ["transformers.masking_utils", "transformers.modeling_attn_mask_utils"]
_TRANSFORMERS_ATTENTION = ["transformers.models.qwen2.modeling_qwen2", "transformers.models.llama.modeling_llama",
                           "transformers.integrations.sdpa_attention"]


def check_padded_mask(student) -> None:
    """student(attention_mask (b, t), 1 = real token, 0 = left padding) -> bool (b, 1, t, t), True where query i may
    attend to key j."""
    g = torch.Generator().manual_seed(seed(3))
    inputs = [(torch.ones(1, 4, dtype=torch.long),), (torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),)]
    for b, t in [(3, 6), (4, 9)]:
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        inputs.append(((torch.arange(t)[None] >= t - lengths[:, None]).long(),))
    compare("padded_mask", student, ref.padded_mask, inputs,
            hint="two conditions for a key: it is not in the future, and it is a real token. Then look at the rows "
                 "of padding queries: a softmax over nothing is NaN, so what may such a query see?",
            forbidden=Forbidden.of([attention_mask_for], modules=_TRANSFORMERS_MASKS))


def check_no_mask_loss(student) -> None:
    """student() -> "A", "B" or "C": after training without the causal mask on uniform random tokens (vocabulary 64,
    ln 64 = 4.16), the loss is A: about ln 64, as with the mask; B: far below it, near 0; C: clearly above ln 64."""
    guess = prediction("loss without the causal mask", student)
    with_mask, without = ref.measured_no_mask_loss()
    measured = "A" if abs(without - math.log(64)) < 0.5 else "B" if without < 1.0 else "C"
    judge_prediction("loss without the causal mask", guess, f"{measured} (with mask {with_mask:.2f}, "
                     f"without {without:.2f})", isinstance(guess, str) and guess.strip().upper() == measured,
                     "Random tokens cannot be predicted from the past. What can position i read when nothing hides "
                     "position i + 1?")


def buggy_gqa(q, k, v):
    """q (b, h, t, d), k and v (b, h_kv, t, d) -> (b, h, t, d), causal grouped-query attention (one planted bug)."""
    t, d = q.shape[2], q.shape[3]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)  # (b, h, t, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (b, h, t, t)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v


def check_gqa_attention(student) -> None:
    """student(q (b, h, t, d), k (b, h_kv, t, d), v (b, h_kv, t, d)) -> (b, h, t, d), causal softmax attention."""
    g = torch.Generator().manual_seed(seed(3))
    inputs = []
    for b, h, h_kv, t, d in [(1, 1, 1, 4, 8), (2, 4, 4, 6, 8), (2, 4, 2, 5, 16), (1, 6, 2, 7, 8), (2, 7, 1, 3, 4)]:
        inputs.append(tuple(torch.randn(b, n, t, d, generator=g) for n in (h, h_kv, h_kv)))
    compare("gqa_attention", student, ref.gqa_attention, inputs, atol=1e-5,
            hint="it passes when every query head has its own K/V head, or when there is one K/V head for all: "
                 "print which K/V head each query head ends up reading when there are 2 K/V heads for 4 query heads.",
            # torch's own attention in every form: F.scaled_dot_product_attention (enable_gqa or not), its aten ops,
            # nn.MultiheadAttention's functional form
            forbidden=Forbidden.of([eager_attention, sdpa_attention, F.multi_head_attention_forward],
                                   modules=_TRANSFORMERS_ATTENTION, builtins=["scaled_dot_product"]))


PACKAGE_EQUIVALENTS = {
    "check_padded_mask": [lambda m: attention_mask_for(m.shape[1], 0, m, m.device)],
    "check_gqa_attention": [lambda q, k, v: eager_attention(q, k, v, None), lambda q, k, v: sdpa_attention(q, k, v, None),
                            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)],
}
