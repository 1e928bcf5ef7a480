"""Reference answers and the measurement of notebooks/03_attention.ipynb's exercises (see __init__.py)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from qwen_min.course.exercises.watch import answer
from qwen_min.model.attention import attention_mask_for, eager_attention


@answer("ch03_attention.check_padded_mask")
def padded_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    return attention_mask_for(attention_mask.shape[1], 0, attention_mask, attention_mask.device)


@answer("ch03_attention.check_gqa_attention")
def gqa_attention(q, k, v):
    return eager_attention(q, k, v, None)


@answer("ch03_attention.check_no_mask_loss")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_no_mask_loss(steps: int = 150, vocab: int = 64, t: int = 16) -> tuple[float, float]:
    """Train the same one-layer attention model twice on random tokens, with and without the causal mask.
    Returns the final next-token losses (with mask, without mask)."""
    results = []
    for causal in (True, False):
        torch.manual_seed(3)
        d = 32
        embed, pos = torch.nn.Embedding(vocab, d), torch.nn.Parameter(torch.randn(t, d) * 0.1)
        qkv, head = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, vocab)
        params = [*embed.parameters(), pos, *qkv.parameters(), *head.parameters()]
        opt = torch.optim.Adam(params, lr=1e-2)
        data = torch.Generator().manual_seed(4)
        for _ in range(steps):
            ids = torch.randint(0, vocab, (32, t), generator=data)  # uniform random tokens: nothing to learn honestly
            x = embed(ids) + pos
            q, k, v = qkv(x).chunk(3, dim=-1)
            x = x + F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            loss = F.cross_entropy(head(x)[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append(loss.item())
    return results[0], results[1]
