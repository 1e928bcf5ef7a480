"""Mixture-of-experts feed-forward block of Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B; the design of Qwen2.5-Turbo/Plus).

    logits  = gate(x)                                  # (n, E) one score per routed expert
    w, e    = top_k(softmax(logits in fp32))           # k experts per token, their probabilities
    w       = w / w.sum() if norm_topk_prob            # Qwen2-MoE configs keep the raw probabilities
    y       = sum_j w_j * expert_{e_j}(x)              # fine-grained SwiGLU experts, moe_intermediate_size wide
    y       = y + sigmoid(shared_expert_gate(x)) * shared_expert(x)   # an always-on expert, gated per token

Design choices
- Identical math to transformers' `Qwen2MoeSparseMoeBlock` (5.x): softmax in fp32 over
  *all* experts before top-k, top-k weights cast back to the activation dtype, the
  shared expert scaled by a learned sigmoid gate, routed output + shared output.
- One `nn.Linear`-based SwiGLU (`model.MLP`) per expert, so parameter names are the
  per-expert names of the official checkpoints: `mlp.gate.weight`,
  `mlp.experts.{e}.{gate,up,down}_proj.weight`, `mlp.shared_expert.*`, `mlp.shared_expert_gate.weight`.
  transformers 5.x fuses the experts in memory (`experts.gate_up_proj` (E, 2I, d),
  `experts.down_proj` (E, d, I)) but converts to and from these names when it loads
  and saves, so a plain state dict of this module is what its `from_pretrained` reads.
- Dispatch has no Python loop over tokens: the (token, choice) slots are sorted by
  expert, each expert runs once on the contiguous batch of its tokens, and the
  weighted results are scattered back with `index_add_`. The loop is over experts
  (E iterations, E = 60 or 64 in the official models), as in transformers.
  Experts that receive no token still run on an empty batch: their gradient is then
  zero rather than None, like a slice of transformers' fused tensor.
- `shared_expert_intermediate_size == 0` means no shared expert (the config's convention);
  transformers would build a zero-width one whose output is 0.
- The block returns its router logits beside its output; the model collects them
  for `load_balancing_loss`, the Switch-Transformer auxiliary loss exactly as
  transformers' `load_balancing_loss_func` computes it (quirks noted there).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from qwen_min.config import QwenConfig
from qwen_min.model.layers import MLP


def route(router_logits: torch.Tensor, top_k: int, norm_topk_prob: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `top_k` experts per token: (weights (n, k) in the logits' dtype, expert ids (n, k)).

    The softmax runs in fp32 over all experts, so without `norm_topk_prob` the k weights
    sum to less than 1 (the probability mass of the experts not chosen is dropped).

    >>> w, e = route(torch.tensor([[2.0, 0.0, 1.0, -1.0]]), top_k=2, norm_topk_prob=False)
    >>> e, w.round(decimals=4)
    (tensor([[0, 2]]), tensor([[0.6439, 0.2369]]))
    >>> route(torch.tensor([[2.0, 0.0, 1.0, -1.0]]), top_k=2, norm_topk_prob=True)[0].round(decimals=4)
    tensor([[0.7311, 0.2689]])
    """
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)  # (n, E)
    weights, experts = torch.topk(probs, top_k, dim=-1)  # (n, k), (n, k): largest first
    if norm_topk_prob:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), experts


def dispatch(x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor, expert_mlps: Sequence[nn.Module]) -> torch.Tensor:
    """sum_j weights[i, j] * expert_mlps[experts[i, j]](x[i]) for every token i, each expert run once on its tokens.

    x (n, d), weights (n, k), experts (n, k) -> (n, d).

    >>> mlps = [lambda h, s=s: h * s for s in (1.0, 10.0, 100.0)]   # toy "experts" that scale
    >>> x = torch.ones(2, 1)
    >>> dispatch(x, torch.tensor([[0.5, 0.5], [1.0, 0.25]]), torch.tensor([[0, 2], [1, 0]]), mlps)
    tensor([[50.5000],
            [10.2500]])
    """
    n, k = experts.shape
    slots = experts.flatten()  # (n * k,): slot s is choice s % k of token s // k
    order = torch.argsort(slots, stable=True)  # slots grouped by expert, tokens ascending inside a group
    token_of = order // k  # (n * k,): the token each sorted slot belongs to
    counts = torch.bincount(slots, minlength=len(expert_mlps)).tolist()  # tokens per expert
    batches = x[token_of].split(counts)  # E contiguous batches (n_e, d)
    out = torch.cat([mlp(batch) for mlp, batch in zip(expert_mlps, batches)])  # (n * k, d): one call per expert
    out = out * weights.flatten()[order, None]  # scale each slot by its routing weight
    return torch.zeros_like(x).index_add_(0, token_of, out)  # sum the k slots of every token


