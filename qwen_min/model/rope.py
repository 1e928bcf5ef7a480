"""Rotary position embeddings (RoPE), and the training-free ways to stretch them past the training length.

RoPE encodes position by rotating each (x_i, x_{i+d/2}) pair of a query or key
vector by an angle `position * inv_freq_i`. The dot product of a rotated query at
position m and a rotated key at position n then depends only on m - n: attention
sees relative positions, although each vector is rotated by its absolute one.

Design choices
- Rotate-half ("NeoX") layout as in Qwen2 / transformers: pair i is (x[i], x[i + d/2]),
  not the interleaved (x[2i], x[2i+1]) of the original paper. A checkpoint trained
  with one layout gives garbage with the other.
- The frequencies come from the config alone, so they are not a weight: `inv_freq` is
  kept out of the state dict and computed on the CPU at construction, even when the
  model is built on the meta device, then moved once to the device of the input.
- cos/sin are computed once per forward pass from the position ids (not per layer)
  and shared by every layer. Computing them from positions, rather than slicing a
  table, handles left padding (each row has its own positions) and matches
  transformers bit for bit: angles in fp32, then cast to the activation dtype.
- YaRN ("NTK-by-parts" + attention scaling) exactly as transformers computes
  `rope_type="yarn"`: low frequencies (long wavelengths, that never completed a turn
  within the original context) are interpolated, i.e. divided by `factor`; high
  frequencies are kept; a linear ramp blends between the two; cos and sin are
  multiplied by `attention_factor` (default 0.1 ln(factor) + 1), which scales the
  attention logits by its square. Supported keys: factor, original_max_position_embeddings,
  attention_factor, beta_fast, beta_slow, mscale, mscale_all_dim, truncate.
- The other context extensions are each one small function, selected by `rope_scaling["rope_type"]`:
  "linear" = Position Interpolation (Chen et al. 2023, arXiv 2306.15595; transformers' "linear"): every
  frequency divided by `factor`, so position m rotates like m / factor did in training.
  "ntk" = NTK-aware scaling (bloc97, 2023): the base raised to b * s^(d / (d - 2)), which keeps the fastest
  pair and interpolates the slowest by exactly s. It is *static*: transformers has no static equivalent; its
  "dynamic" recomputes this base from the current sequence length at every forward pass (unchanged up to
  max_position_embeddings), which makes cached keys and new queries disagree. `ntk_theta(d, b, s)` equals
  transformers' dynamic base at factor 1 and length s * max_position_embeddings (tests/model/test_dual_chunk.py).
  ABF ("adjusted base frequency", Xiong et al. 2023, used by Qwen2.5 to go from 4,096 to 32,768 tokens,
  report arXiv 2412.15115 §3.3) is not a scaling method here: it is a larger `rope_theta` (1e4 -> 1e6) plus
  training at the longer length, so it needs no code beyond the config field.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qwen_min.config import QwenConfig, ntk_theta


def default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """inv_freq_i = theta^(-2i/d) for i in 0..d/2-1: one angular speed per rotated pair.

    >>> default_inv_freq(4, 10_000.0)
    tensor([1.0000, 0.0100])
    """
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))


def yarn_inv_freq(head_dim: int, theta: float, scaling: dict, max_position_embeddings: int) -> tuple[torch.Tensor, float]:
    """YaRN frequencies and attention factor, as transformers' `_compute_yarn_parameters`.

    >>> inv_freq, attention_factor = yarn_inv_freq(64, 1e6, {"factor": 4.0, "original_max_position_embeddings": 32768}, 131072)
    >>> round(attention_factor, 4)   # 0.1 * ln(4) + 1
    1.1386
    """
    original_context = scaling["original_max_position_embeddings"]
    factor = scaling.get("factor") or max_position_embeddings / original_context

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)
    beta_fast = scaling.get("beta_fast") or 32  # pairs turning more than beta_fast times in the original context: kept
    beta_slow = scaling.get("beta_slow") or 1  # pairs turning less than beta_slow times: fully interpolated

    def pair_index_for(turns: float) -> float:
        # the (fractional) pair index whose wavelength fits `turns` times into the original context
        return head_dim * math.log(original_context / (turns * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_index_for(beta_fast), pair_index_for(beta_slow)
    if scaling.get("truncate", True):  # transformers' default: round the ramp ends outwards to whole pairs
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero (transformers does the same)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)  # 0 = keep, 1 = interpolate
    wavelength_factors = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    extrapolated, interpolated = 1.0 / wavelength_factors, 1.0 / (factor * wavelength_factors)
    keep = 1 - ramp  # written as transformers writes it, so the floats agree bit for bit
    return interpolated * (1 - keep) + extrapolated * keep, attention_factor


def linear_inv_freq(head_dim: int, theta: float, factor: float) -> torch.Tensor:
    """Position Interpolation: every frequency divided by `factor` (transformers' "linear").

    Position m then turns every pair by the angle m / factor turned it by in training: a sequence `factor`
    times longer maps onto the trained range of angles, at the price of neighbours that are `factor` times
    closer in angle (the fast pairs that tell adjacent tokens apart are squeezed too).

    >>> linear_inv_freq(4, 10_000.0, 4.0)       # default_inv_freq(4, 1e4) = [1, 0.01], over 4
    tensor([0.2500, 0.0025])
    """
    return default_inv_freq(head_dim, theta) / factor


def ntk_inv_freq(head_dim: int, theta: float, factor: float) -> torch.Tensor:
    """NTK-aware scaling (static): the default frequencies of the raised base `ntk_theta`.

    >>> ntk_inv_freq(4, 10_000.0, 4.0)          # fastest pair kept (1), slowest divided by 4 (0.01 -> 0.0025)
    tensor([1.0000, 0.0025])
    """
    return default_inv_freq(head_dim, ntk_theta(head_dim, theta, factor))


def rope_frequencies(cfg: QwenConfig) -> tuple[torch.Tensor, float]:
    """(inv_freq of shape (head_dim // 2,), scale applied to cos and sin) for a config."""
    scaling = cfg.rope_scaling or {}
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "yarn":
        return yarn_inv_freq(cfg.head_dim, cfg.rope_theta, scaling, cfg.max_position_embeddings)
    if rope_type == "linear":
        return linear_inv_freq(cfg.head_dim, cfg.rope_theta, scaling["factor"]), 1.0
    if rope_type == "ntk":
        return ntk_inv_freq(cfg.head_dim, cfg.rope_theta, scaling["factor"]), 1.0
    return default_inv_freq(cfg.head_dim, cfg.rope_theta), 1.0


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension.

    >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    tensor([-3., -4.,  1.,  2.])
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every pair (x[i], x[i + d/2]) of every head by its angle.

    x: (b, n_heads, t, head_dim); cos, sin: (b, t, head_dim) from `RotaryEmbedding`.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (b, 1, t, head_dim): broadcast over heads
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """cos and sin of `position * inv_freq` for a batch of position ids.

    >>> rope = RotaryEmbedding(QwenConfig.from_name("tiny"))
    >>> cos, sin = rope(torch.arange(5)[None], torch.float32)
    >>> cos.shape   # (b, t, head_dim): each angle appears twice, once per half
    torch.Size([1, 5, 16])
    """

    def __init__(self, cfg: QwenConfig):
        super().__init__()
        # a plain attribute, not a buffer: derived from the config, computed on the CPU even inside
        # `with torch.device("meta")`, moved to the input's device on first use
        with torch.device("cpu"):
            self.inv_freq, self.attention_scaling = rope_frequencies(cfg)  # (head_dim // 2,), float

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self.inv_freq.device != position_ids.device:
            self.inv_freq = self.inv_freq.to(position_ids.device)
        angles = position_ids[..., None].float() * self.inv_freq  # (b, t, head_dim // 2), fp32: positions reach 1e5
        angles = torch.cat((angles, angles), dim=-1)  # (b, t, head_dim)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)
