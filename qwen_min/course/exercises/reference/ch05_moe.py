"""Reference answers of notebooks/05_moe.ipynb's exercises (see __init__.py)."""

import torch

from qwen_min.course.exercises.watch import answer
from qwen_min.model.moe import dispatch, load_balancing_loss, route


@answer("ch05_moe.check_router_weights")
def router_weights(logits, top_k, norm_topk_prob):
    weights, experts = route(logits, top_k, norm_topk_prob)
    return torch.zeros_like(logits).scatter(-1, experts, weights)  # (n, E)


@answer("ch05_moe.check_dispatch")
def grouped_dispatch(x, weights, experts, expert_mlps):
    return dispatch(x, weights, experts, expert_mlps)


@answer("ch05_moe.check_load_balancing_loss")
def aux_loss(router_logits, num_experts, top_k):
    return load_balancing_loss(router_logits, num_experts, top_k)
