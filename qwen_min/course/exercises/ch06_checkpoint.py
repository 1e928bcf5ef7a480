"""Checkers for the exercises of notebook 06_official_checkpoint (references: reference/ch06_checkpoint.py).

    from qwen_min.course.exercises import ch06_checkpoint as ex
    ex.check_dequantize_q5_0(my_q5_0)     # build: my_q5_0(blocks uint8 (n, 22)) -> float32 (n, 32)
    ex.check_bits_if_k_quants(my_guess)   # predict, then measure: my_guess() -> the file's bits per weight had
                                          #        its Q5_0 tensors been Q4_K and its Q8_0 tensors Q6_K

References: `gguf.quants.dequantize` (the loader's own decoders, gguf/blocks.py, equal it bit for bit;
the student may call neither, nor anything else of `gguf.quants`) and the file's tensor table.
"""

from __future__ import annotations

import numpy as np
import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch06_checkpoint as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.gguf.blocks import dequantize_q5_0


def as_float_tensor(fn):
    """Run fn, return a float tensor with -inf as a finite stand-in (so removed tokens compare equal)."""
    def wrapped(*args):
        out = fn(*args)
        out = torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).float()
        return torch.nan_to_num(out, neginf=-1e30)
    return wrapped


def check_dequantize_q5_0(student) -> None:
    """student(blocks: uint8 (n, 22)) -> float32 (n, 32), the weights of n Q5_0 blocks."""
    import gguf

    rng = np.random.default_rng(seed(6))
    inputs = []
    for n, scale in [(1, 1.0), (4, 0.02), (16, 3.0)]:
        weights = (rng.standard_normal((n, 32)) * scale).astype(np.float32)
        inputs.append((gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q5_0),))
    compare("dequantize_q5_0", as_float_tensor(student), as_float_tensor(ref.dequantize_q5_0), inputs, atol=0.0,
            hint="check the three parts separately: the scale (fp16, view the two bytes, do not convert them as "
                 "integers), the 5th bits (which bit belongs to which value), the nibbles (which half of a byte "
                 "holds the first 16 values); the 5-bit values are unsigned, centred on 16.",
            forbidden=Forbidden.of([dequantize_q5_0], modules=["gguf.quants"]))  # Q5_0.dequantize and all


def check_bits_if_k_quants(student) -> None:
    """student() -> your prediction of the 0.5B file's bits per weight had its Q5_0 tensors been Q4_K and its Q8_0
    tensors Q6_K (the recipe's own types, which rows of 896 weights cannot use)."""
    guess = prediction("bits if K-quants fit", student)
    measured = round(ref.measured_bits_if_k_quants(), 2)
    judge_prediction("bits if K-quants fit", guess, measured, type(guess) in (int, float) and abs(guess - measured) <= 0.25,
                     "Bits per weight of each type: Q5_0 22 bytes per 32 weights, Q4_K 144 per 256, Q8_0 34 per 32, "
                     "Q6_K 210 per 256. Then weigh them by how many weights each type holds in the tensor table.")


PACKAGE_EQUIVALENTS = {
    "check_dequantize_q5_0": [ref.dequantize_q5_0, dequantize_q5_0],
}
