"""Long context: NTK-aware scaling against transformers, Dual Chunk Attention against ordinary attention and against
a naive O(n^2) reference written here from the definition, the worked example, chunked prefill and decoding with
the KV cache, and the errors for bad long-context settings. (Position Interpolation and YaRN parity: test_rope.py.)"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import qwen_min as qm
from qwen_min.config import QwenConfig
from qwen_min.eval.passkey import passkey_prompt
from qwen_min.generation import last_position_logits
from qwen_min.model import dual_chunk
from qwen_min.model.attention import KVCache
from qwen_min.model.dual_chunk import DualChunkPass, dca_distances
from qwen_min.model.rope import RotaryEmbedding, ntk_inv_freq

THETA = 1e4


def _tiny(dca=None, **kw):
    return QwenConfig.from_name("tiny", vocab_size=101, intermediate_size=40, rope_theta=THETA,
                                dual_chunk_attention_config=dca, **kw)


def _pair(dca, dtype=torch.float64, seed=0, attn_impl="sdpa", **kw):
    """The same random weights twice: a plain model and one with Dual Chunk Attention."""
    torch.manual_seed(seed)
    plain = qm.Qwen(_tiny(**kw), attn_impl=attn_impl).to(dtype).eval()
    with torch.no_grad():
        for p in plain.parameters():
            p.normal_(0.0, 0.3)  # large weights: attention far from uniform, so a wrong position shows
    with_dca = qm.Qwen(_tiny(dca, **kw), attn_impl=attn_impl).to(dtype).eval()
    with_dca.load_state_dict(plain.state_dict())
    return plain, with_dca


# ---------------------------------------------------------------------------- NTK-aware scaling
@pytest.mark.parametrize("head_dim,theta", [(16, 1e4), (64, 1e6), (128, 5e5)])
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_ntk_equals_transformers_dynamic_base_at_factor_times_the_trained_length(head_dim, theta, factor):
    """transformers' "dynamic" with factor 1 at sequence length L uses base b * (L / L_train)^(d / (d - 2)):
    at L = s * L_train that is our static NTK base for factor s, bit for bit."""
    trained = 1024
    hf = Qwen2Config(hidden_size=head_dim * 4, num_attention_heads=4, num_key_value_heads=4, head_dim=head_dim,
                     max_position_embeddings=trained,
                     rope_parameters={"rope_type": "dynamic", "factor": 1.0, "rope_theta": theta})
    want, scale = ROPE_INIT_FUNCTIONS["dynamic"](hf, seq_len=factor * trained)
    assert torch.equal(ntk_inv_freq(head_dim, theta, factor), want) and scale == 1.0
    ours = ntk_inv_freq(head_dim, theta, factor)
    default = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    assert ours[0] == default[0]  # the fastest pair is kept
    assert ours[-1] / default[-1] == pytest.approx(1 / factor, rel=1e-5)  # the slowest is interpolated by exactly s


def test_ntk_model_matches_transformers_dynamic_past_the_trained_length():
    """A whole model: ours with static NTK factor 4 against transformers' dynamic NTK (factor 1) run on 4x the
    trained length, where transformers recomputes the same base."""
    trained, factor = 16, 4
    cfg = _tiny(max_position_embeddings=trained, rope_scaling={"rope_type": "ntk", "factor": float(factor)})
    hf_cfg = Qwen2Config(**cfg.replace(rope_scaling=None).to_hf_dict())
    hf_cfg.rope_parameters = {"rope_type": "dynamic", "factor": 1.0, "rope_theta": THETA}
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = Qwen2ForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.2)
    ours = qm.Qwen(cfg).eval()
    ours.load_state_dict(ref.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (2, factor * trained), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(ids) - ref(ids).logits).abs().max().item()
        no_scaling = qm.Qwen(cfg.replace(rope_scaling=None, max_position_embeddings=factor * trained)).eval()
        no_scaling.load_state_dict(ref.state_dict())
        differs = (no_scaling(ids) - ref(ids).logits).abs().max().item()
    assert diff <= 1e-5
    assert differs > 1e-3  # the scaling matters at this length: the comparison can fail


# ---------------------------------------------------------------------------- DCA: the worked example
def test_worked_example_distances_in_both_conventions():
    """chunk_size 10, local_size 4 (chunk_len 6), 12 tokens."""
    vllm, paper = dca_distances(12, 10, 4), dca_distances(12, 10, 4, convention="paper")
    i = torch.arange(12)
    true = i[:, None] - i[None, :]
    assert torch.equal(vllm[:11].tril(), true[:11].tril())  # rows 0-10: the true distances i - j
    assert torch.equal(paper[:10].tril(), true[:10].tril())  # rows 0-9 in the paper's convention
    assert vllm[10, :11].tolist() == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert paper[10, :11].tolist() == [9, 8, 7, 6, 5, 4, 4, 3, 2, 1, 0]
    assert vllm[11].tolist() == [10, 9, 8, 7, 6, 5, 5, 4, 3, 2, 1, 0]  # capped at chunk_size: 11 never appears
    assert (vllm.max(), paper.max()) == (10, 9)
    with pytest.raises(ValueError, match="convention must be one of"):
        dca_distances(12, 10, 4, convention="chunkllama")


# ---------------------------------------------------------------------------- DCA: the naive reference
def _rotate(x, positions):
    """RoPE written out (rotate-half pairs); angles, cos and sin in fp32 as the model and transformers compute them.
    x: (..., n, d); positions: (n,)."""
    d = x.shape[-1]
    inv_freq = 1.0 / THETA ** (torch.arange(0, d, 2).float() / d)
    angles = positions[..., None].float() * inv_freq  # (n, d / 2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin), -1)


def naive_dca(q, k, v, chunk_size, local_size, convention="vllm"):
    """Dual Chunk Attention from its definition, O(n^2): for every pair (i, j <= i) pick the case from the chunks of
    i and j, rotate the query to that case's position and the key to j % chunk_len, then one softmax over all keys.
    q: (b, h, n, d); k, v: (b, h_kv, n, d), not rotated."""
    b, h, n, d = q.shape
    cl = chunk_size - local_size
    cap = chunk_size if convention == "vllm" else chunk_size - 1
    k, v = k.repeat_interleave(h // k.shape[1], 1), v.repeat_interleave(h // v.shape[1], 1)  # (b, h, n, d)
    scores = torch.full((b, h, n, n), float("-inf"), dtype=q.dtype)
    for i in range(n):
        for j in range(i + 1):
            gap = i // cl - j // cl
            if gap == 0:
                q_pos = i % cl
            elif gap == 1:
                q_pos = min(i % cl + cl, cap)
            else:
                q_pos = min(2 * cl - 1, cap)
            qi = _rotate(q[:, :, i:i + 1], torch.tensor([q_pos]))  # (b, h, 1, d)
            kj = _rotate(k[:, :, j:j + 1], torch.tensor([j % cl]))
            scores[:, :, i, j] = (qi * kj).sum(-1)[..., 0] / d ** 0.5
    return torch.softmax(scores, -1) @ v  # (b, h, n, d)


def _dca_layer(q, k, v, dca, convention="vllm", query_block=256, padding_mask=None, kernel="sdpa", key_block=4096):
    """DualChunkPass.attend on raw q, k, v, positions from the padding mask (as the model derives them)."""
    rotary = RotaryEmbedding(_tiny(head_dim=q.shape[-1]))
    n = q.shape[2]
    if padding_mask is None:
        positions = torch.arange(n)[None]
    else:
        positions = (padding_mask.cumsum(-1) - 1).masked_fill(padding_mask == 0, 1)
    p = DualChunkPass.build(dca, rotary, positions, n, q.dtype, padding_mask, convention, query_block, key_block)
    return p.attend(q, p.rotate_keys(k), v, kernel)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("convention", ["vllm", "paper"])
@pytest.mark.parametrize("chunk_size,local_size,n", [(10, 4, 40), (12, 2, 37), (8, 5, 30)])
def test_dca_equals_the_naive_reference_over_several_chunks(kernel, convention, chunk_size, local_size, n):
    g = torch.Generator().manual_seed(n)
    q = torch.randn(2, 4, n, 16, generator=g, dtype=torch.float64) * 2  # 4 query heads share 2 K/V heads
    k = torch.randn(2, 2, n, 16, generator=g, dtype=torch.float64) * 2
    v = torch.randn(2, 2, n, 16, generator=g, dtype=torch.float64)
    want = naive_dca(q, k, v, chunk_size, local_size, convention)
    dca = {"chunk_size": chunk_size, "local_size": local_size}
    for query_block, key_block in ((1, 4096), (7, 5), (256, 4096)):  # small blocks and tiles, and everything at once
        got = _dca_layer(q, k, v, dca, convention, query_block, kernel=kernel, key_block=key_block)
        assert (got - want).abs().max() <= 1e-10, (query_block, key_block)
    plain_rope = naive_dca(q, k, v, chunk_size=10 * n, local_size=1)  # one chunk: ordinary causal RoPE attention
    assert (want - plain_rope).abs().max() > 1e-2  # several chunks change the result: the comparison can fail


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_dca_left_padding_gives_each_row_its_own_result(kernel):
    g = torch.Generator().manual_seed(3)
    n, pad = 23, 6
    q = torch.randn(3, 4, n, 16, generator=g, dtype=torch.float64)
    k, v = torch.randn(3, 2, n, 16, generator=g, dtype=torch.float64), torch.randn(3, 2, n, 16, generator=g, dtype=torch.float64)
    mask = torch.ones(3, n, dtype=torch.long)
    mask[1, :pad] = 0
    mask[2, :n - 2] = 0  # two real tokens: its padding queries see nothing but themselves
    dca = {"chunk_size": 7, "local_size": 2}
    got = _dca_layer(q, k, v, dca, query_block=5, padding_mask=mask, kernel=kernel, key_block=4)
    assert torch.isfinite(got).all()  # padding rows too: a NaN there would reach real rows through 0 * NaN
    for row, start in ((1, pad), (2, n - 2)):
        alone = _dca_layer(q[row:row + 1, :, start:], k[row:row + 1, :, start:], v[row:row + 1, :, start:], dca, kernel=kernel)
        assert (got[row:row + 1, :, start:] - alone).abs().max() <= 1e-12
    assert (got[:1] - naive_dca(q[:1], k[:1], v[:1], 7, 2)).abs().max() <= 1e-10


def test_prefill_scores_at_most_a_query_block_by_a_key_block(monkeypatch):
    """Each partial softmax covers at most query_block x key_block scores, whatever the length: no n x n matrix."""
    shapes = []

    def recording(q, k, v, sees=None):
        shapes.append((q.shape[2], k.shape[2]))
        return dual_chunk.partial_attention(q, k, v, sees)

    monkeypatch.setitem(dual_chunk.KERNELS, "eager", recording)
    g = torch.Generator().manual_seed(0)
    n = 200
    q, k, v = (torch.randn(1, h, n, 16, generator=g, dtype=torch.float64) for h in (4, 2, 2))
    dca = {"chunk_size": 40, "local_size": 8}
    got = _dca_layer(q, k, v, dca, query_block=16, kernel="eager", key_block=24)
    assert max(rows for rows, _ in shapes) == 16 and max(keys for _, keys in shapes) == 24
    assert sum(rows * keys for rows, keys in shapes) < 0.7 * n * n  # about the causal half, not three times it
    assert (got - _dca_layer(q, k, v, dca)).abs().max() <= 1e-12


# ---------------------------------------------------------------------------- DCA in the model
@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_dca_model_equals_ordinary_attention_while_the_sequence_fits(attn_impl):
    dca = {"chunk_size": 32, "local_size": 8}  # chunk_len 24
    plain, with_dca = _pair(dca, attn_impl=attn_impl)
    ids = torch.randint(0, 101, (2, 33), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    with torch.no_grad():
        one_chunk = (with_dca(ids[:, :24]) - plain(ids[:, :24])).abs().max().item()
        padded = (with_dca(ids[:, :24], attention_mask=mask[:, :24]) - plain(ids[:, :24], attention_mask=mask[:, :24]))
        # up to chunk_size + 1 tokens vLLM's convention still gives the true distances, from other rotations
        to_chunk_size = (with_dca(ids) - plain(ids)).abs().max().item()
        beyond = (with_dca(torch.cat([ids, ids], 1)) - plain(torch.cat([ids, ids], 1))).abs().max().item()
    exact = 1e-12 if attn_impl == "sdpa" else 1e-6  # the plain eager kernel's softmax is fp32, even for fp64 input
    assert one_chunk <= exact
    assert padded[mask[:, :24].bool()].abs().max() <= exact
    assert to_chunk_size <= 1e-5  # RoPE angles are fp32 (as in transformers): other angles, rounding ~1e-7
    assert beyond > 1e-3


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_chunked_prefill_and_decoding_equal_one_forward_pass(attn_impl):
    dca = {"chunk_size": 16, "local_size": 4}
    _, model = _pair(dca, dtype=torch.float32, seed=2, attn_impl=attn_impl)
    ids = torch.randint(0, 101, (2, 70), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)  # (2, 70, vocab)
        cache = KVCache(model.config, 2, 70)
        pieces = torch.cat([model(ids[:, a:b], cache=cache) for a, b in ((0, 23), (23, 50), (50, 70))], 1)
        cache = KVCache(model.config, 2, 70)
        model(ids[:, :30], cache=cache)
        steps = torch.cat([model(ids[:, i:i + 1], cache=cache) for i in range(30, 70)], 1)
    assert (pieces - full).abs().max() <= 1e-5
    assert (steps - full[:, 30:]).abs().max() <= 1e-5


def test_generate_with_dca_equals_greedy_full_forward_passes():
    dca = {"chunk_size": 12, "local_size": 3, "original_max_position_embeddings": 10}  # with vLLM's length scale
    _, model = _pair(dca, dtype=torch.float32, seed=5, max_position_embeddings=64)
    prompt = torch.randint(0, 101, (20,), generator=torch.Generator().manual_seed(2)).tolist()
    reply = qm.generate(model, prompt, max_new_tokens=12, stop_ids=())
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    assert reply == ids[len(prompt):]


def test_length_scale_multiplies_logits_past_the_original_length():
    g = torch.Generator().manual_seed(4)
    n = 30
    q, k, v = (torch.randn(1, h, n, 16, generator=g, dtype=torch.float64) for h in (2, 2, 2))
    dca = {"chunk_size": 12, "local_size": 3}
    base = _dca_layer(q, k, v, dca)
    scaled = _dca_layer(q, k, v, dca | {"original_max_position_embeddings": 10})
    assert torch.equal(base[:, :, :10], scaled[:, :, :10])  # queries 0-9 see <= 10 tokens: s = 1
    s = 0.1 * torch.log(torch.tensor(n / 10, dtype=torch.float64)) + 1  # the last query sees 30 tokens
    assert (scaled[:, :, -1:] - _dca_layer(q * s * s, k, v, dca)[:, :, -1:]).abs().max() <= 1e-12


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("dca,message", [
    ({"chunk_size": 8, "local_size": 8}, r"local_size \(8\) must be smaller than chunk_size \(8\)"),
    ({"chunk_size": 8, "local_size": 0}, "must be positive integers"),
    ({"chunk_size": -4, "local_size": 2}, "must be positive integers"),
    ({"chunk_size": 8.0, "local_size": 2}, "must be positive integers"),
    ({"chunk_size": 8, "local_size": 2, "sparse": True}, r"unknown key\(s\) sparse"),
    ({"chunk_size": 8, "local_size": 2, "original_max_position_embeddings": -1}, "must be an integer >= 0"),
    ([8, 2], "must be a dict"),
])
def test_bad_dual_chunk_config_is_one_clear_error(dca, message):
    with pytest.raises(ValueError, match="invalid QwenConfig: dual_chunk_attention_config") as e:
        _tiny(dca)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=message):
        _tiny(dca)


@pytest.mark.parametrize("scaling,message", [
    ({"rope_type": "dynamic", "factor": 2.0}, "'dynamic' is not supported"),
    ({"rope_type": "linear"}, "'linear' needs a numeric factor >= 1"),
    ({"rope_type": "ntk", "factor": 0.5}, "'ntk' needs a numeric factor >= 1"),
    ({"rope_type": "yarn", "factor": 4.0}, "'yarn' needs original_max_position_embeddings"),
])
def test_bad_rope_scaling_is_one_clear_error(scaling, message):
    with pytest.raises(ValueError, match=message):
        _tiny(rope_scaling=scaling)


def test_a_sequence_past_the_maximum_needs_an_extension_method():
    ids = torch.zeros(1, 20, dtype=torch.long)
    model = qm.Qwen(_tiny(max_position_embeddings=16)).eval()
    with pytest.raises(ValueError, match=r"^20 positions \(cached 0 \+ new 20\) exceed max_position_embeddings 16 "
                                         "and the config names no position-extension method") as e:
        model(ids)
    assert "\n" not in str(e.value)
    cache = KVCache(model.config, 1, 32)
    model(ids[:, :16], cache=cache)
    with pytest.raises(ValueError, match=r"17 positions \(cached 16 \+ new 1\)"):
        model(ids[:, 16:17], cache=cache)
    for method in ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
                   {"dual_chunk_attention_config": {"chunk_size": 16, "local_size": 4}}):
        model.set_context_extension(**method)
        assert model(ids).shape == (1, 20, 101)
    model.set_context_extension(None, None)
    with pytest.raises(ValueError, match="no position-extension method"):
        model(ids)
    with pytest.raises(ValueError, match="local_size"):
        model.set_context_extension(dual_chunk_attention_config={"chunk_size": 4, "local_size": 4})


def test_dca_refuses_explicit_position_ids():
    model = qm.Qwen(_tiny({"chunk_size": 16, "local_size": 4})).eval()
    with pytest.raises(ValueError, match="positions come from attention_mask; position_ids is not supported"):
        model(torch.zeros(1, 4, dtype=torch.long), position_ids=torch.arange(4)[None])


def test_dual_chunk_config_round_trips_through_config_json():
    cfg = _tiny({"chunk_size": 64, "local_size": 16, "original_max_position_embeddings": 1024})
    d = cfg.to_hf_dict()
    assert d["dual_chunk_attention_config"] == {"chunk_size": 64, "local_size": 16, "original_max_position_embeddings": 1024}
    assert QwenConfig.from_hf_dict(d) == cfg
    assert QwenConfig.from_hf_dict(Qwen2Config(**d).to_dict()) == cfg  # transformers keeps the field


# ---------------------------------------------------------------------------- the real checkpoint
@pytest.mark.slow
def test_yarn_on_the_official_checkpoint_matches_transformers(gguf_path, hf_gguf_model, official_tokenizer_dir):
    """Qwen2.5-Coder-0.5B-Instruct with YaRN factor 4 as Qwen documents it (original length 32,768): logits of the
    last position of a 768-token passkey prompt, fp32, against transformers' Qwen2ForCausalLM on the same weights."""
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    ids = torch.tensor([passkey_prompt(tok, 768, 0.5, 27182, "chat")])
    ours = qm.from_pretrained(gguf_path)
    ours.set_context_extension(yarn, max_position_embeddings=131072)
    config = copy.deepcopy(hf_gguf_model.config)
    config.rope_parameters = yarn | {"rope_theta": config.rope_parameters["rope_theta"]}
    config.max_position_embeddings = 131072
    stock = hf_gguf_model.model.rotary_emb
    hf_gguf_model.model.rotary_emb = type(stock)(config=config)  # the session's shared model: restored below
    try:
        with torch.no_grad():
            want = hf_gguf_model(ids, logits_to_keep=1).logits[0, -1]
    finally:
        hf_gguf_model.model.rotary_emb = stock
    with torch.no_grad(), last_position_logits(ours):
        got = ours(ids)[0, -1]
        ours.set_context_extension(None)
        stock_logits = ours(ids)[0, -1]
    assert (got - want).abs().max() <= 1e-4
    assert (got - stock_logits).abs().max() > 1e-2  # YaRN changes this prompt's logits: the comparison can fail
