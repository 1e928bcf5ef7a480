"""Reference answer and the measurement of notebooks/06_official_checkpoint.ipynb's exercises (see __init__.py)."""

import functools
import math

import numpy as np

from qwen_min.checkpoints.fetch import default_checkpoint
from qwen_min.course.exercises.watch import answer
from qwen_min.gguf.file import read_gguf


@answer("ch06_checkpoint.check_dequantize_q5_0")
def dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    import gguf

    return gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q5_0)


K_QUANT_OF = {"Q5_0": (256, 144), "Q8_0": (256, 210)}  # the fallback undone: Q4_K and Q6_K, (weights, bytes) per block


@answer("ch06_checkpoint.check_bits_if_k_quants")
@functools.cache
def measured_bits_if_k_quants() -> float:
    """Bits per weight of the 0.5B GGUF file had every Q5_0 tensor been Q4_K and every Q8_0 tensor Q6_K."""
    tensors = list(read_gguf(default_checkpoint()).tensors.values())
    bits = 0.0
    for t in tensors:
        if t.type_name in K_QUANT_OF:
            per_block, block_bytes = K_QUANT_OF[t.type_name]
            bits += math.prod(t.shape) / per_block * block_bytes * 8
        else:
            bits += t.nbytes * 8
    return bits / sum(math.prod(t.shape) for t in tensors)
