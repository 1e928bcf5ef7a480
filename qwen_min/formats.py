"""The number formats a model's weights can take: one vocabulary for every command, notebook and function.

    fp32, bf16, fp16   every weight cast to that float type; activations in the same type
    int8, int4         weight-only quantisation of the linear layers (`qm.quantize`: int8 per output channel,
                       int4 in groups of 128, round-to-nearest), everything else and the activations in bf16
    int4-gptq          int4 whose codes GPTQ chooses on calibration text (chapter 7)
    auto               the fastest of the lossless ones (LOSSLESS) at the batch size it will run, measured here
                       (quant/fastest.py): a loading decision, taken once, never by `generate`

>>> check_format("int4")
'int4'
>>> check_format("fp8")
Traceback (most recent call last):
...
ValueError: unknown format 'fp8': choose from fp32, bf16, fp16, int8, int4, int4-gptq, auto

Design choices
- Plain strings, not an Enum: they are what a user types after --format and what results files record.
- No torch at import: `qwen-min --help` and the command-line choices need the names, not the library.
"""

from __future__ import annotations

FORMATS = ("fp32", "bf16", "fp16", "int8", "int4", "int4-gptq", "auto")
FLOAT = ("fp32", "bf16", "fp16")  # a cast of every weight
WEIGHT_ONLY = ("int8", "int4")  # the quantised linear layers' codes (quant/linear.py)
LOSSLESS = ("fp32", "bf16", "int8")  # within 1% of bf16 perplexity (README's quality table): what "auto" chooses from
FORMAT_HELP = ("number format of the weights: fp32, bf16, fp16 (cast), int8, int4 (weight-only, bf16 activations), "
               "int4-gptq (int4 calibrated by GPTQ), auto (the fastest of fp32/bf16/int8 here, measured)")


def check_format(name: str, allowed: tuple[str, ...] = FORMATS) -> str:
    """`name` if it is one of `allowed` (all formats by default), else one clear error."""
    if name not in allowed:
        raise ValueError(f"unknown format {name!r}: choose from {', '.join(allowed)}")
    return name


def torch_dtype(name: str):
    """The torch dtype of a float format ("fp32" -> torch.float32)."""
    import torch  # imported here so that the names above cost nothing

    check_format(name, FLOAT)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def format_of(model) -> str:
    """The format a loaded model's weights are in: its quantised layers' codes, else its embedding's dtype.

    (int4-gptq reads as int4: the codes are the same format, only chosen differently.)
    """
    quantised = {getattr(m, "fmt", None) for m in model.modules()} & set(WEIGHT_ONLY)
    if quantised:
        return "int4" if "int4" in quantised else "int8"
    dtype = str(model.model.embed_tokens.weight.dtype)
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[dtype]
