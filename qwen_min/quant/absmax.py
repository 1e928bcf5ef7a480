"""Absmax int8 per output channel: the simplest weight quantiser that keeps a model's quality.

Each row of a (out_features, in_features) weight gets one scale, its largest magnitude / 127,
and every weight becomes the nearest integer in -127..127 of weight / scale:

    scale[o] = max_i |W[o, i]| / 127          q[o, i] = round(W[o, i] / scale[o])          W ~ q * scale

Design choices
- Symmetric (no zero point) and per *output* channel: y[o] = scale[o] * sum_i q[o, i] x[i],
  so the scale multiplies the finished dot product once. This is the layout of torch's
  `_weight_int8pack_mm` (linear.py), the kernel that makes it fast on a CPU.
- -128 is never used, so q and -q are both representable and the grid is symmetric about 0.
- An all-zero row gets scale 1 (not 0), so dequantising never divides by zero.
- The worst error per weight is scale / 2: one outlier in a row coarsens the grid of the whole
  row. That is why large-magnitude channels matter (chapter 07) and why int4 uses small groups.

>>> import torch
>>> q, scale = quantize_int8(torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.0, -0.1]]))
>>> q.tolist(), [round(s, 5) for s in scale.tolist()]
([[64, -127, 32], [127, 0, -6]], [0.00787, 0.01575])
"""

from __future__ import annotations

import torch

INT8_MAX = 127


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (q int8 (out, in), scale float32 (out,)); weight ~ q * scale[:, None]."""
    w = weight.float()
    amax = w.abs().amax(dim=1)  # (out,)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)  # (out, in)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight that (q, scale) stand for: q * scale per row."""
    return q.float() * scale.float()[:, None]
