"""Which weight format decodes fastest at a given batch size on this machine: measured, not assumed.

    fmt = fastest_format(model.config, batch=8)     # e.g. "int8" at batch 1 and "bf16" at batch 32 on 2 CPU cores
    model, tok = qm.load("0.5B", format="auto", batch=8)   # the loader's format "auto" is this choice

Design choices
- A decode step is mostly the model's matrix products (68-92% of it on 2 CPU cores, README's
  profile), so the choice times those: one decoder layer's seven projections at the model's
  real shapes (random weights), on `batch` rows, in each candidate format; best of 5 after a
  warm-up. Which format wins depends on the machine, the torch build and the batch (bf16 was
  7x slower for 8 rows than for one on an earlier torch; weight-only kernels stop being
  memory-bound past ~8 rows), so it is measured where it runs, once per (shapes, batch,
  device, threads), and cached.
- Candidates by default: fp32, bf16 and int8, the formats within 1% of bf16 perplexity
  (README). int4 is faster still at small batches but costs +3.8% to +11.6%, so it competes only
  when asked (`candidates=`).
- Off the CPU the weight-only kernels are not wired (linear.py): there only fp32 and bf16 compete.
- Choosing is a loading decision (checkpoints/load.py): `generate` never changes the weights it is given.

>>> cfg = qm.QwenConfig.from_name("tiny")
>>> fastest_format(cfg, batch=1) in ("fp32", "bf16", "int8")
True
"""

from __future__ import annotations

import time

import torch
from torch import nn

from qwen_min.config import QwenConfig
from qwen_min.formats import LOSSLESS, WEIGHT_ONLY, check_format
from qwen_min.quant.linear import QuantLinear, kernel_available

_CACHE: dict[tuple, str] = {}


def _projection_shapes(cfg: QwenConfig) -> list[tuple[int, int]]:
    """(in, out) of one decoder layer's q, k, v, o, gate, up and down projections."""
    h, q, kv, inter = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim, \
        cfg.intermediate_size
    return [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]


def _fits(fmt: str, shapes: list[tuple[int, int]], group_size: int) -> bool:
    """Whether every projection can take `fmt` (the kernels' tiles: linear.py)."""
    if fmt == "int8":
        return all(n_in % 16 == 0 for n_in, _ in shapes)
    if fmt == "int4":
        return all(n_in % 16 == 0 and n_in % group_size == 0 and n_out % 16 == 0 for n_in, n_out in shapes)
    return True


@torch.no_grad()
def _layer_seconds(shapes, fmt: str, batch: int, device: str, group_size: int = 128, repeats: int = 5) -> float:
    generator = torch.Generator().manual_seed(0)
    layers = []
    for n_in, n_out in shapes:
        linear = nn.Linear(n_in, n_out, bias=False)
        linear.weight.copy_(torch.randn(n_out, n_in, generator=generator) * n_in ** -0.5)
        linear = linear.to(device)
        if fmt in WEIGHT_ONLY:
            layers.append(QuantLinear.from_linear(linear, fmt, group_size))
        else:
            layers.append(linear.to(torch.bfloat16 if fmt == "bf16" else torch.float32))
    dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
    inputs = [torch.randn(batch, n_in, generator=generator).to(device=device, dtype=dtype) for n_in, _ in shapes]

    def step():
        for layer, x in zip(layers, inputs):
            layer(x)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def fastest_format(cfg: QwenConfig, batch: int, device: str | torch.device = "cpu",
                   candidates: tuple[str, ...] = LOSSLESS, group_size: int = 128) -> str:
    """The candidate format whose matrix products for `batch` rows run fastest here (measured once, then cached).

    Candidates that cannot run here (weight-only kernels off the CPU) or cannot take the model's shapes
    (the kernels' tiles of 16, int4 groups) are left out.
    """
    if not candidates:
        raise ValueError("no candidate formats given")
    for c in candidates:
        check_format(c, ("fp32", "bf16", *WEIGHT_ONLY))
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    device = str(torch.device(device))
    shapes = _projection_shapes(cfg)
    runs_here = lambda fmt: fmt in ("fp32", "bf16") or kernel_available(fmt, device)
    usable = tuple(c for c in candidates if runs_here(c) and _fits(c, shapes, group_size))
    if not usable:
        raise ValueError(f"none of {', '.join(candidates)} runs on {device} with this model's shapes")
    key = (tuple(shapes), batch, device, torch.get_num_threads(), usable, group_size)
    if key not in _CACHE:
        _CACHE[key] = min(usable, key=lambda fmt: _layer_seconds(shapes, fmt, batch, device, group_size))
    return _CACHE[key]
