"""The mixture-of-experts block and its auxiliary loss against transformers' Qwen2-MoE: outputs, router logits, gradients."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock, load_balancing_loss_func

from qwen_min.checkpoints.hf import from_pretrained, save_pretrained
from qwen_min.config import QwenConfig
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch05_moe import (
    buggy_router_weights,
    check_dispatch,
    check_load_balancing_loss,
    check_router_weights,
)
from qwen_min.model.attention import KVCache
from qwen_min.model.moe import SparseMoeBlock, dispatch, load_balancing_loss, route
from qwen_min.model.qwen import Qwen

# Random tiny MoE configs: top-1 and top-k > 1, norm_topk_prob on and off, odd widths, every expert or a few chosen.
BLOCK_CONFIGS = {
    "top1": dict(hidden_size=24, num_experts=4, num_experts_per_tok=1, moe_intermediate_size=8,
                 shared_expert_intermediate_size=20, norm_topk_prob=False),
    "top2-norm": dict(hidden_size=32, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=12,
                      shared_expert_intermediate_size=24, norm_topk_prob=True),
    "top3-raw": dict(hidden_size=40, num_experts=6, num_experts_per_tok=3, moe_intermediate_size=7,
                     shared_expert_intermediate_size=36, norm_topk_prob=False),
    "top5-of-5-norm": dict(hidden_size=48, num_experts=5, num_experts_per_tok=5, moe_intermediate_size=10,
                           shared_expert_intermediate_size=8, norm_topk_prob=True),
}


def hf_config(cfg: QwenConfig) -> Qwen2MoeConfig:
    """transformers' config for `cfg`, with the explicit (eager) attention and experts loops."""
    return Qwen2MoeConfig(**cfg.to_hf_dict() | {"bos_token_id": None, "eos_token_id": None},
                          attn_implementation="eager", experts_implementation="eager")


