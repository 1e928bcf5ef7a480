"""LoRA (Hu et al., 2021) from scratch: train a low-rank update of chosen Linear layers, merge it back to plain weights.

    apply_lora(model, rank=8, alpha=16)        # q/k/v/o and MLP projections wrapped; everything else frozen
    ...train: only the lora_A / lora_B parameters get gradients...
    merge_lora(model)                          # plain nn.Linear layers again: W + (alpha / rank) * B @ A
    qm.save_pretrained(model, "out/")          # an ordinary checkpoint; no LoRA code needed to load it

    save_adapters(model, "runs/dpo/model", base="0.5B")   # adapter.safetensors + adapter.json: megabytes, not gigabytes
    load_adapters(base_model, "runs/dpo/model")           # base_model + the saved update, merged (qm.load does this)

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
- Adapters can also be saved alone (`save_adapters`): adapter.safetensors holds the fp32 lora_A / lora_B
  tensors under the wrapped layers' names, adapter.json the base checkpoint, rank, alpha, targets and the
  sha256 of the tensors file. A run of `qwen-min dpo/grpo --lora` writes its model/ folder this way, so a
  0.5B run is a few megabytes that a repository can hold; `qm.load` reads the base named in adapter.json
  (itself possibly an adapter folder: GRPO's adapters sit on the DPO run) and merges. A local base is
  stored relative to the adapter folder, so a folder of runs can move as a whole. A changed or truncated
  tensors file fails the sha256 check with one line rather than loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter.safetensors", "adapter.json"


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable rank-r update (alpha / r) * B @ A.

    >>> layer = LoRALinear(nn.Linear(16, 8), rank=4, alpha=8)
    >>> x = torch.randn(2, 16)
    >>> torch.equal(layer(x), layer.base(x))       # B starts at zero: the layer is unchanged
    True
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device, dtype=dtype))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)
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


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets=DEFAULT_TARGETS,
               seed: int | None = None) -> nn.Module:
    """Wrap every nn.Linear whose name is in `targets` in a LoRALinear and freeze all other parameters (in place).

    `seed` draws the A matrices from a generator of their own (the training commands pass their --seed), so the
    same command gives the same adapters whatever else used torch's global generator before."""
    found = _targets(model, targets)
    if not found:
        raise ValueError(f"no nn.Linear layer named {list(targets)} in the model: nothing to adapt")
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator(found[0][2].weight.device).manual_seed(seed) if seed is not None else None
    for parent, name, linear in found:
        setattr(parent, name, LoRALinear(linear, rank, alpha, generator))
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


class AdaptersOff:
    """The base model of a LoRA model: the same model, run with every LoRA update scaled by 0 (no copy).
    The reference policy of DPO and GRPO with --lora."""

    def __init__(self, model):
        self.model = model

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kwargs):
        layers = [m for m in self.model.modules() if isinstance(m, LoRALinear)]
        scalings = [m.scaling for m in layers]
        for m in layers:
            m.scaling = 0.0
        try:
            return self.model(*args, **kwargs)
        finally:
            for m, scaling in zip(layers, scalings):
                m.scaling = scaling


# ---------------------------------------------------------------------------- adapters alone on disk
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_adapters(model: nn.Module, folder: str | Path, base: str) -> Path:
    """Write the LoRA tensors of `model` (fp32) and adapter.json {base, rank, alpha, targets, sha256} into `folder`.

    `base` is the checkpoint the adapters were trained on (a `--checkpoint` value): a name such as "0.5B" is
    kept, a local path is stored relative to `folder`.
    """
    from safetensors.torch import save_file

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not layers:
        raise ValueError("the model has no LoRA layers: nothing to save as adapters")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{part}": getattr(m, part).detach().float().cpu().contiguous()
               for name, m in layers.items() for part in ("lora_A", "lora_B")}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    first = next(iter(layers.values()))
    local = Path(base).expanduser()
    config = {"base": os.path.relpath(local.resolve(), folder.resolve()) if local.exists() else str(base),
              "rank": first.rank, "alpha": first.alpha,
              "targets": sorted({name.rsplit(".", 1)[-1] for name in layers}),
              "sha256": _sha256(folder / ADAPTER_WEIGHTS)}
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    return folder


def read_adapter_config(folder: str | Path) -> dict:
    """adapter.json of an adapter folder, its "base" resolved (a path relative to the folder -> a path)."""
    folder = Path(folder)
    path = folder / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text())
        base, rank, alpha, targets = config["base"], int(config["rank"]), float(config["alpha"]), config["targets"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (an adapter folder holds {ADAPTER_CONFIG} and "
                                f"{ADAPTER_WEIGHTS})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: expected JSON with base, rank, alpha and targets ({e})") from None
    if (folder / base).exists():
        base = os.path.normpath(folder / base)
    return {**config, "base": base, "rank": rank, "alpha": alpha, "targets": list(targets)}


def load_adapters(model: nn.Module, folder: str | Path) -> nn.Module:
    """Add the adapters saved in `folder` to `model` (its base checkpoint, loaded) and merge them (in place)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no such file (adapter.json is there, the tensors are not)")
    if "sha256" in config and _sha256(weights) != config["sha256"]:
        raise ValueError(f"{weights}: sha256 differs from the one in {ADAPTER_CONFIG} (truncated or changed file)")
    tensors = load_file(str(weights))
    apply_lora(model, config["rank"], config["alpha"], config["targets"])
    expected = {name for name, p in model.named_parameters() if name.endswith(("lora_A", "lora_B"))}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{weights}: the adapters do not fit this model (missing {missing[:2]}, unexpected {extra[:2]})")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in tensors:
                if p.shape != tensors[name].shape:
                    raise ValueError(f"{weights}: {name} has shape {tuple(tensors[name].shape)}, the model's is "
                                     f"{tuple(p.shape)}")
                p.copy_(tensors[name].to(p.dtype))
    return merge_lora(model)
