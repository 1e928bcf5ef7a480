"""Checkers for the exercises of notebook 07_quantization.

    from qwen_min.course.exercises import ch07_quantization as ex
    ex.check_q8_0(my_q8_0)                         # build: my_q8_0(x float32 (rows, n)) -> Q8_0 bytes uint8 (rows, n / 32 * 34)
    ex.check_int4_sensitivity(my_guess)            # predict, then measure: my_guess() -> the matrix kind int4 hurts most
    ex.check_int4_groups(my_int4)                  # debug: my_int4(w, group_size) -> dequantised w; bug in ex.buggy_int4

References: `gguf.quants.quantize` (ggml-quants.c bit for bit) and qwen_min.quant.groups.
"""

from __future__ import annotations

import numpy as np
import torch

from qwen_min.checkpoints.fetch import default_checkpoint
from qwen_min.checkpoints.hf import from_pretrained
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.eval.perplexity import held_out_ids
from qwen_min.gguf.blocks import quantize_q8_0
from qwen_min.paths import official_tokenizer_dir
from qwen_min.quant.groups import dequantize_int4, quantize_int4
from qwen_min.tokenizer.bpe import Tokenizer

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _q8_0_reference(x: np.ndarray) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)


def _as_bytes(fn):
    return lambda x: torch.from_numpy(np.ascontiguousarray(np.asarray(fn(x), dtype=np.uint8)).astype(np.int16))


def check_q8_0(student) -> None:
    """student(x: float32 (rows, n), n a multiple of 32) -> uint8 (rows, n / 32 * 34): Q8_0 blocks, bit for bit."""
    import gguf

    rng = np.random.default_rng(7)
    inputs = []
    for rows, n, scale in [(1, 32, 1.0), (3, 64, 0.02), (8, 256, 5.0)]:
        x = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
        inputs.append((x,))
    halves = (np.arange(64, dtype=np.float32) - 31.5)[None]  # values landing on exact halves of a step
    halves[0, :32] *= 127 / 31.5
    inputs.append((np.concatenate([halves, np.zeros((1, 64), dtype=np.float32)]),))  # and an all-zero block
    compare("q8_0", _as_bytes(student), _as_bytes(_q8_0_reference), inputs, atol=0.0,
            hint="per block of 32: d = max|x| / 127 in float32, codes = x * (1 / d) rounded half AWAY from zero "
                 "(numpy's round goes to even), a zero block has d = 0 and codes 0; then the 2 bytes of d as "
                 "float16, then the 32 codes as int8 viewed as uint8.",
            forbidden=[gguf.quants.quantize, quantize_q8_0])


@torch.no_grad()
def int4_output_errors(model, ids: list[int], group_size: int = 128, layers=range(0, 24, 4)) -> dict[str, float]:
    """Mean relative output error ||X W.T - X Q(W).T|| / ||X W.T|| per matrix kind, int4 in groups, on `layers`."""
    inputs, hooks = {}, []
    for i in layers:
        for name, module in model.model.layers[i].named_modules():
            if name.split(".")[-1] in KINDS:
                hooks.append(module.register_forward_hook(
                    lambda m, args, out, key=(i, name.split(".")[-1]): inputs.__setitem__(key, args[0].flatten(0, -2))))
    try:
        model(torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    errors = {kind: [] for kind in KINDS}
    for (i, kind), x in inputs.items():
        layer = model.model.layers[i]
        parent = layer.self_attn if kind in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
        w = getattr(parent, kind).weight.float()
        y, yq = x.float() @ w.T, x.float() @ dequantize_int4(*quantize_int4(w, group_size)).T
        errors[kind].append(((y - yq).norm() / y.norm()).item())
    return {kind: sum(v) / len(v) for kind, v in errors.items()}


def check_int4_sensitivity(student) -> None:
    """student() -> one of KINDS: the matrix kind whose *outputs* int4 (g=128) changes most, measured on the real
    0.5B (loaded here, bf16) over 128 tokens of held-out Python."""
    guess = prediction("int4 sensitivity", student)
    if guess not in KINDS:
        raise ValueError(f"predict one of {', '.join(KINDS)}, got {guess!r}")
    model = from_pretrained(default_checkpoint(), dtype=torch.bfloat16)
    ids = held_out_ids(Tokenizer.from_pretrained(official_tokenizer_dir()), "python-stdlib", n_tokens=384)[256:]
    errors = int4_output_errors(model, ids)
    del model
    worst = max(errors, key=errors.get)
    ranking = ", ".join(f"{k} {v:.3f}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
    judge_prediction("int4 sensitivity", guess, worst, guess == worst,
                     "The weight error is about the same for every kind (~10-15%: 16 levels per group). What differs "
                     "is what multiplies it: which inputs are spread over many channels with no dominant one, so "
                     "that errors do not cancel, and which outputs are small to begin with?")
    print(f"relative output error, int4 g128 (layers 0, 4, ..., 20): {ranking}")


def buggy_int4(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Quantise w to int4 in groups (scale and zero point) and return the dequantised weight (one planted bug)."""
    rows, cols = w.shape
    g = w.float().reshape(rows, cols // group_size, group_size)
    low, high = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (high - low).clamp(min=1e-12) / 16
    q = torch.round((g - low) / scale).clamp(0, 15)
    return (q * scale + low).reshape(rows, cols)


def check_int4_groups(student) -> None:
    """student(w: float (rows, cols), group_size) -> float32 (rows, cols): w quantised to int4 in groups, dequantised."""
    g = torch.Generator().manual_seed(7)
    inputs = [(torch.randn(4, 64, generator=g), 32), (torch.randn(16, 256, generator=g) * 0.02, 128),
              (torch.rand(8, 128, generator=g) + 1.0, 32)]
    compare("int4_groups", lambda w, gs: torch.as_tensor(student(w, gs)).float(),
            lambda w, gs: dequantize_int4(*quantize_int4(w, gs)), inputs, atol=1e-6,
            hint="compare the largest value of a group before and after: does it come back? How many steps "
                 "are there between code 0 and code 15?",
            forbidden=[quantize_int4, dequantize_int4])


PACKAGE_EQUIVALENTS = {
    "check_q8_0": [_q8_0_reference, quantize_q8_0],
    "check_int4_groups": [lambda w, gs: dequantize_int4(*quantize_int4(w, gs))],
}
