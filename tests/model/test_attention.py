"""Grouped-query attention against transformers, the two kernels against each other, the KV cache and left padding."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

from qwen_min.config import OFFICIAL_SIZES, QwenConfig
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises import ch03_attention as ex
from qwen_min.course.exercises.reference import ch03_attention as ref
from qwen_min.model.attention import Attention, KVCache, attention_mask_for, eager_attention, sdpa_attention
from qwen_min.model.qwen import Qwen
from qwen_min.model.rope import RotaryEmbedding

# (query heads, kv heads): ratios 1 (MHA), 2, 3, 7 (MQA)
HEADS = [(4, 4), (4, 2), (6, 2), (7, 1)]


def _tiny(n_heads, n_kv, **kw):
    return QwenConfig.from_name("tiny", vocab_size=97, hidden_size=8 * n_heads, num_attention_heads=n_heads,
                                num_key_value_heads=n_kv, head_dim=8, **kw)


def _left_padded(g, lengths, vocab):
    """A batch of random rows of the given lengths, left-padded with token 0, and its 1/0 mask."""
    t = max(lengths)
    ids = torch.zeros(len(lengths), t, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, t - n:] = torch.randint(1, vocab, (n,), generator=g)
        mask[row, t - n:] = 1
    return ids, mask


@pytest.mark.parametrize("n_heads,n_kv", HEADS)
@pytest.mark.parametrize("padded", [False, True])
def test_attention_layer_matches_transformers(n_heads, n_kv, padded):
    torch.manual_seed(0)
    cfg = _tiny(n_heads, n_kv, rope_theta=5e5)
    hf_cfg = Qwen2Config(**cfg.to_hf_dict())
    hf_cfg._attn_implementation = "eager"
    ref = Qwen2Attention(hf_cfg, layer_idx=0).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.3)  # biases too: a dropped bias must show
    ours = Attention(cfg, 0, attn_impl="eager").eval()
    ours.load_state_dict(ref.state_dict())
    b, t = 3, 11
    x = torch.randn(b, t, cfg.hidden_size)
    padding = torch.ones(b, t, dtype=torch.long)
    if padded:
        padding[1, :4] = 0
        padding[2, :10] = 0
    positions = (padding.cumsum(-1) - 1).masked_fill(padding == 0, 1)
    mask = attention_mask_for(t, 0, padding if padded else None, x.device)
    additive = torch.zeros(b, 1, t, t).masked_fill(~attention_mask_for(t, 0, padding, x.device), torch.finfo(torch.float32).min)
    want, _ = ref(x, Qwen2RotaryEmbedding(hf_cfg)(x, positions), additive)
    cos, sin = RotaryEmbedding(cfg)(positions, x.dtype)
    real = padding.bool()
    for impl in ("eager", "sdpa"):
        ours.attn_impl = impl
        got = ours(x, cos, sin, mask)
        assert (got - want)[real].abs().max() <= 1e-5, impl
        assert torch.isfinite(got).all()


def test_eager_and_sdpa_kernels_agree_with_masks_and_gqa():
    g = torch.Generator().manual_seed(1)
    for n_heads, n_kv in HEADS:
        q = torch.randn(2, n_heads, 5, 8, generator=g)
        k, v = torch.randn(2, n_kv, 9, 8, generator=g), torch.randn(2, n_kv, 9, 8, generator=g)
        padding = torch.ones(2, 9, dtype=torch.long)
        padding[0, :3] = 0
        for mask in (attention_mask_for(5, 4, None, q.device), attention_mask_for(5, 4, padding, q.device)):
            assert (eager_attention(q, k, v, mask) - sdpa_attention(q, k, v, mask)).abs().max() <= 1e-6


@pytest.mark.parametrize("attn_impl", ["eager", "sdpa"])
@pytest.mark.parametrize("n_heads,n_kv", HEADS)
def test_kv_cache_decoding_equals_full_forward(attn_impl, n_heads, n_kv):
    torch.manual_seed(2)
    cfg = _tiny(n_heads, n_kv, num_hidden_layers=3)
    model = Qwen(cfg, attn_impl=attn_impl).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 14))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(cfg, batch_size=2, max_seq_len=20)
        steps = [model(ids[:, :6], cache=cache)]  # prefill
        steps += [model(ids[:, i:i + 1], cache=cache) for i in range(6, 11)]  # one token at a time
        steps.append(model(ids[:, 11:], cache=cache))  # then a chunk of 3
    assert cache.length == 14
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-5


@pytest.mark.parametrize("attn_impl", ["eager", "sdpa"])
def test_left_padded_batch_equals_each_row_alone_with_and_without_cache(attn_impl):
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    cfg = _tiny(6, 2, num_hidden_layers=2)
    model = Qwen(cfg, attn_impl=attn_impl).eval()
    lengths = [12, 5, 9, 1]
    ids, mask = _left_padded(g, lengths, cfg.vocab_size)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask)
        alone = [model(ids[row:row + 1, 12 - n:])[0] for row, n in enumerate(lengths)]
        for row, n in enumerate(lengths):
            assert (batched[row, 12 - n:] - alone[row]).abs().max() <= 1e-5
        assert torch.isfinite(batched).all()
        # the same batch decoded through the cache, growing the mask with each new token
        cache = KVCache(cfg, batch_size=4, max_seq_len=16)
        steps = [model(ids[:, :8], attention_mask=mask[:, :8], cache=cache)]
        steps += [model(ids[:, i:i + 1], attention_mask=mask[:, :i + 1], cache=cache) for i in range(8, 12)]
        cached = torch.cat(steps, 1)
        for row, n in enumerate(lengths):
            assert (cached[row, 12 - n:] - alone[row]).abs().max() <= 1e-5


def test_cache_and_mask_misuse_is_one_clear_error():
    cfg = _tiny(4, 2)
    model = Qwen(cfg).eval()
    cache = KVCache(cfg, batch_size=1, max_seq_len=4)
    with pytest.raises(ValueError, match="KVCache is full"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size 1"):
        model(torch.zeros(2, 2, dtype=torch.long), cache=KVCache(cfg, batch_size=1, max_seq_len=4))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 2))
    with pytest.raises(ValueError, match="attn_impl"):
        Qwen(cfg, attn_impl="flash")


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_cache_memory_per_token_matches_config(name):
    cfg = QwenConfig.from_name(name)
    cache = KVCache(cfg, batch_size=1, max_seq_len=1000, dtype=torch.bfloat16, device="meta")
    assert cache.nbytes() == 1000 * cfg.kv_cache_bytes_per_token(bytes_per_element=2)


def test_attention_exercise_checkers_reject_wrong_answers():
    def padded_mask(attention_mask):
        t = attention_mask.shape[1]
        allowed = torch.ones(t, t, dtype=torch.bool).tril() & attention_mask.bool()[:, None, None, :]
        return allowed | torch.eye(t, dtype=torch.bool)

    ex.check_padded_mask(padded_mask)
    with pytest.raises(ExerciseFailed, match="padded_mask: wrong"):  # padding query rows left empty: NaN softmax
        ex.check_padded_mask(lambda m: torch.ones(m.shape[1], m.shape[1], dtype=torch.bool).tril()
                             & m.bool()[:, None, None, :])
    with pytest.raises(ExerciseFailed, match="padded_mask: wrong"):  # causal only, padding visible
        ex.check_padded_mask(lambda m: torch.ones(m.shape[1], m.shape[1], dtype=torch.bool).tril().expand(
            m.shape[0], 1, -1, -1))

    def gqa(q, k, v):
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        t = q.shape[2]
        scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(),
                                                                           float("-inf"))
        return scores.softmax(-1) @ v

    ex.check_gqa_attention(gqa)
    with pytest.raises(ExerciseFailed, match="gqa_attention: wrong"):  # k0 k1 k0 k1 instead of k0 k0 k1 k1
        ex.check_gqa_attention(ex.buggy_gqa)


def test_no_mask_prediction():
    with_mask, without = ref.measured_no_mask_loss()
    assert abs(with_mask - math.log(64)) < 0.1 and without < 0.5  # the unmasked model copies the next token
    ex.check_no_mask_loss(lambda: "b")
    with pytest.raises(ExerciseFailed, match="you predicted 'A'"):
        ex.check_no_mask_loss(lambda: "A")