def per_expert(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' in-memory MoE state (experts fused into 3-D tensors) -> the per-expert checkpoint names qm uses."""
    out = {}
    for name, t in hf_state.items():
        if name.endswith("experts.gate_up_proj"):  # (E, 2 * I, d): gate rows, then up rows
            for e, (gate, up) in enumerate(w.chunk(2, dim=0) for w in t):  # w: (2 * I, d)
                out[name.replace("gate_up_proj", f"{e}.gate_proj.weight")] = gate
                out[name.replace("gate_up_proj", f"{e}.up_proj.weight")] = up
        elif name.endswith("experts.down_proj"):  # (E, d, I)
            for e, down in enumerate(t):
                out[name.replace("down_proj", f"{e}.down_proj.weight")] = down
        else:
            out[name] = t
    return out


def make_block_pair(name: str, seed: int = 0):
    """transformers' sparse block with random weights (router sharpened: std 1), and a qm block holding the same."""
    cfg = QwenConfig.from_name("tiny-moe", **BLOCK_CONFIGS[name])
    torch.manual_seed(seed)
    ref = Qwen2MoeSparseMoeBlock(hf_config(cfg))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.normal_(0.0, 1.0 if n == "gate.weight" else 0.2)  # a sharp router: a wrong expert choice shows
    ours = SparseMoeBlock(cfg)
    ours.load_state_dict(per_expert(ref.state_dict()))
    return cfg, ref, ours


def router_logits_of(block: Qwen2MoeSparseMoeBlock, x: torch.Tensor) -> torch.Tensor:
    return block.gate(x.reshape(-1, x.shape[-1]))[0]


@pytest.mark.parametrize("name", BLOCK_CONFIGS)
def test_block_outputs_router_logits_and_gradients_match_transformers(name):
    cfg, ref, ours = make_block_pair(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 11, cfg.hidden_size, generator=g)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = ref(x_ref)
    want_logits = router_logits_of(ref, x_ref)
    got, got_logits = ours(x_ours)
    assert (got - want).abs().max() <= 1e-5
    assert (got_logits - want_logits).abs().max() <= 1e-5
    # routing is sharp enough that the choice matters: the top-k weights are far from uniform
    weights, _ = route(got_logits, cfg.num_experts_per_tok, cfg.norm_topk_prob)
    assert weights.max() > 0.9

    # gradients of an output projection plus the auxiliary loss, so the router's gradient counts too
    proj = torch.randn(got.shape, generator=g)
    mask = torch.ones(3, 11)
    mask[1, :4] = 0
    want_aux = load_balancing_loss_func((want_logits,), cfg.num_experts, cfg.num_experts_per_tok, mask)
    got_aux = load_balancing_loss([got_logits], cfg.num_experts, cfg.num_experts_per_tok, mask)
    assert (got_aux - want_aux).abs() <= 1e-6
    ((want * proj).sum() + want_aux).backward()
    ((got * proj).sum() + got_aux).backward()
    assert (x_ours.grad - x_ref.grad).abs().max() <= 1e-5
    ref_grads = per_expert({n: p.grad for n, p in ref.named_parameters()})
    assert sorted(ref_grads) == sorted(n for n, _ in ours.named_parameters())
    for n, p in ours.named_parameters():
        assert (p.grad - ref_grads[n]).abs().max() <= 1e-5, n


@pytest.mark.parametrize("top_k", [1, 2, 4])
@pytest.mark.parametrize("with_mask", [False, True])
def test_load_balancing_loss_matches_transformers(top_k, with_mask):
    g = torch.Generator().manual_seed(top_k)
    num_experts = 6
    logits = [torch.randn(4 * 9, num_experts, generator=g) * s for s in (0.1, 1.0, 5.0)]  # soft to collapsed
    mask = (torch.rand(4, 9, generator=g) > 0.3).long() if with_mask else None
    want = load_balancing_loss_func(tuple(logits), num_experts, top_k, mask)
    assert (load_balancing_loss(logits, num_experts, top_k, mask) - want).abs() <= 1e-6
    assert (load_balancing_loss(torch.stack(logits), num_experts, top_k, mask) - want).abs() <= 1e-6


def test_load_balancing_loss_is_top_k_when_uniform_and_grows_when_collapsed():
    uniform = torch.zeros(10, 4)  # every expert equally likely; topk breaks the ties, 2 experts get all tokens
    assert load_balancing_loss([uniform], 4, 2).item() == pytest.approx(2.0, abs=1e-6)
    collapsed = torch.tensor([[8.0, 0.0, 0.0, 0.0]]).repeat(10, 1)
    balanced = torch.eye(4).repeat(3, 1)[:10] * 8.0
    assert load_balancing_loss([collapsed], 4, 1) > 3.9 > 1.1 > load_balancing_loss([balanced], 4, 1)


def test_load_balancing_loss_rejects_a_mask_of_the_wrong_size():
    with pytest.raises(ValueError, match="attention_mask has 12 entries but the router saw 10 tokens"):
        load_balancing_loss([torch.zeros(10, 4)], 4, 2, torch.ones(3, 4))


def test_dispatch_equals_a_loop_over_tokens():
    cfg, _, block = make_block_pair("top3-raw", seed=3)
    x = torch.randn(17, cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    weights, experts = route(block.gate(x), cfg.num_experts_per_tok, cfg.norm_topk_prob)
    loop = torch.stack([sum(w * block.experts[e](xi) for w, e in zip(weights[i], experts[i].tolist()))
                        for i, xi in enumerate(x)])
    assert (dispatch(x, weights, experts, block.experts) - loop).abs().max() <= 1e-6


def test_no_shared_expert_when_its_width_is_zero():
    cfg = QwenConfig.from_name("tiny-moe", shared_expert_intermediate_size=0)
    block = SparseMoeBlock(cfg)
    assert not any(n.startswith("shared_expert") for n, _ in block.named_parameters())
    x = torch.randn(2, 3, cfg.hidden_size)
    out, logits = block(x)
    weights, experts = route(logits, cfg.num_experts_per_tok, cfg.norm_topk_prob)
    assert torch.allclose(out.view(6, -1), dispatch(x.view(6, -1), weights, experts, block.experts))


def test_exercise_checkers_accept_the_reference_and_reject_wrong_answers():
    def always_renormalised(logits, top_k, norm_topk_prob):
        probs = logits.float().softmax(-1)
        weights, experts = probs.topk(top_k, dim=-1)
        return torch.zeros_like(probs).scatter(-1, experts, weights / weights.sum(-1, keepdim=True))

    with pytest.raises(ExerciseFailed, match="router_weights: wrong.*norm_topk_prob"):
        check_router_weights(always_renormalised)
    with pytest.raises(ExerciseFailed, match="router_weights: wrong"):
        check_router_weights(buggy_router_weights)

    def router_weights(logits, k, norm):
        probs = logits.float().softmax(-1)
        weights, experts = probs.topk(k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True) if norm else weights
        return torch.zeros_like(probs).scatter(-1, experts, weights)

    check_router_weights(router_weights)

    def token_loop(x, weights, experts, mlps):
        return torch.stack([sum(w * mlps[e](xi[None])[0] for w, e in zip(weights[i], experts[i].tolist()))
                            for i, xi in enumerate(x)])

    def grouped(x, weights, experts, mlps, scale=True):
        out = torch.zeros_like(x)
        for e, mlp in enumerate(mlps):
            token, choice = torch.where(experts == e)
            if len(token):
                out.index_add_(0, token, mlp(x[token]) * (weights[token, choice, None] if scale else 1.0))
        return out

    with pytest.raises(ExerciseFailed, match="called [0-9]+ times"):
        check_dispatch(token_loop)
    with pytest.raises(ExerciseFailed, match="dispatch: wrong"):
        check_dispatch(lambda *args: grouped(*args, scale=False))
    check_dispatch(grouped)

    def aux(logits, num_experts, top_k, pooled=True):
        def one(group):
            probs = torch.cat([lg.softmax(-1) for lg in group])
            chosen = torch.nn.functional.one_hot(probs.topk(top_k, -1).indices, num_experts).sum(1).float()
            return num_experts * (chosen.mean(0) * probs.mean(0)).sum()
        return one(logits) if pooled else torch.stack([one([lg]) for lg in logits]).mean()

    with pytest.raises(ExerciseFailed, match="load_balancing_loss: wrong on input 2"):  # averages per-layer losses
        check_load_balancing_loss(lambda *args: aux(*args, pooled=False))
    check_load_balancing_loss(aux)


# Full models: dense layers among sparse ones (decoder_sparse_step, mlp_only_layers), tied and untied, GQA and MHA.
MODEL_CONFIGS = {
    "top1-step2-tied": dict(num_hidden_layers=4, decoder_sparse_step=2, num_experts=4, num_experts_per_tok=1,
                            moe_intermediate_size=16, shared_expert_intermediate_size=24, tie_word_embeddings=True),
    "top2-norm-mlp-only-untied": dict(num_hidden_layers=3, mlp_only_layers=[1], num_experts=8, num_experts_per_tok=2,
                                      moe_intermediate_size=12, shared_expert_intermediate_size=32, norm_topk_prob=True,
                                      tie_word_embeddings=False, router_aux_loss_coef=0.02),
    "top3-raw-mha-untied": dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, num_experts=6,
                                num_experts_per_tok=3, moe_intermediate_size=20, shared_expert_intermediate_size=16,
                                tie_word_embeddings=False, router_aux_loss_coef=0.5),
}


def make_model_pair(name: str, seed: int = 0):
    """transformers' Qwen2MoeForCausalLM with random weights (sharp routers), and a qm.Qwen holding the same."""
    cfg = QwenConfig.from_name("tiny-moe", vocab_size=101, intermediate_size=40, **MODEL_CONFIGS[name])
    torch.manual_seed(seed)
    ref = Qwen2MoeForCausalLM(hf_config(cfg))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            std = 1.0 if n.endswith("mlp.gate.weight") else 0.2  # a sharp router: a wrong expert choice shows
            p.normal_(1.0 if "norm" in n else 0.0, std)
    ours = Qwen(cfg, attn_impl="eager")
    ours.load_state_dict(per_expert(ref.state_dict()))
    return cfg, ref, ours


def test_model_configs_mix_dense_and_sparse_layers():
    sparse = {name: [QwenConfig.from_name("tiny-moe", **c).is_sparse_layer(i) for i in range(c["num_hidden_layers"])]
              for name, c in MODEL_CONFIGS.items()}
    assert sparse == {"top1-step2-tied": [False, True, False, True], "top2-norm-mlp-only-untied": [True, False, True],
                      "top3-raw-mha-untied": [True, True]}
    cfg, ref, ours = make_model_pair("top1-step2-tied")
    assert [type(layer.mlp).__name__ for layer in ours.model.layers] == ["MLP", "SparseMoeBlock"] * 2
    assert [type(layer.mlp).__name__ for layer in ref.model.layers] == ["Qwen2MoeMLP", "Qwen2MoeSparseMoeBlock"] * 2


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_logits_aux_loss_and_gradients_match_transformers(name, padded):
    cfg, ref, ours = make_model_pair(name)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (3, 24), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        mask[1, :5] = 0  # left padding: no loss, no say in the load-balancing loss
        mask[2, :17] = 0
    labels = ids.clone()
    labels[0, :6] = -100  # a prompt that does not count
    labels[1, :6] = labels[2, :18] = -100  # padding, and the first real token (no real token predicts it)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as transformers' generate computes them
    out = ref(ids, attention_mask=mask, position_ids=positions, labels=labels, output_router_logits=True)
    logits, loss = ours(ids, attention_mask=mask, labels=labels)
    real = mask.bool()
    assert (logits[real] - out.logits[real]).abs().max() <= 1e-5
    assert len(ours.last_router_logits) == len(out.router_logits) == sum(map(cfg.is_sparse_layer, range(cfg.num_hidden_layers)))
    for got, want in zip(ours.last_router_logits, out.router_logits):  # sharp routers: logits up to ~15, compare relatively
        got, want = got[real.flatten()], want[real.flatten()].detach()
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.topk(cfg.num_experts_per_tok).indices, want.topk(cfg.num_experts_per_tok).indices)
    assert (ours.last_aux_loss - out.aux_loss).abs() <= 1e-6
    assert (loss - out.loss).abs() <= 1e-5  # LM loss + router_aux_loss_coef * aux loss
    out.loss.backward()
    loss.backward()
    ref_grads = per_expert({n: p.grad for n, p in ref.named_parameters()})
    assert sorted(ref_grads) == sorted(n for n, _ in ours.named_parameters())
    for n, p in ours.named_parameters():
        assert (p.grad - ref_grads[n]).abs().max() <= 1e-5, n
    router = ours.model.layers[-1].mlp.gate.weight.grad
    assert router.abs().max() > 1e-4  # the router learns (through the top-k weights and the aux loss)


