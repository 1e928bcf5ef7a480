"""Checkers for the exercises of notebook 02_rope.

    from qwen_min.course.exercises.ch02_rope import check_inv_freq, check_rope_at_positions
    check_inv_freq(my_inv_freq)                    # my_inv_freq(head_dim, theta) -> (head_dim // 2,)
    check_rope_at_positions(my_rope)               # my_rope(x, positions, theta) -> x rotated
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare
from qwen_min.model.rope import apply_rope, default_inv_freq


def _rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    angles = positions[:, :, None].float() * default_inv_freq(x.shape[-1], theta)  # (b, t, d/2)
    angles = torch.cat((angles, angles), dim=-1)
    return apply_rope(x, angles.cos(), angles.sin())


def check_inv_freq(student) -> None:
    """student(head_dim, theta) -> inv_freq of shape (head_dim // 2,): theta ** (-2i / head_dim)."""
    inputs = [(8, 10_000.0), (64, 10_000.0), (64, 1_000_000.0), (128, 500_000.0)]
    compare("inv_freq", student, default_inv_freq, inputs, atol=1e-6,
            hint="pair i turns at theta ** (-2i / head_dim) radians per position, i = 0 .. head_dim/2 - 1; "
                 "try torch.arange(0, head_dim, 2).")


def check_rope_at_positions(student) -> None:
    """student(x (b, heads, t, d), positions (b, t), theta) -> x, pairs (x[i], x[i + d/2]) rotated by position * inv_freq[i]."""
    g = torch.Generator().manual_seed(2)
    inputs = []
    for b, h, t, d, theta in [(1, 1, 4, 4, 10_000.0), (2, 3, 5, 16, 10_000.0), (2, 2, 7, 32, 1e6)]:
        x = torch.randn(b, h, t, d, generator=g)
        positions = torch.randint(0, 1000, (b, t), generator=g)
        inputs.append((x, positions, theta))
    compare("rope_at_positions", student, _rope_reference, inputs, atol=1e-4,
            hint="Qwen pairs x[i] with x[i + d/2] (rotate-half), not x[2i] with x[2i+1]; "
                 "new_first = first * cos - second * sin, new_second = second * cos + first * sin.")
