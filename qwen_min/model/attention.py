"""Grouped-query self-attention with RoPE, a padding-aware causal mask and a preallocated KV cache.

Design choices
- Grouped-query attention (GQA): `num_attention_heads` query heads share
  `num_key_value_heads` key/value heads, each K/V head serving a group of
  `n_heads // n_kv_heads` consecutive query heads. Equal counts is multi-head
  attention (MHA), one K/V head is multi-query attention (MQA). Only K and V are
  cached, so GQA divides the KV-cache memory by the group size.
- Qwen2 quirk: q/k/v projections carry a bias, o_proj does not.
- Two interchangeable kernels, chosen per model (`attn_impl`): "eager" spells the
  maths out (repeat K/V per group, Q K^T / sqrt(d), mask, softmax in fp32, times V) for
  teaching and as the transformers reference does it; "sdpa" calls
  `F.scaled_dot_product_attention` (fused, memory-efficient, GQA without copying K/V;
  needs torch >= 2.5). Tests hold them equal.
- The mask is boolean, True = may attend, shape (b, 1, t_query, t_key). It combines
  causality with the padding mask (1 real / 0 pad, left padding). A padding query
  would see no key at all and softmax would give NaN; it is allowed to see itself
  instead (its output is never used), so nothing NaN ever enters the sums or gradients.
- `KVCache` preallocates (layers, b, n_kv_heads, max_seq_len, head_dim) for keys and
  for values, so decoding never reallocates; `length` counts the positions filled.
  Every layer writes its new keys/values at [length, length + t); the model advances
  `length` once per forward pass, after the last layer.
- Dual Chunk Attention (model/dual_chunk.py) is a third path, chosen by the config rather than `attn_impl`:
  the model hands every layer a `DualChunkPass` instead of cos/sin; the layer rotates its keys with it
  (chunk positions, cached as they are) and lets it attend with the unrotated queries, `attn_impl` picking
  its kernel there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qwen_min.config import QwenConfig
from qwen_min.model.rope import apply_rope

ATTN_IMPLS = ("sdpa", "eager")


class KVCache:
    """Preallocated keys and values of every layer for up to `max_seq_len` positions.

    >>> cfg = QwenConfig.from_name("tiny")
    >>> cache = KVCache(cfg, batch_size=1, max_seq_len=128)
    >>> cache.keys.shape     # (layers, b, n_kv_heads, max_seq_len, head_dim)
    torch.Size([2, 1, 2, 128, 16])
    >>> cache.nbytes() == 128 * cfg.kv_cache_bytes_per_token(bytes_per_element=4)
    True
    """

    def __init__(self, cfg: QwenConfig, batch_size: int, max_seq_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads, max_seq_len, cfg.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_seq_len = max_seq_len
        self.length = 0  # positions filled so far (the same for every layer between forward passes)

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new k, v (b, n_kv_heads, t, head_dim) after the cached ones; return all of them so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_seq_len:
            raise ValueError(f"KVCache is full: {start} cached + {k.shape[2]} new positions > max_seq_len {self.max_seq_len}")
        if k.shape[0] != self.keys.shape[1]:
            raise ValueError(f"KVCache was made for batch size {self.keys.shape[1]}, got a batch of {k.shape[0]}")
        self.keys[layer_idx, :, :, start:end] = k
        self.values[layer_idx, :, :, start:end] = v
        return self.keys[layer_idx, :, :, :end], self.values[layer_idx, :, :, :end]  # (b, n_kv_heads, end, head_dim)

    def keep_rows(self, index: torch.Tensor) -> None:
        """Keep only the batch rows `index` (1-D, ascending), e.g. when other rows have finished generating."""
        # (layers, len(index), n_kv_heads, max_seq_len, head_dim)
        self.keys, self.values = self.keys[:, index], self.values[:, index]

    def advance(self, num_new: int) -> None:
        self.length += num_new

    def reset(self) -> None:
        self.length = 0

    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


def attention_mask_for(t_query: int, past: int, padding_mask: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor | None:
    """Boolean mask (b or 1, 1, t_query, past + t_query), True where query i may attend to key j.

    Query i sits at cache index past + i; it sees keys j <= past + i that are not padding.
    Returns None when every query may see every key (one new token, no padding).

    >>> attention_mask_for(3, 0, None, torch.device("cpu"))[0, 0].int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    if padding_mask is None and t_query == 1:
        return None
    q_idx = torch.arange(past, past + t_query, device=device)[:, None]  # (t_query, 1)
    k_idx = torch.arange(past + t_query, device=device)[None, :]  # (1, t_key)
    allowed = (k_idx <= q_idx)[None, None]  # (1, 1, t_query, t_key)
    if padding_mask is not None:
        allowed = allowed & padding_mask.bool()[:, None, None, :]  # (b, 1, t_query, t_key)
        allowed = allowed | (k_idx == q_idx)  # a padding query sees itself: no empty softmax row, no NaN
    return allowed


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(b, n_kv_heads, t, d) -> (b, n_kv_heads * n_rep, t, d): K/V head j serves query heads j*n_rep .. j*n_rep+n_rep-1."""
    if n_rep == 1:
        return x
    b, n_kv, t, d = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, t, d).reshape(b, n_kv * n_rep, t, d)


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d) + mask) V, written out. q: (b, h, t, d); k, v: (b, h_kv, s, d); mask: bool (., 1, t, s)."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (b, h, s, d)
    scores = q @ k.transpose(2, 3) * q.shape[-1] ** -0.5  # (b, h, t, s)
    if mask is None:  # no cache, no padding: plain causal
        t = q.shape[2]
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # (b, h, t, s), rows sum to 1
    return weights @ v  # (b, h, t, d)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The same with PyTorch's fused kernel."""
    causal = mask is None and q.shape[2] == k.shape[2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])


class Attention(nn.Module):
    """One grouped-query self-attention layer (`self_attn` in a Qwen2 decoder layer)."""

    def __init__(self, cfg: QwenConfig, layer_idx: int, attn_impl: str = "sdpa"):
        super().__init__()
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        self.layer_idx, self.attn_impl = layer_idx, attn_impl
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None,
                mask: torch.Tensor | None, cache: KVCache | None = None, dca=None) -> torch.Tensor:
        """x: (b, t, hidden); cos, sin: (b or 1, t, head_dim) from `RotaryEmbedding`, or None with `dca`, a
        `DualChunkPass` (model/dual_chunk.py) that then supplies the positions and the attention."""
        b, t, _ = x.shape  # x: (b, t, hidden)
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (b, n_heads, t, head_dim)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (b, n_kv_heads, t, head_dim)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (b, n_kv_heads, t, head_dim)
        if dca is None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # positions enter here, and only here
        else:
            k = dca.rotate_keys(k)  # chunk positions; the queries are rotated inside dca.attend, once per case
        if cache is not None:
            k, v = cache.update(self.layer_idx, k.to(cache.keys.dtype), v.to(cache.values.dtype))
            k, v = k.to(q.dtype), v.to(q.dtype)  # (b, n_kv_heads, past + t, head_dim)
        if dca is not None:
            y = dca.attend(q, k, v, self.attn_impl)  # (b, n_heads, t, head_dim)
        else:
            attend = eager_attention if self.attn_impl == "eager" else sdpa_attention
            y = attend(q, k, v, mask)  # (b, n_heads, t, head_dim)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))  # (b, t, hidden)
