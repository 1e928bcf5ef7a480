"""Int4 in groups, with a scale and a zero point per group: 16 levels spread over each group's range.

A (out, in) weight is cut into groups of `group_size` consecutive inputs along each row; each
group maps its [min, max] onto the 16 codes 0..15:

    scale = (max - min) / 15        q = round((w - min) / scale)        w ~ q * scale + min

Design choices
- Asymmetric (a zero point, here the group minimum) rather than absmax: with only 16 levels,
  a group whose values are all positive would waste half of a symmetric grid.
- Groups, not rows: one outlier then spoils the grid of 32 or 128 weights, not of 896.
  The cost is storage: a bf16 scale and zero per group adds 32 / group_size bits per weight
  (4.25 bits per weight at g=128, 5 at g=32).
- Codes are kept one per uint8 here, for teaching and testing; linear.py packs them two per
  byte in the layout of torch's `_weight_int4pack_mm_for_cpu`, whose convention is
  w = (q - 8) * scale + zero, i.e. zero = min + 8 * scale.
- A constant group (max == min) gets scale 1, so its values come back exactly (q = 0).

>>> import torch
>>> q, scale, minimum = quantize_int4(torch.tensor([[0.0, 1.5, 3.0, 0.3]]), group_size=4)
>>> q.tolist(), scale.tolist(), minimum.tolist()
([[0, 8, 15, 2]], [[0.20000000298023224]], [[0.0]])
"""

from __future__ import annotations

import torch

INT4_LEVELS = 15  # codes 0..15


def quantize_int4(weight: torch.Tensor, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (q uint8 (out, in) in 0..15, scale (out, in/g), minimum (out, in/g)), float32."""
    out_features, in_features = weight.shape
    if group_size < 1 or in_features % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {in_features} input features")
    w = weight.float().reshape(out_features, in_features // group_size, group_size)  # (out, groups, g)
    minimum, maximum = w.amin(dim=-1), w.amax(dim=-1)  # (out, groups)
    scale = (maximum - minimum) / INT4_LEVELS
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((w - minimum[..., None]) / scale[..., None]).clamp(0, INT4_LEVELS).to(torch.uint8)
    return q.reshape(out_features, in_features), scale, minimum


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor) -> torch.Tensor:
    """The float32 weight that (q, scale, minimum) stand for: q * scale + minimum per group."""
    out_features, in_features = q.shape
    groups = scale.shape[1]
    w = q.float().reshape(out_features, groups, in_features // groups) * scale.float()[..., None] + minimum.float()[..., None]
    return w.reshape(out_features, in_features)
