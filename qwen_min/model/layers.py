"""The two small layers every Qwen2 block uses: RMSNorm and the SwiGLU MLP.

Design choices
- RMSNorm runs in fp32 and casts back before the weight, as transformers' Qwen2RMSNorm does, so
  bf16 runs agree with the reference too.
- The MLP has no biases (Qwen2's config has none on gate/up/down); the mixture-of-experts block
  (moe.py) builds each expert from this same class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring or bias.

    >>> norm = RMSNorm(4)
    >>> norm(torch.tensor([[1.0, -1.0, 1.0, -1.0]]))
    tensor([[ 1.0000, -1.0000,  1.0000, -1.0000]], grad_fn=<MulBackward0>)
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # the mean of squares in bf16 would lose digits
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, t, hidden) -> (b, t, hidden)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
