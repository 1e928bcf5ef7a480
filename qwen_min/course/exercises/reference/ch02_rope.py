"""Reference answers and the measurement of notebooks/02_rope.ipynb's exercises (see __init__.py)."""

from __future__ import annotations

import functools

import torch

from qwen_min.course.exercises.watch import answer
from qwen_min.model.attention import eager_attention
from qwen_min.model.rope import apply_rope, default_inv_freq, yarn_inv_freq


@answer("ch02_rope.check_rope_at_positions")
def rope_at_positions(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    angles = positions[:, :, None].float() * default_inv_freq(x.shape[-1], theta)  # (b, t, d/2)
    angles = torch.cat((angles, angles), dim=-1)
    return apply_rope(x, angles.cos(), angles.sin())


def _last_token_output(x: torch.Tensor, rope: bool) -> torch.Tensor:
    """One causal attention head (q = k = v = x, no projections) over x (t, d); the last token's output."""
    q = k = x[None, None]  # (1, 1, t, d)
    if rope:
        q = k = rope_at_positions(q, torch.arange(x.shape[0])[None], 10_000.0)
    return eager_attention(q, k, x[None, None], None)[0, 0, -1]  # (d,)


@answer("ch02_rope.check_permutation")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_permutation_effect() -> tuple[bool, bool]:
    """Shuffle every token but the last: does the last token's attention output change, without / with RoPE?"""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 16, generator=g, dtype=torch.float64)  # (t, d)
    shuffled = torch.cat((x[:-1][torch.randperm(7, generator=g)], x[-1:]))
    # "changes" means more than rounding: eager_attention takes its softmax in fp32, whose sums in another order differ
    # by up to 1.4e-7 on some kernel paths (AVX2) and 0 on others; RoPE changes the output by 0.16 here
    return tuple(bool((_last_token_output(x, rope) - _last_token_output(shuffled, rope)).abs().max() > 1e-4)
                 for rope in (False, True))


@answer("ch02_rope.check_yarn")
def yarn(head_dim, theta, factor, original_context):
    return yarn_inv_freq(head_dim, theta, {"factor": factor, "original_max_position_embeddings": original_context},
                         int(original_context * factor))
