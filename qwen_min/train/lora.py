"""LoRA (Hu et al., 2021) from scratch: train a low-rank update of chosen Linear layers, merge it back to plain weights.

    apply_lora(model, rank=8, alpha=16)        # q/k/v/o and MLP projections wrapped; everything else frozen
    ...train: only the lora_A / lora_B parameters get gradients...
    merge_lora(model)                          # plain nn.Linear layers again: W + (alpha / rank) * B @ A
    qm.save_pretrained(model, "out/")          # an ordinary checkpoint; no LoRA code needed to load it

A wrapped layer computes

    y = x W^T + b + (alpha / rank) * (x A^T) B^T        W: (out, in) frozen, A: (rank, in), B: (out, rank)

Design choices
- Initialisation as in the paper and PEFT: A ~ kaiming-uniform(a=sqrt(5)) (nn.Linear's own init),
  B = 0, so the wrapped model starts exactly equal to the original and the first steps move
  away from it smoothly.
- Scaling alpha / rank (the paper's; PEFT's default, not rsLoRA), so changing the rank does not
  change the size of the update at initialisation-scale learning rates.
- No dropout on the LoRA input: fine-tuning runs here are short and small; it would also make the
  merged and unmerged models differ in training mode.
- Targets are picked by the last part of the module name (`q_proj`, `down_proj`, ...), so the same
  call works for every Qwen size. The LM head and embeddings stay frozen (tied on the small models:
  training the head would train the embedding too).
- Merging replaces each wrapper by an `nn.Linear` holding W + scale * B @ A, computed in fp32 and cast
  to W's dtype; the state dict then has exactly the original names, so `save_pretrained` writes an
  ordinary checkpoint. Merged logits equal unmerged ones within 1e-5 in fp32 (tested).
- Only lora_A / lora_B require gradients after `apply_lora`; the trainer's optimizer takes the
  parameters that do, so it holds optimizer state for the adapters only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable rank-r update (alpha / r) * B @ A.

    >>> layer = LoRALinear(nn.Linear(16, 8), rank=4, alpha=8)
    >>> x = torch.randn(2, 16)
    >>> torch.equal(layer(x), layer.base(x))       # B starts at zero: the layer is unchanged
    True
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device, dtype=dtype))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function: weight W + scaling * B @ A."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling  # (out, in)
            linear.weight.copy_((base.weight.float() + delta).to(base.weight.dtype))
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        return linear


def _targets(model: nn.Module, targets) -> list[tuple[nn.Module, str, nn.Linear]]:
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child_name in targets and isinstance(child, nn.Linear):
                found.append((module, child_name, child))
    return found


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets=DEFAULT_TARGETS) -> nn.Module:
    """Wrap every nn.Linear whose name is in `targets` in a LoRALinear and freeze all other parameters (in place)."""
    found = _targets(model, targets)
    if not found:
        raise ValueError(f"no nn.Linear layer named {list(targets)} in the model: nothing to adapt")
    for p in model.parameters():
        p.requires_grad_(False)
    for parent, name, linear in found:
        setattr(parent, name, LoRALinear(linear, rank, alpha))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by its merged nn.Linear (in place); all parameters trainable again."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_parameters(model: nn.Module) -> int:
    """Number of trainable LoRA parameters."""
    return sum(p.numel() for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B))
