"""Checkers for the exercises of notebook 02_rope (references: reference/ch02_rope.py).

    from qwen_min.course.exercises import ch02_rope as ex
    ex.check_permutation(my_prediction)       # predict: my_prediction() -> (changes without RoPE?, changes with RoPE?)
    ex.check_rope_at_positions(my_rope)       # debug:   my_rope(x, positions, theta) -> x rotated; ex.buggy_rope has the bug
    ex.check_yarn(my_yarn)                    # build:   my_yarn(head_dim, theta, factor, original_context)
                                              #          -> (inv_freq, attention factor)
"""

from __future__ import annotations

import random

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch02_rope as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.model.rope import RotaryEmbedding, apply_rope, default_inv_freq, rope_frequencies, rotate_half, yarn_inv_freq

# transformers' own RoPE (apply_rotary_pos_emb, rotate_half, the YaRN frequencies), where it is installed
_TRANSFORMERS_ROPE = ["transformers.models.qwen2.modeling_qwen2", "transformers.models.llama.modeling_llama",
                      "transformers.modeling_rope_utils"]


def check_permutation(student_fn) -> None:
    """student_fn() -> (bool, bool): does the last token's causal attention output change when the tokens before it
    are shuffled, (1) without RoPE, (2) with RoPE?"""
    guess = prediction("shuffled prefix", student_fn)
    measured = ref.measured_permutation_effect()
    judge_prediction("shuffled prefix", guess, measured, isinstance(guess, tuple) and guess == measured,
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
    g = torch.Generator().manual_seed(seed(2))
    inputs = []
    for b, h, t, d, theta in [(1, 1, 4, 4, 10_000.0), (2, 3, 5, 16, 10_000.0), (2, 2, 7, 32, 1e6)]:
        x = torch.randn(b, h, t, d, generator=g)
        positions = torch.randint(0, 1000, (b, t), generator=g)
        inputs.append((x, positions, theta))
    compare("rope_at_positions", student, ref.rope_at_positions, inputs, atol=1e-4,
            hint="the relative-position property holds for a rotation either way round; a checkpoint was trained "
                 "with one direction. Rotate the 2-D point (1, 0) by a small positive angle by hand and compare.",
            forbidden=Forbidden.of([apply_rope, rotate_half, RotaryEmbedding.forward], modules=_TRANSFORMERS_ROPE))


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
    rng = random.Random(seed(2))
    inputs += [(rng.choice([32, 64, 128]), rng.choice([1e4, 1e6]), rng.choice([2.0, 4.0, 8.0]), rng.choice([2048, 32768]))
               for _ in range(2)]
    compare("yarn", _comparable(student), _comparable(ref.yarn), inputs, atol=1e-5,
            hint="for each pair, count the full turns it makes within the original context; the ramp runs between "
                 "the pairs that make beta_fast turns and beta_slow turns (found by solving for the pair index, then "
                 "floor / ceil); the attention factor grows with the log of the factor.",
            forbidden=Forbidden.of([yarn_inv_freq, rope_frequencies], modules=_TRANSFORMERS_ROPE))


def _package_rope(x, positions, theta):  # the package's apply_rope, passed straight in
    angles = positions[:, :, None].float() * default_inv_freq(x.shape[-1], theta)  # (b, t, d/2)
    return apply_rope(x, torch.cat((angles, angles), dim=-1).cos(), torch.cat((angles, angles), dim=-1).sin())


PACKAGE_EQUIVALENTS = {
    "check_rope_at_positions": [_package_rope],
    "check_yarn": [lambda d, theta, factor, context: yarn_inv_freq(
        d, theta, {"factor": factor, "original_max_position_embeddings": context}, int(context * factor))],
}
