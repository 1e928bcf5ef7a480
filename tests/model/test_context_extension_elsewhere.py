"""Position-extension methods outside the causal LM's forward: config.json for transformers, GGUF files, the reward
model and GPTQ's layer-by-layer calibration either carry the method exactly or refuse it in one clear error."""

from __future__ import annotations

import pytest
import torch

import qwen_min as qm
from qwen_min.model.reward import RewardModel
from qwen_min.model.rope import ntk_theta, rope_frequencies
from qwen_min.quant.gptq import gptq_quantize_layers

DCA = {"chunk_size": 12, "local_size": 4}  # chunk_len 8: a 40-token input spans five chunks


def tiny(**kw):
    torch.manual_seed(0)
    return qm.QwenConfig.from_name("tiny", vocab_size=64, **kw)


def test_to_hf_dict_writes_ntk_as_the_raised_base_transformers_knows():
    from transformers import Qwen2Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = tiny(rope_scaling={"rope_type": "ntk", "factor": 4.0}, max_position_embeddings=4096)
    d = cfg.to_hf_dict()
    assert "rope_scaling" not in d and d["rope_parameters"]["rope_type"] == "default"
    assert d["rope_theta"] == pytest.approx(ntk_theta(cfg.head_dim, cfg.rope_theta, 4.0))
    hf = Qwen2Config(**d)
    inv_freq, scale = ROPE_INIT_FUNCTIONS["default"](hf, "cpu") if "default" in ROPE_INIT_FUNCTIONS else (None, None)
    if inv_freq is None:  # transformers >= 5 computes default frequencies inside the rotary module
        inv_freq = 1.0 / hf.rope_parameters["rope_theta"] ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim)
    assert torch.allclose(inv_freq.float(), rope_frequencies(cfg)[0], rtol=1e-6)


@pytest.mark.parametrize("extension", [
    {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
    {"dual_chunk_attention_config": DCA},
])
def test_save_gguf_refuses_what_it_cannot_write(extension, tmp_path):
    model = qm.Qwen(tiny(**extension))
    with pytest.raises(ValueError, match="save_gguf cannot write"):
        qm.save_gguf(model, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()  # refused before anything is written


def test_save_gguf_writes_ntk_as_its_base(tmp_path):
    torch.manual_seed(0)
    cfg = qm.QwenConfig.from_name("tiny", vocab_size=151936, intermediate_size=192,
                                  rope_scaling={"rope_type": "ntk", "factor": 4.0}, max_position_embeddings=4096)
    model = qm.Qwen(cfg).eval()
    loaded = qm.from_pretrained(qm.save_gguf(model, tmp_path / "ntk.gguf"))
    assert loaded.config.rope_theta == pytest.approx(ntk_theta(cfg.head_dim, cfg.rope_theta, 4.0))
    ids = torch.randint(0, 1000, (1, 30))
    assert torch.allclose(loaded(ids), model(ids), atol=1e-5)


def test_reward_model_honours_dual_chunk_attention():
    cfg = tiny(dual_chunk_attention_config=DCA, tie_word_embeddings=False)
    rm = RewardModel(cfg)
    lm = qm.Qwen(cfg)  # the same decoder, with the score head as row 0 of its LM head
    lm.model.load_state_dict(rm.model.state_dict())
    with torch.no_grad():
        lm.lm_head.weight[0] = rm.score.weight[0]
    ids = torch.randint(0, 64, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        assert torch.allclose(rm.scores(ids, mask), lm(ids, attention_mask=mask)[..., 0], atol=1e-5)
        plain = RewardModel(tiny(tie_word_embeddings=False))
        plain.load_state_dict(rm.state_dict())
        assert not torch.allclose(rm.scores(ids), plain.scores(ids), atol=1e-3)  # five chunks: DCA changes scores


def test_gptq_calibrates_on_the_inputs_the_dca_model_sees():
    model = qm.Qwen(tiny(dual_chunk_attention_config=DCA, intermediate_size=192)).eval()
    ids = torch.randint(0, 64, (2, 40))
    seen = []
    hook = model.model.layers[0].mlp.gate_proj.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    with torch.no_grad():
        model(ids)  # seen[0]: the input of layer 0's MLP in the model's own forward
    gptq_quantize_layers(model, ids, group_size=32, batch_size=2, progress=False)  # seen[1]: GPTQ's, before quantizing
    hook.remove()
    assert torch.allclose(seen[0], seen[1], atol=1e-5)
