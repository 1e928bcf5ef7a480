"""`qm.quantize(model, "int8" | "int4", group_size=128)`: weight-only quantisation of a whole model, in place.

    model = qm.from_pretrained(qm.default_checkpoint())
    qm.quantize(model, "int8")            # every nn.Linear -> QuantLinear; embeddings and norms stay bf16
    qm.generate(model, prompt_ids)        # decodes on torch's int8 kernel

Design choices
- Every `nn.Linear` is replaced (attention q/k/v/o, the MLP, the LM head); embeddings and
  RMSNorm weights are not: a lookup reads one row of the embedding, and the norms are tiny.
- The LM head is int8 in both formats, as llama.cpp's Q4_K_M keeps `output.weight` at Q8_0: it
  turns the last hidden state into the 151,936 logits every token is chosen from, and at
  0.5B it is a quarter of the weights a step reads. `head=` overrides this.
- Weights are quantised from the precision they have (fp32 after `from_pretrained`), *then*
  the rest of the model is cast to bf16: the kernels want bf16 activations (linear.py), and
  the KV cache follows the embedding's dtype.
- A tied head (0.5B/1.5B) stops being tied: the embedding stays bf16, the head gets its own
  int8 copy (another 136 MB at 0.5B, read once per step instead of 272 MB in bf16).
- `calibration=` (token ids, (sequences, tokens)) chooses the int4 codes of the decoder layers
  by GPTQ (gptq.py) instead of rounding each weight to its nearest level: same format, same
  kernel, lower perplexity (README: held-out Python +3.8% over bf16 instead of +7.5%), at
  the cost of a calibration pass (about 3.5 minutes for the 0.5B on 2 CPU cores).
- In place, and the model is returned for chaining, like `nn.Module.to`.

>>> cfg = qm.QwenConfig.from_name("tiny", vocab_size=256, intermediate_size=192)
>>> model = quantize(qm.Qwen(cfg), "int4", group_size=32)
>>> type(model.model.layers[0].mlp.up_proj).__name__, model.model.layers[0].mlp.up_proj.fmt, model.lm_head.fmt
('QuantLinear', 'int4', 'int8')
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_min.formats import FLOAT, WEIGHT_ONLY, check_format, torch_dtype
from qwen_min.quant.gptq import gptq_quantize_layers
from qwen_min.quant.linear import QuantLinear


def quantize(model: nn.Module, fmt: str, group_size: int = 128, head: str | None = "int8",
             calibration: torch.Tensor | None = None, progress: bool = True) -> nn.Module:
    """Replace the model's nn.Linear layers by weight-only `QuantLinear`s (`fmt` "int8" or "int4"), in place.

    group_size: inputs per int4 group (32 or 128 are usual; ignored by int8).
    head: the LM head's format ("int8", "int4", or None to keep it a bf16 nn.Linear).
    calibration: int4 only: (sequences, tokens) ids (e.g. `calibration_ids`, eval/perplexity.py) on which
        GPTQ chooses the decoder layers' codes; None rounds every weight to its nearest level.
    """
    check_format(fmt, WEIGHT_ONLY)
    if head not in (*WEIGHT_ONLY, None):
        raise ValueError(f"head must be one of {', '.join(WEIGHT_ONLY)} or None, got {head!r}")
    if calibration is not None:
        if fmt != "int4":
            raise ValueError("calibration (GPTQ) applies to int4; int8 rounds to nearest (within 0.2% of bf16 already)")
        gptq_quantize_layers(model, calibration, group_size, progress=progress)  # the decoder layers; the rest below
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            layer_fmt = head if child is getattr(model, "lm_head", None) else fmt
            if layer_fmt is not None:
                setattr(parent, name, QuantLinear.from_linear(child, layer_fmt, group_size))
    return model.to(torch.bfloat16)


def to_format(model: nn.Module, fmt: str, group_size: int = 128, calibration: torch.Tensor | None = None) -> nn.Module:
    """Put a float model's weights in `fmt` (fp32, bf16, fp16, int8, int4 or int4-gptq), in place; returns the model.

    int4-gptq needs `calibration` ids (see `quantize`). A quantised model is refused: its codes cannot be turned
    back into the original weights.
    """
    check_format(fmt, (*FLOAT, *WEIGHT_ONLY, "int4-gptq"))
    if any(isinstance(m, QuantLinear) for m in model.modules()):
        raise ValueError("the model is already quantised; load it again to change its format")
    if fmt == "int4-gptq":
        if calibration is None:
            raise ValueError("int4-gptq chooses its codes on calibration text: give calibration ids")
        return quantize(model, "int4", group_size, calibration=calibration)
    if fmt in WEIGHT_ONLY:
        return quantize(model, fmt, group_size)
    return model.to(torch_dtype(fmt))


def weight_bytes(model: nn.Module, per_token: bool = True) -> int:
    """Bytes of weights in the model (parameters and quantised buffers; the RoPE tables are not weights).

    per_token=True counts what one decode step reads: the embedding table counts for one row.
    """
    embedding = model.model.embed_tokens.weight
    total = 0
    seen = set()
    for module in model.modules():
        tensors = list(module.parameters(recurse=False))
        if isinstance(module, QuantLinear):
            tensors += list(module.buffers(recurse=False))
        for t in tensors:
            if id(t) in seen:
                continue
            seen.add(id(t))
            total += embedding[0].nbytes if (t is embedding and per_token) else t.numel() * t.element_size()
    return total