class SparseMoeBlock(nn.Module):
    """Routed fine-grained experts plus a gated shared expert; a drop-in for the dense MLP.

    >>> cfg = QwenConfig.from_name("tiny-moe")
    >>> block = SparseMoeBlock(cfg)
    >>> y, router_logits = block(torch.randn(2, 5, cfg.hidden_size))
    >>> y.shape, router_logits.shape                   # (b, t, hidden), (b * t, num_experts)
    (torch.Size([2, 5, 64]), torch.Size([10, 8]))
    """

    def __init__(self, cfg: QwenConfig):
        super().__init__()
        self.num_experts, self.top_k, self.norm_topk_prob = cfg.num_experts, cfg.num_experts_per_tok, cfg.norm_topk_prob
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False)  # the router
        self.experts = nn.ModuleList(MLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(cfg.num_experts))
        self.shared_expert = self.shared_expert_gate = None
        if cfg.shared_expert_intermediate_size:
            self.shared_expert = MLP(cfg.hidden_size, cfg.shared_expert_intermediate_size)
            self.shared_expert_gate = nn.Linear(cfg.hidden_size, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, t, hidden) -> (output (b, t, hidden), router logits (b * t, num_experts))."""
        b, t, d = x.shape
        x = x.reshape(b * t, d)  # (n, d): routing is per token, batch and time do not matter
        router_logits = self.gate(x)  # (n, E)
        weights, experts = route(router_logits, self.top_k, self.norm_topk_prob)  # (n, k), (n, k)
        out = dispatch(x, weights, experts, self.experts)  # (n, d)
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)  # (n, 1) * (n, d)
        return out.view(b, t, d), router_logits


def load_balancing_loss(router_logits: torch.Tensor | Sequence[torch.Tensor], num_experts: int, top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch-Transformer load-balancing loss, as transformers' `load_balancing_loss_func` computes it.

    router_logits: one (b * t, E) tensor per sparse layer (or a single one); attention_mask: (b, t), 0 = padding.
    Over all layers and real tokens, f_e = share of tokens with expert e among their top-k
    (the f_e sum to top_k) and P_e = mean router probability of e; loss = E * sum_e f_e * P_e.
    It is top_k when routing is uniform and grows as load concentrates; only P_e carries a gradient.
    Quirks kept for parity: this softmax runs in the logits' dtype (the router's runs in fp32),
    and layers are pooled before the product (not averaged per layer).

    >>> round(load_balancing_loss([torch.zeros(6, 4)], num_experts=4, top_k=2).item(), 4)  # uniform probabilities
    2.0
    >>> round(load_balancing_loss([torch.tensor([[9.0, 0, 0, 0]] * 6)], num_experts=4, top_k=1).item(), 4)  # collapsed
    3.9985
    """
    logits = torch.stack(list(router_logits)) if not torch.is_tensor(router_logits) else router_logits  # (L, n, E)
    if logits.dim() == 2:
        logits = logits[None]
    n = logits.shape[1]
    probs = F.softmax(logits, dim=-1)  # (L, n, E)
    chosen = torch.topk(probs, top_k, dim=-1).indices  # (L, n, k)
    routed = F.one_hot(chosen, num_experts).sum(-2).float()  # (L, n, E): 1 where e is among the token's top-k
    if attention_mask is None:
        token_weight = torch.ones(n, device=logits.device)
    else:
        if attention_mask.numel() != n:
            raise ValueError(f"attention_mask has {attention_mask.numel()} entries but the router saw {n} tokens")
        token_weight = attention_mask.reshape(n).to(device=logits.device, dtype=torch.float32)  # (n,)
    rows = token_weight.sum() * logits.shape[0]  # real tokens, counted once per layer
    tokens_per_expert = (routed * token_weight[:, None]).sum((0, 1)) / rows  # (E,) f_e
    prob_per_expert = (probs.float() * token_weight[:, None]).sum((0, 1)) / rows  # (E,) P_e
    return num_experts * (tokens_per_expert * prob_per_expert).sum()
