"""Checkers for the exercises of notebook 07_quantization (references: reference/ch07_quantization.py).

    from qwen_min.course.exercises import ch07_quantization as ex
    ex.check_q8_0(my_q8_0)                         # build: my_q8_0(x float32 (rows, n)) -> Q8_0 bytes uint8 (rows, n / 32 * 34)
    ex.check_int4_sensitivity(my_guess)            # predict, then measure: my_guess() -> the matrix kind int4 hurts most

References: `gguf.quants.quantize` (ggml-quants.c bit for bit; nothing of `gguf.quants` may be called, Q8_0.quantize
included) and the real 0.5B's layers, int4 g128 (qwen_min.quant.groups).
"""

from __future__ import annotations

import numpy as np
import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch07_quantization as ref
from qwen_min.course.exercises.reference.ch07_quantization import KINDS
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.gguf.blocks import quantize_q8_0


def _as_bytes(fn):
    return lambda x: torch.from_numpy(np.ascontiguousarray(np.asarray(fn(x), dtype=np.uint8)).astype(np.int16))


def check_q8_0(student) -> None:
    """student(x: float32 (rows, n), n a multiple of 32) -> uint8 (rows, n / 32 * 34): Q8_0 blocks, bit for bit."""
    rng = np.random.default_rng(seed(7))
    inputs = []
    for rows, n, scale in [(1, 32, 1.0), (3, 64, 0.02), (8, 256, 5.0)]:
        x = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
        inputs.append((x,))
    halves = (np.arange(64, dtype=np.float32) - 31.5)[None]  # values landing on exact halves of a step
    halves[0, :32] *= 127 / 31.5
    inputs.append((np.concatenate([halves, np.zeros((1, 64), dtype=np.float32)]),))  # and an all-zero block
    compare("q8_0", _as_bytes(student), _as_bytes(ref.q8_0), inputs, atol=0.0,
            hint="per block of 32: d = max|x| / 127 in float32, codes = x * (1 / d) rounded half AWAY from zero "
                 "(numpy's round goes to even), a zero block has d = 0 and codes 0; then the 2 bytes of d as "
                 "float16, then the 32 codes as int8 viewed as uint8.",
            forbidden=Forbidden.of([quantize_q8_0], modules=["gguf.quants"]))


def check_int4_sensitivity(student) -> None:
    """student() -> one of KINDS: the matrix kind whose *outputs* int4 (g=128) changes most, measured on the real
    0.5B (loaded here, bf16) over 128 tokens of held-out Python."""
    guess = prediction("int4 sensitivity", student)
    if guess not in KINDS:
        raise ValueError(f"predict one of {', '.join(KINDS)}, got {guess!r}")
    errors = ref.measured_int4_errors()
    worst = max(errors, key=errors.get)
    ranking = ", ".join(f"{k} {v:.3f}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
    judge_prediction("int4 sensitivity", guess, worst, guess == worst,
                     "The weight error is about the same for every kind (~10-15%: 16 levels per group). What differs "
                     "is what multiplies it: which inputs are spread over many channels with no dominant one, so "
                     "that errors do not cancel, and which outputs are small to begin with?")
    print(f"relative output error, int4 g128 (layers 0, 4, ..., 20): {ranking}")


PACKAGE_EQUIVALENTS = {
    "check_q8_0": [ref.q8_0, quantize_q8_0],
}
