"""Checkers for the exercises of notebooks/00_overview.ipynb."""

import random

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare


def _random_dense_configs(n=20, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        kv = rng.choice([1, 2, 4])
        heads = kv * rng.choice([1, 2, 3, 7])
        head_dim = rng.choice([8, 16, 64, 128])
        yield (QwenConfig(vocab_size=rng.choice([1000, 151936]), hidden_size=heads * head_dim,
                          intermediate_size=rng.randrange(16, 20000), num_hidden_layers=rng.randrange(1, 48),
                          num_attention_heads=heads, num_key_value_heads=kv,
                          tie_word_embeddings=rng.random() < 0.5),)


def _layer_parameters(cfg: QwenConfig) -> int:
    return cfg.replace(num_hidden_layers=1).num_parameters() - cfg.replace(num_hidden_layers=0).num_parameters()


def check_layer_parameters(student_fn):
    """student_fn(cfg) -> parameters in ONE decoder layer of a dense config."""
    compare("parameters of one decoder layer", student_fn, _layer_parameters, _random_dense_configs(),
            hint="q/k/v projections carry a bias, o_proj does not; k and v are num_key_value_heads * head_dim wide; "
                 "the SwiGLU MLP has three matrices; each layer has two RMSNorm weight vectors.")


def check_kv_cache_bytes(student_fn):
    """student_fn(cfg, context_tokens, bytes_per_element) -> bytes of KV cache for one sequence."""
    rng = random.Random(1)
    inputs = [(cfg, rng.choice([1, 4096, 32768]), rng.choice([2, 4])) for (cfg,) in _random_dense_configs(seed=1)]
    compare("KV-cache bytes", student_fn,
            lambda cfg, tokens, nbytes: tokens * cfg.kv_cache_bytes_per_token(nbytes), inputs,
            hint="every layer stores one key and one value vector per kv head (not per query head) for every token.")
