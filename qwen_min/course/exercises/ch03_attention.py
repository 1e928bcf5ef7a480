"""Checkers for the exercises of notebook 03_attention.

    from qwen_min.course.exercises.ch03_attention import check_causal_mask, check_gqa_attention, check_kv_cache_bytes
    check_causal_mask(my_mask)             # my_mask(t) -> bool (t, t), True where query i may see key j
    check_gqa_attention(my_attention)      # my_attention(q, k, v) -> causal GQA output
    check_kv_cache_bytes(my_bytes)         # my_bytes(cfg, bytes_per_element) -> bytes per token of context
"""

from __future__ import annotations

import torch

from qwen_min.config import OFFICIAL_SIZES, QwenConfig
from qwen_min.course.exercises import compare
from qwen_min.model.attention import attention_mask_for, eager_attention


def check_causal_mask(student) -> None:
    """student(t) -> torch.bool tensor (t, t), True where query i may attend to key j (j <= i)."""
    reference = lambda t: attention_mask_for(t, 0, torch.ones(1, t), torch.device("cpu"))[0, 0]  # no padding: plain causal
    compare("causal_mask", student, reference, [(1,), (2,), (5,), (9,)],
            hint="a token sees itself and everything before it: the lower triangle, diagonal included (torch.tril).")


def check_gqa_attention(student) -> None:
    """student(q (b, h, t, d), k (b, h_kv, t, d), v (b, h_kv, t, d)) -> (b, h, t, d), causal softmax attention."""
    g = torch.Generator().manual_seed(3)
    inputs = []
    for b, h, h_kv, t, d in [(1, 1, 1, 4, 8), (2, 4, 4, 6, 8), (2, 4, 2, 5, 16), (1, 6, 2, 7, 8), (2, 7, 1, 3, 4)]:
        inputs.append(tuple(torch.randn(b, n, t, d, generator=g) for n in (h, h_kv, h_kv)))
    compare("gqa_attention", student, lambda q, k, v: eager_attention(q, k, v, None), inputs, atol=1e-5,
            hint="query head i uses key/value head i // (h // h_kv) (repeat_interleave on dim 1); "
                 "scale scores by 1/sqrt(d) and mask the future before the softmax.")


def check_kv_cache_bytes(student) -> None:
    """student(cfg, bytes_per_element) -> bytes the KV cache needs per token of context."""
    inputs = [(QwenConfig.from_name(name), n) for name in OFFICIAL_SIZES for n in (2, 4)]
    inputs.append((QwenConfig.from_name("tiny", num_key_value_heads=4), 4))
    compare("kv_cache_bytes", student, lambda cfg, n: cfg.kv_cache_bytes_per_token(n), inputs,
            hint="keys and values (x2), for every layer, for every key/value head (not query head), head_dim wide.")
