"""Checkers for the exercises of notebooks/00_overview.ipynb (references: reference/ch00_overview.py).

    from qwen_min.course.exercises.ch00_overview import check_layer_parameters, check_kv_cache_bytes, check_mlp_share
    check_layer_parameters(my_layer_parameters)   # build: my_layer_parameters(cfg) -> parameters of ONE decoder layer
    check_kv_cache_bytes(my_kv_cache_bytes)       # build: my_kv_cache_bytes(cfg, tokens, bytes_per_element) -> bytes
    check_mlp_share(my_prediction)                # predict: my_prediction() -> share of a 7B layer's parameters in its MLP
"""

import random

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch00_overview as ref
from qwen_min.model.attention import KVCache


def _random_dense_configs(n=20, offset=0):
    rng = random.Random(seed(offset))
    for _ in range(n):
        kv = rng.choice([1, 2, 4])
        heads = kv * rng.choice([1, 2, 3, 7])
        head_dim = rng.choice([8, 16, 64, 128])
        yield (QwenConfig(vocab_size=rng.choice([1000, 151936]), hidden_size=heads * head_dim,
                          intermediate_size=rng.randrange(16, 20000), num_hidden_layers=rng.randrange(1, 48),
                          num_attention_heads=heads, num_key_value_heads=kv,
                          tie_word_embeddings=rng.random() < 0.5),)


def check_layer_parameters(student_fn):
    """student_fn(cfg) -> parameters in ONE decoder layer of a dense config."""
    compare("parameters of one decoder layer", student_fn, ref.layer_parameters, _random_dense_configs(),
            hint="list every tensor of a layer: four attention projections, which of them carry a bias, how wide "
                 "k and v are under grouped-query attention, the MLP's matrices, the norms.",
            forbidden=[QwenConfig.num_parameters])


def check_kv_cache_bytes(student_fn):
    """student_fn(cfg, context_tokens, bytes_per_element) -> bytes of KV cache for one sequence."""
    rng = random.Random(seed(1))
    inputs = [(cfg, rng.choice([1, 4096, 32768]), rng.choice([2, 4])) for (cfg,) in _random_dense_configs(offset=1)]
    compare("KV-cache bytes", student_fn, ref.kv_cache_bytes, inputs,
            hint="every layer stores a key and a value for every token, one per kv head (not per query head).",
            forbidden=[QwenConfig.kv_cache_bytes_per_token, KVCache.nbytes])


def check_mlp_share(student_fn):
    """student_fn() -> your prediction (0..1) of the share of a 7B decoder layer's parameters in its SwiGLU MLP."""
    guess = prediction("MLP share of a 7B layer", student_fn)
    measured = ref.measured_mlp_share("7B")
    judge_prediction("MLP share of a 7B layer", guess, round(measured, 3),
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.05,
                     "Compare the MLP's width (intermediate_size) with the attention's; with grouped-query attention "
                     "k and v are much narrower than q and o.")


PACKAGE_EQUIVALENTS = {
    "check_layer_parameters": [lambda cfg: cfg.replace(num_hidden_layers=1).num_parameters()
                               - cfg.replace(num_hidden_layers=0).num_parameters()],
    "check_kv_cache_bytes": [lambda cfg, tokens, nbytes: tokens * cfg.kv_cache_bytes_per_token(nbytes),
                             lambda cfg, tokens, nbytes: KVCache(cfg, 1, tokens, dtype=torch.float16 if nbytes == 2
                                                                 else torch.float32, device="meta").nbytes()],
}
