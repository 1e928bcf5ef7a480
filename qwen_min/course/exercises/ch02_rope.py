"""Checkers for the exercises of notebook 02_rope.

    from qwen_min.course.exercises import ch02_rope as ex
    ex.check_permutation(my_prediction)       # predict: my_prediction() -> (changes without RoPE?, changes with RoPE?)
    ex.check_rope_at_positions(my_rope)       # debug:   my_rope(x, positions, theta) -> x rotated; ex.buggy_rope has the bug
    ex.check_yarn(my_yarn)                    # build:   my_yarn(head_dim, theta, factor, original_context)
                                              #          -> (inv_freq, attention factor)
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.attention import eager_attention
from qwen_min.model.rope import RotaryEmbedding, apply_rope, default_inv_freq, rope_frequencies, rotate_half, yarn_inv_freq


def _rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    angles = positions[:, :, None].float() * default_inv_freq(x.shape[-1], theta)  # (b, t, d/2)
    angles = torch.cat((angles, angles), dim=-1)
    return apply_rope(x, angles.cos(), angles.sin())


def _last_token_output(x: torch.Tensor, rope: bool) -> torch.Tensor:
    """One causal attention head (q = k = v = x, no projections) over x (t, d); the last token's output."""
    q = k = x[None, None]  # (1, 1, t, d)
    if rope:
        q = k = _rope_reference(q, torch.arange(x.shape[0])[None], 10_000.0)
    return eager_attention(q, k, x[None, None], None)[0, 0, -1]  # (d,)


def measured_permutation_effect() -> tuple[bool, bool]:
    """Shuffle every token but the last: does the last token's attention output change, without / with RoPE?"""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 16, generator=g, dtype=torch.float64)  # (t, d)
    shuffled = torch.cat((x[:-1][torch.randperm(7, generator=g)], x[-1:]))
    # "changes" means more than rounding: eager_attention takes its softmax in fp32, whose sums in another order differ
    # by up to 1.4e-7 on some kernel paths (AVX2) and 0 on others; RoPE changes the output by 0.16 here
    return tuple(bool((_last_token_output(x, rope) - _last_token_output(shuffled, rope)).abs().max() > 1e-4)
                 for rope in (False, True))


def check_permutation(student_fn) -> None:
    """student_fn() -> (bool, bool): does the last token's causal attention output change when the tokens before it
    are shuffled, (1) without RoPE, (2) with RoPE?"""
    guess = prediction("shuffled prefix", student_fn)
    measured = measured_permutation_effect()
    judge_prediction("shuffled prefix", guess, measured, tuple(guess) == measured if isinstance(guess, (tuple, list))
                     else False,
                     "Without positions, what does a softmax-weighted sum depend on: the keys as a list, or as a set? "
                     "And with RoPE, what does each score depend on?")


def buggy_rope(x, positions, theta):
    """x (b, heads, t, d), positions (b, t) -> x rotated in the rotate-half layout (one planted bug)."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)  # (d/2,)
    angles = positions[:, None, :, None].float() * inv_freq  # (b, 1, t, d/2)
    cos, sin = angles.cos(), angles.sin()
    first, second = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((first * cos + second * sin, second * cos - first * sin), dim=-1)


def check_rope_at_positions(student) -> None:
    """student(x (b, heads, t, d), positions (b, t), theta) -> x, pairs (x[i], x[i + d/2]) rotated by position * inv_freq[i]."""
    g = torch.Generator().manual_seed(2)
    inputs = []
    for b, h, t, d, theta in [(1, 1, 4, 4, 10_000.0), (2, 3, 5, 16, 10_000.0), (2, 2, 7, 32, 1e6)]:
        x = torch.randn(b, h, t, d, generator=g)
        positions = torch.randint(0, 1000, (b, t), generator=g)
        inputs.append((x, positions, theta))
    compare("rope_at_positions", student, _rope_reference, inputs, atol=1e-4,
            hint="the relative-position property holds for a rotation either way round; a checkpoint was trained "
                 "with one direction. Rotate the 2-D point (1, 0) by a small positive angle by hand and compare.",
            forbidden=[apply_rope, rotate_half, RotaryEmbedding.forward])


def _yarn_reference(head_dim, theta, factor, original_context):
    inv_freq, attention_factor = yarn_inv_freq(head_dim, theta, {"factor": factor,
                                                                 "original_max_position_embeddings": original_context},
                                               int(original_context * factor))
    return inv_freq, attention_factor


def _comparable(fn):
    """(inv_freq, factor) -> one tensor: log inv_freq (so the slow pairs' tiny values count), then the factor."""
    def wrapped(*args):
        inv_freq, attention_factor = fn(*args)
        return torch.cat((torch.as_tensor(inv_freq, dtype=torch.float64).log(),
                          torch.tensor([float(attention_factor)], dtype=torch.float64)))
    return wrapped


def check_yarn(student) -> None:
    """student(head_dim, theta, factor, original_context) -> (inv_freq (head_dim // 2,), attention_factor), YaRN with
    beta_fast 32, beta_slow 1 and the ramp ends rounded outwards to whole pairs (transformers' default)."""
    inputs = [(128, 1e6, 4.0, 32768), (64, 1e6, 4.0, 32768), (64, 1e4, 2.0, 4096), (128, 5e5, 8.0, 8192),
              (16, 1e4, 4.0, 16)]
    compare("yarn", _comparable(student), _comparable(_yarn_reference), inputs, atol=1e-5,
            hint="for each pair, count the full turns it makes within the original context; the ramp runs between "
                 "the pairs that make beta_fast turns and beta_slow turns (found by solving for the pair index, then "
                 "floor / ceil); the attention factor grows with the log of the factor.",
            forbidden=[yarn_inv_freq, rope_frequencies])


PACKAGE_EQUIVALENTS = {
    "check_rope_at_positions": [_rope_reference],
    "check_yarn": [_yarn_reference],
}
