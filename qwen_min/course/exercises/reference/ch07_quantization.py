"""Reference answers and the measurement of notebooks/07_quantization.ipynb's exercises (see __init__.py)."""

import functools

import numpy as np
import torch

from qwen_min.checkpoints.fetch import default_checkpoint
from qwen_min.checkpoints.hf import from_pretrained
from qwen_min.course.exercises.watch import answer
from qwen_min.eval.perplexity import held_out_ids
from qwen_min.paths import official_tokenizer_dir
from qwen_min.quant.groups import dequantize_int4, quantize_int4
from qwen_min.tokenizer.bpe import Tokenizer

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@answer("ch07_quantization.check_q8_0")
def q8_0(x: np.ndarray) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)


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


@answer("ch07_quantization.check_int4_sensitivity")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_int4_errors() -> dict[str, float]:
    """int4_output_errors of the real 0.5B (bf16) over 128 tokens of held-out Python."""
    model = from_pretrained(default_checkpoint(), dtype=torch.bfloat16)
    ids = held_out_ids(Tokenizer.from_pretrained(official_tokenizer_dir()), "python-stdlib", n_tokens=384)[256:]
    return int4_output_errors(model, ids)
