"""Checkers for the exercises of notebook 04_model.

    from qwen_min.course.exercises.ch04_model import check_rms_norm, check_swiglu, check_num_parameters
    check_rms_norm(my_rms_norm)            # my_rms_norm(x, weight, eps) -> normalised x
    check_swiglu(my_swiglu)                # my_swiglu(x, w_gate, w_up, w_down) -> (.., hidden)
    check_num_parameters(my_count)         # my_count(cfg) -> int, a dense config's exact parameter count
"""

from __future__ import annotations

import torch

from qwen_min.config import OFFICIAL_SIZES, QwenConfig
from qwen_min.course.exercises import compare
from qwen_min.model.layers import MLP, RMSNorm


@torch.no_grad()
def _rms_norm_reference(x, weight, eps):
    norm = RMSNorm(weight.shape[0], eps)
    norm.weight.copy_(weight)
    return norm(x)


@torch.no_grad()
def _swiglu_reference(x, w_gate, w_up, w_down):
    mlp = MLP(*w_gate.shape[::-1])
    mlp.load_state_dict({"gate_proj.weight": w_gate, "up_proj.weight": w_up, "down_proj.weight": w_down})
    return mlp(x)


def check_rms_norm(student) -> None:
    """student(x (.., d), weight (d,), eps) -> x / sqrt(mean(x^2) + eps) * weight."""
    g = torch.Generator().manual_seed(4)
    inputs = [(torch.randn(3, 8, generator=g) * s, torch.randn(8, generator=g), eps)
              for s, eps in [(1.0, 1e-6), (5.0, 1e-5), (1e-3, 1e-6), (1e-4, 1e-2)]]
    compare("rms_norm", student, _rms_norm_reference, inputs, atol=1e-5,
            hint="RMSNorm does not subtract the mean; eps goes inside the square root; the mean is over the last dimension.")


def check_swiglu(student) -> None:
    """student(x (.., d), w_gate (f, d), w_up (f, d), w_down (d, f)) -> down(silu(gate(x)) * up(x))."""
    g = torch.Generator().manual_seed(5)
    inputs = []
    for d, f in [(4, 6), (8, 20), (16, 12)]:
        inputs.append((torch.randn(2, 3, d, generator=g), torch.randn(f, d, generator=g),
                       torch.randn(f, d, generator=g), torch.randn(d, f, generator=g)))
    compare("swiglu", student, _swiglu_reference, inputs, atol=1e-4,
            hint="the SiLU goes on the gate branch only; nn.Linear weights are (out, in), so x @ w.T.")


def check_num_parameters(student) -> None:
    """student(cfg) -> exact parameter count of a dense config (biases, norms, a tied embedding counted once)."""
    inputs = [(QwenConfig.from_name(name),) for name in OFFICIAL_SIZES]
    inputs += [(QwenConfig.from_name("tiny", tie_word_embeddings=False, num_key_value_heads=1),)]
    compare("num_parameters", student, lambda cfg: cfg.num_parameters(), inputs,
            hint="per layer: q/k/v/o weights, q/k/v biases (no o bias), 3 MLP matrices, 2 norm vectors; "
                 "then the final norm and the embedding (twice when untied).")
