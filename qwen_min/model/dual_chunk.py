"""Dual Chunk Attention (DCA): RoPE attention past the training length, without training.

An et al. 2024, "Training-Free Long-Context Scaling of Large Language Models" (arXiv 2402.17463). Qwen2.5
combines it with YaRN for a four-fold reach at inference (report arXiv 2412.15115 §3.3; Qwen2.5-1M, arXiv
2501.15383), configured by `dual_chunk_attention_config = {"chunk_size", "local_size",
"original_max_position_embeddings"}` in config.json and served by vLLM (`DualChunkRotaryEmbedding`, the
dual-chunk flash-attention backend).

RoPE attention only sees the distance q_pos - k_pos. DCA keeps every distance below `chunk_size` (a length the
model was trained at) by giving keys and queries positions *inside chunks* of chunk_len cl = chunk_size - local_size
tokens. For query i and key j (absolute positions, j <= i), ci = i // cl and cj = j // cl:

    key j                              position j % cl                      (one rotation, cached)
    intra-chunk       ci == cj         query at i % cl                      distance i - j, exact
    successive-chunk  ci - cj == 1     query at min(i % cl + cl, chunk_size) exact up to chunk_size, then capped
    inter-chunk       ci - cj >= 2     query at min(2 cl - 1, chunk_size)    the same for every query

Worked example, chunk_size 10, local_size 4 (cl 6), 12 tokens: rows 0-10 see the true distances i - j; row 10
sees keys 0-5 (previous chunk) at `10 9 8 7 6 5` and keys 6-10 (own chunk) at `4 3 2 1 0` (`dca_distances`).

Design choices
- Clamp convention: vLLM's, which serves Qwen2.5-1M (`min(i % cl + cl, chunk_size)`, inter `min(2 cl - 1,
  chunk_size)`); the paper caps at chunk_size - 1 instead (row 10 above: `9 8 7 6 5 4 | 4 3 2 1 0`).
  `convention="paper"` selects that one in the functions below; the model always uses vLLM's. With vLLM's cap
  a sequence of up to min(chunk_size + 1, 2 cl) tokens sees the true distances: DCA is then ordinary attention
  (same scores from other rotations; within one chunk, the very same rotations).
- Keys are rotated once, at j % cl, before they enter the KV cache: the cache holds DCA keys and decoding
  adds one key at a time. Queries are rotated three times (one per case), a block of queries at a time, from
  the unrotated q, with the model's own `RotaryEmbedding`: so DCA combines with any `rope_scaling` (linear,
  ntk, yarn: its frequencies and attention factor apply to the chunk positions). vLLM instead ignores
  rope_scaling when DCA is on; the "YaRN" of Qwen2.5-1M's DCA is the length scale below.
- Merge: each case is a softmax over its own keys, returning (output, log-sum-exp). The three merge exactly:
  lse = logsumexp(lse_intra, lse_succ, lse_inter), out = sum_c exp(lse_c - lse) * out_c, which is one softmax
  over all keys, each key scored by its case's query (a case with no key has lse -inf and weight 0). A case's
  keys are themselves taken in tiles of `key_block` (4,096) merged the same way, two at a time (`merge_partials`).
- Chunked prefill: queries go in blocks of at most `query_block` (256) that never straddle a chunk border, so
  within a block the case of a key depends only on its chunk; a block scores each case's range of the cache tile
  by tile. The largest score tensor is (b, n_heads, 256, 4,096) whatever the length (never n x n; the KV cache is
  the only thing that grows), and the three cases together cost about one ordinary causal attention.
- Masks: only a tile that holds the block's own keys needs a causal (B, T) mask; others need at most a
  per-key one (left padding, keys of another case in the same row). Positions come from the padding mask
  (each row counts its own real tokens), as in model/qwen.py. A padding query, whose output is never used, sees
  at least itself, so no row is empty and nothing NaN enters the sums (it would reach real rows through 0 * NaN).
- Two kernels for one partial softmax, picked by the model's `attn_impl`: "eager" writes it out (scores in the
  activation dtype, sums in fp32 or fp64); "sdpa" is PyTorch's fused CPU flash-attention kernel, which returns
  the log-sum-exp too (a private op: elsewhere it falls back to "eager"). Tests hold both to the naive reference.
- GQA without copying K/V: the n_rep query heads of a K/V head are stacked as rows of one product.
- Length scale (vLLM, when original_max_position_embeddings L0 > 0): logits times s^2, s = max(1, 0.1 ln(L / L0) + 1).
  vLLM takes L = the whole prompt's length for every prompt token (and the current length when decoding); here
  L = i + 1, the number of tokens query i sees, so that a prompt gives the same logits whole, in pieces or token
  by token. The last prompt token, the one that predicts the reply, gets vLLM's factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen_min.model.rope import RotaryEmbedding, apply_rope

CONVENTIONS = ("vllm", "paper")  # where successive/inter-chunk query positions are capped: chunk_size, chunk_size - 1
QUERY_BLOCK = 256  # queries scored together in a prefill
KEY_BLOCK = 4096  # keys scored together: at most (b, n_heads, 256, 4096) scores at a time, whatever the length


def dca_query_positions(positions: torch.Tensor, chunk_size: int, local_size: int,
                        convention: str = "vllm") -> torch.Tensor:
    """The three positions a query at absolute position `positions` takes: (3, *positions.shape), for keys of its own
    chunk (intra), of the chunk before (successive) and of earlier chunks (inter).

    >>> dca_query_positions(torch.tensor([3, 10, 11]), 10, 4)   # cl = 6
    tensor([[ 3,  4,  5],
            [ 9, 10, 10],
            [10, 10, 10]])
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"DCA convention must be one of {CONVENTIONS}, got {convention!r}")
    cl = chunk_size - local_size
    cap = chunk_size if convention == "vllm" else chunk_size - 1
    intra = positions % cl
    successive = (intra + cl).clamp(max=cap)
    inter = torch.full_like(positions, min(2 * cl - 1, cap))
    return torch.stack((intra, successive, inter))


