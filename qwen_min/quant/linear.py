"""A weight-only quantised Linear: int8 or int4 weights, bf16 activations, on torch's own CPU kernels.

    layer = QuantLinear.from_linear(nn.Linear(896, 4864), "int4", group_size=128)
    y = layer(x)                        # (..., 896) bf16 -> (..., 4864) bf16
    w = layer.dequantized_weight()      # (4864, 896) float32: what the kernel multiplies by

Design choices
- The kernels are ATen's: `_weight_int8pack_mm(x, q, scale)` computes x @ q.T * scale with q int8
  (out, in) and one bf16 scale per output row (absmax.py), and `_weight_int4pack_mm_for_cpu(x,
  packed, group_size, scale_and_zero)` computes x @ W.T with W = (q - 8) * scale + zero per
  group (groups.py). Both read the small weights and dequantise inside the dot product, so a
  decode step reads 1 or ~0.56 bytes per weight instead of 2 (bf16). They are fast with bf16
  activations only (fp32 activations run 10-20x slower), so the layer computes in bf16 and
  `quantize` (quantize.py) casts the rest of the model to bf16.
- The int4 codes are stored only in the kernel's packed layout (`_convert_weight_to_int4pack_for_cpu`,
  a tiled layout private to the kernel), never twice. `dequantized_weight` therefore asks the
  kernel itself: multiplying the identity matrix by the weight returns the weight (in bf16).
- Both formats are CPU-only here. On CUDA (and any other device) forward falls back to
  dequantise-then-matmul: correct, memory-light at rest, but not faster than bf16 (the CUDA
  int4 kernel `_weight_int4pack_mm` wants another packing and sm80+; not wired up, and no GPU
  was available to test it). `kernel_available(fmt, device)` says which path a layer takes.
- Shapes: in_features must be a multiple of 16 (the int8 kernel crashes the process on
  other sizes, so `from_linear` refuses them first) and, for int4, out_features too.
- The kernels hold scales (and int4 zeros) in bf16. Rounding them *after* choosing the codes
  would shift every weight of a group by the rounding of its zero (measured: 0.7% of the output
  on a real 4864-input layer), so `int8_grid` / `int4_grid` round the scales first and choose
  the codes on the grid the kernel really uses.
- Reference and tolerance: the kernel path equals x @ W.T with W dequantised from that grid, in
  float32, to within bf16 rounding of the output: max error <= 1% of the largest output
  (tests/quant/test_quantize.py; measured 0.2-0.6%).
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_min.formats import WEIGHT_ONLY, check_format
from qwen_min.quant.absmax import INT8_MAX, quantize_int8
from qwen_min.quant.groups import INT4_LEVELS, quantize_int4

INT4_INNER_K_TILES = 2  # the packing's inner tile count (2, 4 or 8; any works on CPU)


def kernel_available(fmt: str, device: torch.device | str) -> bool:
    """True when `fmt` runs on its fused kernel on `device`: the CPU, for both formats."""
    return fmt in WEIGHT_ONLY and torch.device(device).type == "cpu"


def int8_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """absmax int8 (absmax.py) with the scale rounded to bf16 *first*, as the kernel stores it, and the codes
    chosen on that grid: (q int8 (out, in), scale float32 (out,), exactly a bf16 value)."""
    _, scale = quantize_int8(weight)
    scale = scale.to(torch.bfloat16).float()
    return torch.round(weight.float() / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def int4_grid(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int4 in groups (groups.py) on the grid the kernel will use: its scale and zero (= min + 8 * scale) rounded
    to bf16 first, the codes chosen against them. (q uint8, scale, minimum) with w ~ q * scale + minimum, float32."""
    _, scale, minimum = quantize_int4(weight, group_size)
    scale = scale.to(torch.bfloat16).float()
    zero = (minimum + 8 * scale).to(torch.bfloat16).float()  # (out, in / g)
    out_features, in_features = weight.shape
    w = weight.float().reshape(out_features, -1, group_size)  # (out, groups, g)
    q = torch.round((w - zero[..., None]) / scale[..., None] + 8).clamp(0, INT4_LEVELS).to(torch.uint8)
    return q.reshape(out_features, in_features), scale, zero - 8 * scale


class QuantLinear(nn.Module):
    """y = x @ W.T + b with W stored as int8 per channel or int4 in groups (buffers, not parameters)."""

    def __init__(self, in_features: int, out_features: int, fmt: str, group_size: int = 128, bias: bool = False):
        super().__init__()
        check_format(fmt, WEIGHT_ONLY)
        self.in_features, self.out_features, self.fmt, self.group_size = in_features, out_features, fmt, group_size
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.bfloat16), requires_grad=False) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, fmt: str, group_size: int = 128,
                    grid: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> QuantLinear:
        """Quantise an nn.Linear (its weight on the CPU or elsewhere; the result lives on the same device).

        grid: int4 codes already chosen on the kernel's grid, (q, scale, minimum) as `int4_grid` returns them
        (e.g. by GPTQ, gptq.py); by default round-to-nearest `int4_grid`.
        """
        out_features, in_features = linear.weight.shape
        if in_features % 16:  # _weight_int8pack_mm reads rows 16 at a time (and crashes on a ragged row)
            raise ValueError(f"{fmt} needs in_features divisible by 16 (the kernels' tile), got {in_features}")
        if grid is not None and fmt != "int4":
            raise ValueError(f"grid= gives int4 codes; it cannot be used with {fmt}")
        layer = cls(in_features, out_features, fmt, group_size, bias=linear.bias is not None)
        device = linear.weight.device
        if fmt == "int8":
            q, scale = int8_grid(linear.weight)
            layer.register_buffer("weight_q", q)  # (out, in) int8
            layer.register_buffer("scale", scale.to(torch.bfloat16))  # (out,)
        else:
            if out_features % 16:
                raise ValueError(f"int4 needs out_features divisible by 16 (the kernel's tile), got {out_features}")
            q, scale, minimum = grid if grid is not None else int4_grid(linear.weight, group_size)
            zero = minimum + 8 * scale  # the kernel's convention: w = (q - 8) * scale + zero (exact: bf16 values)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.int().cpu(), INT4_INNER_K_TILES)  # (out, in / 2)
            layer.register_buffer("weight_q", packed.to(device))
            layer.register_buffer("scale_and_zero", torch.stack([scale, zero], dim=-1)  # (in / g, out, 2)
                                  .transpose(0, 1).contiguous().to(torch.bfloat16))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        return layer.to(device)

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:  # x: (m, in) bf16 -> (m, out) bf16
        if self.fmt == "int8":
            return torch.ops.aten._weight_int8pack_mm(x, self.weight_q, self.scale)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight_q, self.group_size, self.scale_and_zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (m, in)
        if kernel_available(self.fmt, x2.device):
            y = self._kernel(x2)
        else:
            y = x2 @ self.dequantized_weight().to(x2.dtype).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    @torch.no_grad()
    def dequantized_weight(self) -> torch.Tensor:
        """(out, in) float32: the weight the kernel multiplies by (int4: read back through the kernel, in bf16)."""
        if self.fmt == "int8":
            return self.weight_q.float() * self.scale.float()[:, None]
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)  # (in, in)
        packed, sz = self.weight_q.cpu(), self.scale_and_zero.cpu()
        w_t = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, packed, self.group_size, sz)  # (in, out) = I @ W.T
        return w_t.T.float().contiguous().to(self.weight_q.device)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.fmt == "int4" else ""
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt}{group}, bias={bias}"
