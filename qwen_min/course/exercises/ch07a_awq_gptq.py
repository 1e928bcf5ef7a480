"""Checkers for the exercises of notebook 07a_awq_gptq (references: reference/ch07a_awq_gptq.py).

    from qwen_min.course.exercises import ch07a_awq_gptq as ex
    ex.check_gptq(my_gptq)                      # debug: my_gptq(w, h, group_size) -> (codes, scale, minimum), GPTQ in
                                                #        its H^-1 form; ex.buggy_gptq holds the planted bug
    ex.check_output_error(my_output_error)      # build: my_output_error(delta (out, in), h (in, in)) -> (out,)

The GPTQ checker compares with `qwen_min.quant.gptq.gptq_int4` (damping 0.01, columns in order) on small seeded layers
whose inputs have a few large channels, as real layers do: at least 99% identical codes and the same output error
within 1% (sums in another order may flip a rare near-tie; the planted bug changes 10-16% of the codes).
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, seed
from qwen_min.course.exercises.reference import ch07a_awq_gptq as ref
from qwen_min.quant.gptq import gptq_int4
from qwen_min.quant.groups import dequantize_int4
from qwen_min.quant.linear import int4_grid

PASSED = {"identical codes >= 99%": True, "output error within 1%": True}


def buggy_gptq(w: torch.Tensor, h: torch.Tensor, group_size: int):
    """GPTQ with H^-1 itself (the paper's first statement of it), columns in order, damping 0.01: one planted bug."""
    w, n = w.clone().float(), w.shape[1]
    h_inv = torch.linalg.inv(h + 0.01 * h.diag().mean() * torch.eye(n))
    q = torch.zeros(w.shape, dtype=torch.uint8)
    scales, minima = [], []
    for j in range(n):
        if j % group_size == 0:                                   # this group's grid, from the corrected weights
            _, s, low = int4_grid(w[:, j:j + group_size], group_size)
            s, z = s[:, 0], low[:, 0] + 8 * s[:, 0]
            scales.append(s)
            minima.append(low[:, 0])
        code = torch.round((w[:, j] - z) / s + 8).clamp(0, 15)
        err = (w[:, j] - ((code - 8) * s + z)) / h_inv[j, j]
        w[:, j + 1:] -= err[:, None] * h_inv[j, j + 1:][None, :]  # push the error onto the columns to come
        q[:, j] = code.to(torch.uint8)
    return q, torch.stack(scales, 1), torch.stack(minima, 1)


def _layer(at: int, out: int, inp: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight (out, inp) and calibration inputs (4 inp, inp): correlated, the first inp / 16 channels 8x larger."""
    g = torch.Generator().manual_seed(at)
    w = torch.randn(out, inp, generator=g) * 0.05
    mix = torch.eye(inp) + 0.3 * torch.randn(inp, inp, generator=g) / inp ** 0.5
    x = torch.randn(4 * inp, inp, generator=g) @ mix
    x[:, :inp // 16] *= 8
    return w, x


def _output_error(grid, w, x) -> float:
    return ((x @ (dequantize_int4(*grid) - w).T) ** 2).sum().item()


def check_gptq(student) -> None:
    """student(w (out, in), h (in, in), group_size) -> (codes uint8 (out, in), scale, minimum (out, in / g)), as
    `gptq_int4(w, h, group_size, damp=0.01, act_order=False)`."""
    cases = []
    for k, (out, inp, group_size) in enumerate([(16, 128, 32), (32, 256, 64), (8, 256, 128)]):
        w, x = _layer(seed(70 + k), out, inp)
        cases.append((w, x, group_size, ref.gptq(w, x.T @ x, group_size)))

    def graded(w, x, group_size, want):
        codes, scale, minimum = student(w.clone(), x.T @ x, group_size)
        same = (torch.as_tensor(codes) == want[0]).float().mean().item()
        got = tuple(torch.as_tensor(t).float() for t in (codes, scale, minimum))
        ratio = _output_error(got, w, x) / _output_error(want, w, x)
        return {"identical codes >= 99%": same >= 0.99, "output error within 1%": abs(ratio - 1) <= 0.01}

    compare("gptq", graded, lambda *case: PASSED, cases,
            hint="once column j is quantised, the columns still to come must be corrected with the inverse Hessian "
                 "of those columns only. What does the loop do to H^-1 after column j?",
            forbidden=[gptq_int4])


def check_output_error(student) -> None:
    """student(delta (out, in), h (in, in)) -> (out,): ||X delta[o]^T||^2 for every row o, from H = X^T X alone."""
    g = torch.Generator().manual_seed(seed(71))
    inputs = []
    for out, inp, tokens in [(1, 4, 3), (5, 16, 64), (12, 32, 20)]:       # 20 tokens for 32 inputs: H is not full rank
        x = torch.randn(tokens, inp, generator=g, dtype=torch.float64)
        inputs.append((torch.randn(out, inp, generator=g, dtype=torch.float64) * 0.1, x.T @ x))
    compare("output_error", student, ref.output_error, inputs, atol=1e-9,
            hint="||X d^T||^2 = (X d^T)^T (X d^T) = d (X^T X) d^T: one quadratic form per row of delta, no cross "
                 "terms between rows.")


PACKAGE_EQUIVALENTS = {"check_gptq": [lambda w, h, group_size: gptq_int4(w, h, group_size, damp=0.01)]}
