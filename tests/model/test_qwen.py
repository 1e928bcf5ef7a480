"""The full decoder against transformers' Qwen2ForCausalLM: logits, loss and every gradient; parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from qwen_min.config import OFFICIAL_SIZES, QwenConfig
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises import ch04_model as ex
from qwen_min.course.exercises.reference import ch04_model as ref
from qwen_min.model.qwen import Qwen

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
# Random tiny configs: tied and untied, query/kv ratios 1, 2, 3, 7, unusual theta and eps, YaRN.
PARITY_CONFIGS = {
    "tied-gqa2": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, rope_theta=1e4, tie_word_embeddings=True),
    "untied-mqa7": dict(hidden_size=56, num_attention_heads=7, num_key_value_heads=1, head_dim=8, rope_theta=1e6,
                        rms_norm_eps=1e-5, tie_word_embeddings=False),
    "untied-mha": dict(hidden_size=48, num_attention_heads=3, num_key_value_heads=3, rope_theta=2.5e5, rms_norm_eps=1e-4,
                       tie_word_embeddings=False, num_hidden_layers=3),
    "tied-gqa3-yarn": dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2, head_dim=12, rope_theta=5e4,
                           max_position_embeddings=64, rope_scaling=YARN, tie_word_embeddings=True),
    "untied-gqa2-yarn-options": dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=4, rope_theta=1e6,
                                     rms_norm_eps=3e-6, max_position_embeddings=48, tie_word_embeddings=False,
                                     rope_scaling=YARN | {"factor": 3.0, "truncate": False, "beta_fast": 8}),
}
SEQ_LEN = 40  # longer than YaRN's original context of 16


def make_pair(name: str, seed: int = 0, attn_impl: str = "eager"):
    """A transformers Qwen2ForCausalLM with random weights, biases and norm weights, and a qm.Qwen holding the same."""
    cfg = QwenConfig.from_name("tiny", vocab_size=101, intermediate_size=40, **PARITY_CONFIGS[name])
    hf_cfg = Qwen2Config(**cfg.to_hf_dict())
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    ref = Qwen2ForCausalLM(hf_cfg)
    with torch.no_grad():
        for name_, p in ref.named_parameters():
            p.normal_(1.0 if "norm" in name_ else 0.0, 0.2)  # biases and norm weights far from their 0 / 1 init
    ours = Qwen(cfg, attn_impl=attn_impl)
    ours.load_state_dict(ref.state_dict())
    return cfg, ref, ours


@pytest.mark.parametrize("attn_impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_logits_loss_and_gradients_match_transformers(name, attn_impl):
    cfg, ref, ours = make_pair(name, attn_impl=attn_impl)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (2, SEQ_LEN), generator=g)
    labels = ids.clone()
    labels[0, :7] = -100  # a prompt that does not count
    labels[1, 20:25] = -100
    out = ref(ids, labels=labels)
    logits, loss = ours(ids, labels=labels)
    assert (logits - out.logits).abs().max() <= 1e-5
    assert (loss - out.loss).abs() <= 1e-5
    out.loss.backward()
    loss.backward()
    ref_params = dict(ref.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert sorted(names) == sorted(ref_params)  # same parameters, same names (a tied head counted once in both)
    for n, p in ours.named_parameters():
        assert (p.grad - ref_params[n].grad).abs().max() <= 1e-5, n


@pytest.mark.parametrize("name", ["untied-mqa7", "tied-gqa3-yarn"])
def test_left_padded_batch_matches_transformers(name):
    cfg, ref, ours = make_pair(name, seed=4)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, cfg.vocab_size, (3, 30), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :9] = 0
    mask[2, :25] = 0
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as transformers' generate computes them
    with torch.no_grad():
        want = ref(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert (got - want)[real].abs().max() <= 1e-5


def test_tied_head_stays_tied_through_loading_and_training():
    cfg = QwenConfig.from_name("tiny", vocab_size=50)
    source = Qwen(cfg).state_dict()
    source.pop("lm_head.weight")  # as in a Hugging Face file of a tied model
    with torch.device("meta"):
        model = Qwen(cfg)
    model.load_state_dict(source, assign=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.num_parameters() == cfg.num_parameters()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.arange(10)[None], labels=torch.arange(10)[None])[1].backward()
    opt.step()
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_parameter_counts_of_official_sizes(name):
    cfg = QwenConfig.from_name(name)
    with torch.device("meta"):
        ours = Qwen(cfg)
        ref = Qwen2ForCausalLM(Qwen2Config(**cfg.to_hf_dict()))
    counted = sum(p.numel() for p in ours.parameters())
    assert counted == sum(p.numel() for p in ref.parameters()) == cfg.num_parameters()
    assert sorted(ours.state_dict()) == sorted(ref.state_dict())


def test_model_exercise_checkers_reject_wrong_answers():
    def rms_norm_bf16(x, weight, eps):
        x32 = x.float()
        return weight * (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)

    ex.check_rms_norm_bf16(rms_norm_bf16)
    with pytest.raises(ExerciseFailed, match="rms_norm_bf16.*wrong"):  # the planted bug: the mean of squares in bf16
        ex.check_rms_norm_bf16(ex.buggy_rms_norm_bf16)
    with pytest.raises(ExerciseFailed, match="rms_norm_bf16.*wrong"):  # the weight applied in fp32, cast afterwards
        ex.check_rms_norm_bf16(lambda x, w, eps: (w.float() * x.float() * torch.rsqrt(
            x.float().pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype))
    with pytest.raises(ExerciseFailed, match="rms_norm_bf16.*wrong"):  # returns fp32
        ex.check_rms_norm_bf16(lambda x, w, eps: w.float() * x.float() * torch.rsqrt(
            x.float().pow(2).mean(-1, keepdim=True) + eps))


def test_initial_loss_prediction():
    measured = ref.measured_initial_loss()
    assert abs(measured - math.log(5000)) < 0.1  # near-zero logits: a uniform guess over the vocabulary
    ex.check_initial_loss(lambda: 8.5)
    with pytest.raises(ExerciseFailed, match="you predicted 0"):
        ex.check_initial_loss(lambda: 0)