def dca_distances(n: int, chunk_size: int, local_size: int, convention: str = "vllm") -> torch.Tensor:
    """(n, n) relative distance query position - key position that DCA gives each pair j <= i (-1 above the diagonal).

    >>> d = dca_distances(12, 10, 4)
    >>> d[10].tolist()                     # keys 0-5 successive chunk | keys 6-10 own chunk
    [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1]
    >>> dca_distances(12, 10, 4, convention="paper")[10].tolist()
    [9, 8, 7, 6, 5, 4, 4, 3, 2, 1, 0, -1]
    """
    cl = chunk_size - local_size
    i = torch.arange(n)
    query = dca_query_positions(i, chunk_size, local_size, convention)  # (3, n)
    case = (i[:, None] // cl - i[None, :] // cl).clamp(0, 2)  # (n, n): 0 intra, 1 successive, 2 inter
    distance = query[case, i[:, None].expand(n, n)] - (i % cl)[None, :]  # (n, n)
    return distance.masked_fill(i[None, :] > i[:, None], -1)


@dataclass
class DualChunkPass:
    """What DCA needs for one forward pass of the model, shared by every layer (it replaces RoPE's cos and sin).

    An `Attention` layer given one rotates its keys with `rotate_keys` (before the KV cache) and calls `attend`
    with the unrotated queries.
    """

    query_cos: torch.Tensor  # (3, b or 1, t, head_dim): intra, successive, inter query positions
    query_sin: torch.Tensor
    key_cos: torch.Tensor  # (b or 1, t, head_dim): the new keys, at position % chunk_len
    key_sin: torch.Tensor
    query_chunk: torch.Tensor  # (b or 1, t): chunk index of each new query
    key_chunk: torch.Tensor  # (b or 1, past + t): chunk index of every key, cached ones included
    past: int  # keys already in the cache
    padding_mask: torch.Tensor | None  # (b, past + t): 1 real, 0 left padding; None: no padding
    logit_scale: torch.Tensor | None  # (b or 1, 1, t, 1): s^2 per query (original_max_position_embeddings), or None
    query_block: int = QUERY_BLOCK
    key_block: int = KEY_BLOCK

    @classmethod
    def build(cls, dca: dict, rotary: RotaryEmbedding, key_positions: torch.Tensor, t: int, dtype: torch.dtype,
              padding_mask: torch.Tensor | None = None, convention: str = "vllm", query_block: int = QUERY_BLOCK,
              key_block: int = KEY_BLOCK) -> DualChunkPass:
        """From a `dual_chunk_attention_config` dict, the model's rotary embedding and the absolute position of
        every key (b or 1, past + t), the last t of which are the new tokens (the queries)."""
        chunk_size, local_size = dca["chunk_size"], dca["local_size"]
        cl = chunk_size - local_size
        positions = key_positions[:, -t:]  # (b or 1, t)
        query = dca_query_positions(positions, chunk_size, local_size, convention)  # (3, b or 1, t)
        query_cos, query_sin = rotary(query.flatten(0, 1), dtype)  # (3 * (b or 1), t, head_dim)
        key_cos, key_sin = rotary(positions % cl, dtype)  # (b or 1, t, head_dim)
        logit_scale = None
        if original := dca.get("original_max_position_embeddings", 0):
            s = (0.1 * torch.log((positions + 1).double() / original) + 1.0).clamp(min=1.0)  # (b or 1, t)
            logit_scale = (s * s)[:, None, :, None]  # (b or 1, 1, t, 1)
        return cls(query_cos.unflatten(0, (3, -1)), query_sin.unflatten(0, (3, -1)), key_cos, key_sin, positions // cl,
                   key_positions // cl, key_positions.shape[1] - t, padding_mask, logit_scale, query_block, key_block)

    def rotate_keys(self, k: torch.Tensor) -> torch.Tensor:
        """k: (b, n_kv_heads, t, head_dim) of the new tokens -> rotated at their chunk positions j % cl."""
        return apply_rope(k, self.key_cos, self.key_sin)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str = "sdpa") -> torch.Tensor:
        """q: (b, n_heads, t, head_dim), not rotated; k, v: (b, n_kv_heads, past + t, head_dim), keys from
        `rotate_keys`; kernel: "sdpa" (fused, CPU) or "eager" (written out) -> (b, n_heads, t, head_dim)."""
        edges = self._block_edges(q.shape[2])
        blocks = [self._attend_block(q[:, :, a:e], k, v, a, KERNELS[kernel]) for a, e in zip(edges, edges[1:])]
        return torch.cat(blocks, dim=2)

    def _block_edges(self, t: int) -> list[int]:
        """Query blocks of at most query_block queries that never straddle a chunk border (in any row), so the case
        of a key depends only on its row and its chunk within a block."""
        borders = (self.query_chunk[:, 1:] != self.query_chunk[:, :-1]).any(0).nonzero().flatten() + 1
        segments = [0, *borders.tolist(), t]
        return [*sorted({a for lo, hi in zip(segments, segments[1:]) for a in range(lo, hi, self.query_block)}), t]

    def _attend_block(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: int, kernel) -> torch.Tensor:
        """Queries a .. a + B - 1 of this pass (q: (b, n_heads, B, head_dim), all in one chunk per row) over the keys
        they may see, one case and one tile of at most key_block keys at a time, merged by log-sum-exp."""
        B = q.shape[2]
        first = self.past + a  # cache index of the block's first query: keys from here on are the block's own
        n = first + B  # causal: keys 0 .. n - 1
        case = (self.query_chunk[:, a, None] - self.key_chunk[:, :n]).clamp(0, 2)  # (b or 1, n): per row and key
        real = None if self.padding_mask is None else self.padding_mask[:, :n].bool()  # (b, n)
        q_idx = torch.arange(first, n, device=q.device)[:, None]  # (B, 1)
        if self.logit_scale is not None:  # s^2 on the logits is s^2 on the queries
            q = q * self.logit_scale[:, :, a:a + B].to(q.dtype)
        per_case = []  # (output (b, n_heads, B, head_dim), log-sum-exp (b, n_heads, B, 1)) of each case with keys
        for c in range(3):
            columns = case == c if real is None else (case == c) & real  # (b or 1, n): keys of this case
            present = columns.any(0).nonzero()  # (keys of this case in some row, 1)
            lo, hi = (present[0].item(), present[-1].item() + 1) if present.numel() else (n, n)
            if c == 0:  # the block's own keys are intra-chunk, padding or not: every query sees itself
                lo, hi = min(lo, first), n
            if lo == hi:
                continue
            q_c = apply_rope(q, self.query_cos[c, :, a:a + B], self.query_sin[c, :, a:a + B])  # (b, n_heads, B, head_dim)
            merged = None
            for t0 in range(lo, hi, self.key_block):
                t1 = min(t0 + self.key_block, hi)
                sees = columns[:, None, None, t0:t1]  # (b or 1, 1, 1, T): the same for every query of the row
                if t1 > first:  # the tile holds some of the block's own keys: causal, and a query always sees itself
                    k_idx = torch.arange(t0, t1, device=q.device)[None, :]  # (1, T)
                    sees = sees & (k_idx <= q_idx) | (c == 0) & (k_idx == q_idx)  # (b or 1, 1, B, T)
                if not sees.any():
                    continue
                tile = kernel(q_c, k[:, :, t0:t1], v[:, :, t0:t1], None if sees.all() else sees)
                merged = tile if merged is None else merge_partials(merged, tile)
            if merged is not None:
                per_case.append(merged)
        # the three cases: one softmax over all keys, each scored by its case's query
        lse = torch.logsumexp(torch.stack([lse_c for _, lse_c in per_case]), dim=0)  # (b, n_heads, B, 1)
        out = sum(torch.exp(lse_c - lse) * out_c for out_c, lse_c in per_case)  # (b, n_heads, B, head_dim)
        return out.to(q.dtype)


def merge_partials(x: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor]):
    """Two softmax attentions over disjoint sets of keys, (output, log-sum-exp) each -> the one over their union.

    >>> q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
    >>> out, _ = merge_partials(partial_attention(q, k[:, :, :2], v[:, :, :2]), partial_attention(q, k[:, :, 2:], v[:, :, 2:]))
    >>> torch.allclose(out, partial_attention(q, k, v)[0], atol=1e-6)
    True
    """
    (out_x, lse_x), (out_y, lse_y) = x, y
    lse = torch.logaddexp(lse_x, lse_y)
    finite = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))  # no key in either: weights exp(-inf) = 0
    return out_x * torch.exp(lse_x - finite) + out_y * torch.exp(lse_y - finite), lse


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      sees: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of rotated q (b, n_heads, B, d) over k, v (b, n_kv_heads, s, d), written out, where `sees`
    (broadcasting to (b, 1, B, s); None: every key) is True -> (output (b, n_heads, B, d), log-sum-exp of the scores
    (b, n_heads, B, 1)), both in fp32 (fp64 for fp64 input). A query that sees no key: output 0, log-sum-exp -inf.

    >>> q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    >>> out, lse = partial_attention(q, k, v)
    >>> torch.allclose(out, torch.softmax(q @ k.transpose(2, 3) / 2, -1) @ v, atol=1e-6)
    True
    """
    b, h, B, d = q.shape
    h_kv, s = k.shape[1], k.shape[2]
    n_rep = h // h_kv
    acc = torch.promote_types(q.dtype, torch.float32)
    # the n_rep query heads of K/V head g are rows of one product with g's keys: no copy of K or V per group
    scores = (q.reshape(b, h_kv, n_rep * B, d) @ k.transpose(2, 3)).view(b, h, B, s).to(acc) * d ** -0.5
    if sees is not None:
        scores = scores.masked_fill(~sees, float("-inf"))  # (b, n_heads, B, s)
    top = scores.amax(-1, keepdim=True)  # (b, n_heads, B, 1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # a row with no key: exp(-inf - 0) = 0
    weights = torch.exp(scores - top)  # unnormalised, <= 1
    total = weights.sum(-1, keepdim=True)  # (b, n_heads, B, 1)
    out = (weights.to(v.dtype).reshape(b, h_kv, n_rep * B, s) @ v).view(b, h, B, d).to(acc)
    return out / total.clamp_min(torch.finfo(acc).tiny), top + total.log()


_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def fused_partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            sees: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`partial_attention` by PyTorch's fused CPU flash-attention kernel (what F.scaled_dot_product_attention runs
    on CPU), which also returns the log-sum-exp: ~10x faster here, and no (B, s) score matrix in memory. It is a
    private op (`aten._scaled_dot_product_flash_attention_for_cpu`), so elsewhere, or without it, the written-out
    kernel runs. tests/model/test_dual_chunk.py holds the two equal."""
    if _CPU_FLASH is None or q.device.type != "cpu":
        return partial_attention(q, k, v, sees)
    b, h, B, d = q.shape
    h_kv = k.shape[1]
    n_rep = h // h_kv
    mask = None
    if sees is not None:  # an additive mask in q's dtype, its rows repeated for the n_rep heads of a group
        rows = sees.repeat(1, 1, n_rep, 1) if sees.shape[2] > 1 else sees  # (b or 1, 1, n_rep * B or 1, s)
        mask = torch.zeros(rows.shape, dtype=q.dtype, device=q.device).masked_fill(~rows, float("-inf"))
    out, lse = _CPU_FLASH(q.reshape(b, h_kv, n_rep * B, d), k, v, attn_mask=mask, scale=d ** -0.5)
    acc = torch.promote_types(q.dtype, torch.float32)
    out, lse = out.reshape(b, h, B, d).to(acc), lse.reshape(b, h, B, 1).to(acc)
    if sees is not None:  # the kernel gives a query that sees no key output 0 and log-sum-exp 0, not -inf
        lse = lse.masked_fill(~sees.any(-1, keepdim=True).expand(b, 1, B, 1), float("-inf"))
    return out, lse


KERNELS = {"sdpa": fused_partial_attention, "eager": partial_attention}  # by the model's attn_impl
