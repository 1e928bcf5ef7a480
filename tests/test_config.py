"""QwenConfig: the official sizes, their exact parameter counts, and clear errors."""

import pytest

from qwen_min.config import CONFIGS, OFFICIAL_SIZES, PUBLISHED_PARAMS, QwenConfig

# The fields of each official config.json (Qwen/Qwen2.5-*), written out here independently of
# qwen_min.config: (layers, hidden, intermediate, q heads, kv heads, tied, vocab_size, rms_norm_eps).
OFFICIAL_CONFIG_JSON = {
    "0.5B": (24, 896, 4864, 14, 2, True, 151936, 1e-6), "1.5B": (28, 1536, 8960, 12, 2, True, 151936, 1e-6),
    "3B": (36, 2048, 11008, 16, 2, True, 151936, 1e-6), "7B": (28, 3584, 18944, 28, 4, False, 152064, 1e-6),
    "14B": (48, 5120, 13824, 40, 8, False, 152064, 1e-6), "32B": (64, 5120, 27648, 40, 8, False, 152064, 1e-5),
    "72B": (80, 8192, 29568, 64, 8, False, 152064, 1e-6),
}
# Exact counts, every tensor of the architecture (the tied embedding once).
EXACT = {
    "0.5B": 494_032_768, "1.5B": 1_543_714_304, "3B": 3_085_938_688, "7B": 7_615_616_512,
    "14B": 14_770_033_664, "32B": 32_763_876_352, "72B": 72_706_203_648,
}


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_config_fields_equal_the_official_config_json(name):
    layers, hidden, inter, heads, kv, tied, vocab, eps = OFFICIAL_CONFIG_JSON[name]
    cfg = QwenConfig.from_name(name)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.tie_word_embeddings, cfg.vocab_size, cfg.rms_norm_eps) == \
        (layers, hidden, inter, heads, kv, tied, vocab, eps)


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_exact_parameter_count_equals_transformers(name):
    """transformers' Qwen2ForCausalLM, built on the meta device from the same fields, has the same count."""
    import torch
    import transformers

    cfg = QwenConfig.from_name(name)
    with torch.device("meta"):
        reference = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**cfg.to_hf_dict()))
    counted = {id(p): p.numel() for p in reference.parameters()}  # a tied embedding is one Parameter
    assert sum(counted.values()) == cfg.num_parameters() == EXACT[name]


def test_half_b_count_by_hand():
    # 0.5B = 151936*896 embedding + 24 * 14,912,384 per layer + 896 (the final norm)
    cfg = QwenConfig.from_name("0.5B")
    per_layer = (896 * 896 + 896) + 2 * (896 * 128 + 128) + 896 * 896 + 3 * 896 * 4864 + 2 * 896
    assert per_layer == 14_912_384
    assert cfg.num_parameters() == 151936 * 896 + 24 * per_layer + 896


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_published_figures_within_rounding(name):
    total, non_embedding = PUBLISHED_PARAMS[name]
    cfg = QwenConfig.from_name(name)
    # the report rounds loosely (14B and 32B within 1%)
    assert abs(cfg.num_parameters() / 1e9 - total) / total < 0.01
    assert abs(cfg.num_parameters(non_embedding=True) / 1e9 - non_embedding) / non_embedding < 0.01


def test_moe_active_parameters():
    cfg = QwenConfig.from_name("57B-A14B")
    assert round(cfg.num_parameters() / 1e9, 1) == 57.4  # Qwen2-57B-A14B: 57B total
    assert round(cfg.num_parameters(active=True) / 1e9) == 14  # 14B active
    dense = QwenConfig.from_name("7B")
    assert dense.num_parameters(active=True) == dense.num_parameters()


def test_every_named_config_builds():
    for name in CONFIGS:
        cfg = QwenConfig.from_name(name)
        assert cfg.head_dim * cfg.num_attention_heads >= cfg.hidden_size // 2


def test_unknown_name_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown config 'huge'; known: 0\.5B, 1\.5B"):
        QwenConfig.from_name("huge")


def test_invalid_heads():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        QwenConfig.from_name("tiny", num_attention_heads=4, num_key_value_heads=3)


@pytest.mark.parametrize("name", ["0.5B", "7B", "tiny-moe"])
def test_hf_dict_round_trip(name):
    cfg = QwenConfig.from_name(name)
    assert QwenConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_hf_dict_accepts_transformers_config():
    import transformers

    cfg = QwenConfig.from_name("tiny", rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256})
    hf = transformers.Qwen2Config(**cfg.to_hf_dict())
    assert QwenConfig.from_hf_dict(hf.to_dict()) == cfg


def test_hf_dict_errors_name_the_problem():
    with pytest.raises(ValueError, match="unsupported model_type 'llama'"):
        QwenConfig.from_hf_dict({"model_type": "llama"})
    d = QwenConfig.from_name("tiny").to_hf_dict()
    del d["hidden_size"]
    with pytest.raises(ValueError, match=r"config.json: missing key\(s\) hidden_size"):
        QwenConfig.from_hf_dict(d)


def test_kv_cache_bytes():
    cfg = QwenConfig.from_name("0.5B")
    assert cfg.kv_cache_bytes_per_token(2) == 2 * 24 * 2 * 64 * 2  # K and V, 24 layers, 2 kv heads of 64, bf16
