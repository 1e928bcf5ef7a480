"""Checkers for the exercises of notebook 05_moe (references: reference/ch05_moe.py).

    from qwen_min.course.exercises import ch05_moe as ex
    ex.check_router_weights(my_router_weights)   # debug: my_router_weights(logits, top_k, norm_topk_prob) -> (n, E), zeros
                                                 #        off the top-k; ex.buggy_router_weights holds the planted bug
    ex.check_dispatch(my_dispatch)               # build: my_dispatch(x, weights, experts, expert_mlps) -> (n, d), each
                                                 #        expert called once
    ex.check_load_balancing_loss(my_loss)        # build: my_loss(router_logits_per_layer, num_experts, top_k) -> scalar
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen_min.course.exercises import ExerciseFailed, compare, seed
from qwen_min.course.exercises.reference import ch05_moe as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.model.layers import MLP
from qwen_min.model.moe import SparseMoeBlock, dispatch, load_balancing_loss, route

_TRANSFORMERS_MOE = ["transformers.models.qwen2_moe.modeling_qwen2_moe"]  # its router, experts and aux loss


def buggy_router_weights(logits, top_k, norm_topk_prob):
    """router logits (n, E) -> (n, E): each chosen expert's routing weight, 0 elsewhere (one planted bug)."""
    top, experts = logits.float().topk(top_k, dim=-1)  # (n, k)
    weights = F.softmax(top, dim=-1)  # (n, k)
    if norm_topk_prob:
        weights = weights / weights.sum(-1, keepdim=True)
    return torch.zeros_like(logits, dtype=torch.float32).scatter(-1, experts, weights).to(logits.dtype)


def check_router_weights(student) -> None:
    """student(router_logits (n, E), top_k, norm_topk_prob) -> (n, E): the weight of each chosen expert, 0 elsewhere."""
    g = torch.Generator().manual_seed(seed(51))
    inputs = [(torch.randn(n, e, generator=g) * s, k, norm)
              for n, e, k, s, norm in [(5, 4, 1, 1.0, False), (7, 8, 2, 2.0, False), (6, 8, 2, 2.0, True),
                                       (4, 6, 3, 0.5, True), (3, 5, 5, 1.0, False)]]
    compare("router_weights", student, ref.router_weights, inputs, atol=1e-6,
            hint="it is right whenever norm_topk_prob is True, and for top_k == E. With norm_topk_prob False, "
                 "should a token's k weights sum to 1? What do they leave out?",
            forbidden=Forbidden.of([route, SparseMoeBlock.forward], modules=_TRANSFORMERS_MOE))


class _CountingExpert(torch.nn.Module):
    """An expert MLP that counts how often it is called."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.mlp, self.calls = mlp, 0

    def forward(self, x):
        self.calls += 1
        return self.mlp(x)


def _dispatch_inputs():
    g = torch.Generator().manual_seed(seed(52))
    inputs = []
    for n, d, e, k in [(6, 8, 4, 1), (13, 8, 6, 2), (9, 12, 5, 3)]:
        torch.manual_seed(seed(52) + n)
        mlps = torch.nn.ModuleList(MLP(d, 6) for _ in range(e))
        logits = torch.randn(n, e, generator=g)
        weights, experts = route(logits, k, norm_topk_prob=False)
        inputs.append((torch.randn(n, d, generator=g), weights, experts, mlps))
    return inputs


@torch.no_grad()
def check_dispatch(student) -> None:
    """student(x (n, d), weights (n, k), experts (n, k), expert_mlps) -> (n, d), each expert run at most once."""
    hint = ("each token's output is its k expert outputs, each scaled by its routing weight; gather the tokens of one "
            "expert into a batch, call the expert once, and add each result back to the row of its token.")
    counted = []

    def counting_student(x, weights, experts, mlps):
        wrapped = torch.nn.ModuleList(_CountingExpert(m) for m in mlps)
        counted.append(wrapped)
        return student(x, weights, experts, wrapped)

    compare("dispatch", counting_student, ref.grouped_dispatch, _dispatch_inputs(), atol=1e-5, hint=hint,
            forbidden=Forbidden.of([dispatch, SparseMoeBlock.forward], modules=_TRANSFORMERS_MOE))
    most = max(c.calls for wrapped in counted for c in wrapped)
    if most > 1:
        raise ExerciseFailed(f"✗ dispatch: right numbers, but one expert was called {most} times: batch each expert's "
                             "tokens and call it once (a loop over experts is fine, a loop over tokens is not).")


def _transformers_aux_loss(router_logits, num_experts, top_k):
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

    return load_balancing_loss_func(tuple(router_logits), num_experts, top_k)


def check_load_balancing_loss(student) -> None:
    """student(router_logits: list of (n, E) per layer, num_experts, top_k) -> the Switch-Transformer aux loss (scalar)."""
    g = torch.Generator().manual_seed(seed(53))
    inputs = []
    for layers, n, e, k, s in [(1, 8, 4, 1, 1.0), (2, 10, 6, 2, 3.0), (3, 7, 8, 2, 0.3), (2, 12, 5, 3, 5.0)]:
        inputs.append(([torch.randn(n, e, generator=g) * s for _ in range(layers)], e, k))
    compare("load_balancing_loss", student, ref.aux_loss, inputs, atol=1e-6,
            hint="pool the tokens of all layers; for each expert you need two averages over the tokens, one from "
                 "the top-k choices and one from the probabilities; recheck the uniform case: top-k routing spread "
                 "evenly must give k.",
            forbidden=Forbidden.of([load_balancing_loss], modules=_TRANSFORMERS_MOE))


PACKAGE_EQUIVALENTS = {
    "check_router_weights": [lambda logits, k, norm: torch.zeros_like(logits).scatter(-1, *reversed(route(logits, k, norm)))],
    "check_dispatch": [dispatch],
    "check_load_balancing_loss": [load_balancing_loss, _transformers_aux_loss],
}
