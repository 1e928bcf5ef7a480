"""Checkers for the exercises of notebooks/00_overview.ipynb.

    from qwen_min.course.exercises.ch00_overview import check_layer_parameters, check_kv_cache_bytes, check_mlp_share
    check_layer_parameters(my_layer_parameters)   # build: my_layer_parameters(cfg) -> parameters of ONE decoder layer
    check_kv_cache_bytes(my_kv_cache_bytes)       # build: my_kv_cache_bytes(cfg, tokens, bytes_per_element) -> bytes
    check_mlp_share(my_prediction)                # predict: my_prediction() -> share of a 7B layer's parameters in its MLP
"""

import random

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.attention import KVCache
from qwen_min.model.qwen import DecoderLayer


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
            hint="list every tensor of a layer: four attention projections, which of them carry a bias, how wide "
                 "k and v are under grouped-query attention, the MLP's matrices, the norms.",
            forbidden=[QwenConfig.num_parameters])


def check_kv_cache_bytes(student_fn):
    """student_fn(cfg, context_tokens, bytes_per_element) -> bytes of KV cache for one sequence."""
    rng = random.Random(1)
    inputs = [(cfg, rng.choice([1, 4096, 32768]), rng.choice([2, 4])) for (cfg,) in _random_dense_configs(seed=1)]
    compare("KV-cache bytes", student_fn,
            lambda cfg, tokens, nbytes: tokens * cfg.kv_cache_bytes_per_token(nbytes), inputs,
            hint="every layer stores a key and a value for every token, one per kv head (not per query head).",
            forbidden=[QwenConfig.kv_cache_bytes_per_token, KVCache.nbytes])


def measured_mlp_share(name: str = "7B") -> float:
    """Share of one decoder layer's parameters that sit in its MLP, counted on a layer built on the meta device."""
    with torch.device("meta"):
        layer = DecoderLayer(QwenConfig.from_name(name), 0)
    mlp = sum(p.numel() for p in layer.mlp.parameters())
    return mlp / sum(p.numel() for p in layer.parameters())


def check_mlp_share(student_fn):
    """student_fn() -> your prediction (0..1) of the share of a 7B decoder layer's parameters in its SwiGLU MLP."""
    guess = prediction("MLP share of a 7B layer", student_fn)
    measured = measured_mlp_share("7B")
    judge_prediction("MLP share of a 7B layer", guess, round(measured, 3),
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.05,
                     "Compare the MLP's width (intermediate_size) with the attention's; with grouped-query attention "
                     "k and v are much narrower than q and o.")


PACKAGE_EQUIVALENTS = {
    "check_layer_parameters": [_layer_parameters],
    "check_kv_cache_bytes": [lambda cfg, tokens, nbytes: tokens * cfg.kv_cache_bytes_per_token(nbytes),
                             lambda cfg, tokens, nbytes: KVCache(cfg, 1, tokens, dtype=torch.float16 if nbytes == 2
                                                                 else torch.float32, device="meta").nbytes()],
}
