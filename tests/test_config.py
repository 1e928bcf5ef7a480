"""QwenConfig: the official sizes, their exact parameter counts, and clear errors."""

import pytest

from qwen_min.config import CONFIGS, OFFICIAL_SIZES, PUBLISHED_PARAMS, QwenConfig

# Exact counts implied by the official config.json files (FACTS.md section 1), computed there
# tensor by tensor from the Hugging Face configurations, independently of this package.
EXACT = {
    "0.5B": 494_032_768, "1.5B": 1_543_714_304, "3B": 3_085_938_688, "7B": 7_614_699_008,
    "14B": 14_768_722_944, "32B": 32_762_565_632, "72B": 72_704_106_496,
}


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_exact_parameter_count(name):
    assert QwenConfig.from_name(name).num_parameters() == EXACT[name]


def test_half_b_count_by_hand():
    # FACTS: 0.5B = 151936*896 embedding + 24 * 14,912,384 per layer + 896
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