def test_kv_cache_decoding_matches_a_full_forward():
    cfg, _, ours = make_model_pair("top2-norm-mlp-only-untied", seed=2)
    ids = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = ours(ids)
        cache = KVCache(cfg, batch_size=2, max_seq_len=12)
        steps = [ours(ids[:, :8], cache=cache)] + [ours(ids[:, i:i + 1], cache=cache) for i in range(8, 12)]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4  # logits of size ~3 from weights of std 0.2: fp32 rounding


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_transformers_to_qwen_min_to_transformers_round_trip_is_exact(name, tmp_path):
    cfg, ref, _ = make_model_pair(name, seed=5)
    ref.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    assert ours.config == cfg.replace(max_position_embeddings=cfg.max_position_embeddings)
    save_pretrained(ours, tmp_path / "qm")
    files = [str(tmp_path / folder / "model.safetensors") for folder in ("hf", "qm")]
    with safe_open(files[0], "pt") as a, safe_open(files[1], "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())  # per-expert names, as in the official MoE checkpoints
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "qm", attn_implementation="eager", experts_implementation="eager")
    assert isinstance(back, Qwen2MoeForCausalLM)
    want = ref.state_dict()
    for key, t in back.state_dict().items():
        assert torch.equal(t, want[key]), key
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        # same tensors, but transformers' fused copies have other strides, hence other matmul rounding
        assert (back(ids).logits - ref(ids).logits).abs().max() <= 1e-5
        assert (ours(ids) - ref(ids).logits).abs().max() <= 1e-5
