"""Reference answers and the measurement of notebooks/00_overview.ipynb's exercises (see __init__.py)."""

import functools

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.model.qwen import DecoderLayer


@answer("ch00_overview.check_layer_parameters")
def layer_parameters(cfg: QwenConfig) -> int:
    """Parameters of ONE decoder layer: the difference between a one-layer and a zero-layer model."""
    return cfg.replace(num_hidden_layers=1).num_parameters() - cfg.replace(num_hidden_layers=0).num_parameters()


@answer("ch00_overview.check_kv_cache_bytes")
def kv_cache_bytes(cfg: QwenConfig, tokens: int, bytes_per_element: int) -> int:
    return tokens * cfg.kv_cache_bytes_per_token(bytes_per_element)


@answer("ch00_overview.check_mlp_share")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_mlp_share(name: str = "7B") -> float:
    """Share of one decoder layer's parameters that sit in its MLP, counted on a layer built on the meta device."""
    with torch.device("meta"):
        layer = DecoderLayer(QwenConfig.from_name(name), 0)
    mlp = sum(p.numel() for p in layer.mlp.parameters())
    return mlp / sum(p.numel() for p in layer.parameters())
