"""Reference answers of notebooks/07a_awq_gptq.ipynb's exercises (see __init__.py)."""

import torch

from qwen_min.course.exercises.watch import answer
from qwen_min.quant.gptq import gptq_int4


@answer("ch07a_awq_gptq.check_gptq")
def gptq(w, h, group_size):
    """The package's GPTQ with the exercise's settings: damping 0.01 x mean diag H, columns in order."""
    return gptq_int4(w, h, group_size, damp=0.01, act_order=False)


@answer("ch07a_awq_gptq.check_output_error")
def output_error(delta, h):
    """Per output row, delta[o] H delta[o]^T, which is ||X delta[o]^T||^2 when H = X^T X."""
    return torch.einsum("oi,ij,oj->o", delta, h, delta)
