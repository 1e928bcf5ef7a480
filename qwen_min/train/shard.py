"""Sharded data parallel (FSDP2, "ZeRO-3"): every process keeps 1/world of each parameter, gradient and optimizer state.

    world = setup_distributed("cpu")                  # torchrun: gloo on CPU, NCCL on CUDA
    ensure_process_group(world)                       # one process without torchrun: a group of one
    shard_model(model, world.device, mixed_precision=False, activation_checkpointing=False)
    loss.backward(); clip_grad_norm(model.parameters(), 1.0); optimizer.step()   # DTensor shards throughout
    release_model(model, world)                       # rank 0 holds the plain, full model again

How it works (torch.distributed.fsdp.fully_shard)
- Each parameter becomes a DTensor holding rows [rank * n / world, (rank + 1) * n / world) of its dim 0
  (padded to a multiple of world). Before a layer's forward (and again before its backward) its shards
  are all-gathered into full weights, which are freed after use; after the backward its gradients are
  reduce-scattered, so each process keeps only the gradient rows of its own shard. AdamW then updates
  only those rows: its two moments are sharded too.
- One unit per decoder layer plus the root (embedding, final norm, head): at most one layer's full weights
  exist at a time besides the root's. The tied head (`lm_head.weight` *is* `model.embed_tokens.weight`)
  stays one parameter because both live in the root unit; sharding the embedding on its own would
  untie it.
- Gradient accumulation: `set_requires_gradient_sync(False)` on all but the last micro-batch keeps full,
  unreduced gradients locally (DDP's no_sync); the last backward reduce-scatters their sum.
- Gradient clipping: `clip_grad_norm_` works on DTensor gradients (the norm is a reduction over every
  shard); its result is a DTensor, read with `full_tensor()`.
- Mixed precision on CUDA: bf16 parameters in forward/backward, gradients reduced in fp32, fp32 master
  shards for AdamW (MixedPrecisionPolicy). On CPU everything stays fp32, so the losses equal a single
  process's to rounding (tested within 1e-6).
- Activation checkpointing (optional): each layer's forward runs under `torch.utils.checkpoint` (not
  reentrant), so only its input is kept for the backward and its activations are recomputed then; a
  third more compute for activations of one layer instead of all of them. Parameter names are unchanged.
- torch has no inverse of fully_shard. After training, `release_model` gathers the full weights (a
  collective), removes the hooks fully_shard registered (by the handles it keeps) and restores the
  original classes and plain parameters, so the commands' rank-0-only work after training (samples,
  evaluation, save_pretrained) runs on an ordinary module, without collectives.
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_state_dict
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

SHARD_MODES = ("none", "ddp", "fsdp")


def resolve_shard(shard: str | None, world_size: int) -> str:
    """--shard's value, or its default: "ddp" under torchrun with several processes (today's behaviour), else "none".

    >>> resolve_shard(None, 1), resolve_shard(None, 4), resolve_shard("fsdp", 1)
    ('none', 'ddp', 'fsdp')
    """
    if shard is None:
        return "ddp" if world_size > 1 else "none"
    if shard not in SHARD_MODES:
        raise ValueError(f"unknown --shard {shard!r}; choose one of {', '.join(SHARD_MODES)}")
    return shard


def ensure_process_group(device: torch.device) -> bool:
    """A process group for fully_shard: torchrun's if there is one, else a group of one process (in-memory store).
    Returns True when this call created it (the caller destroys it when done)."""
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)
    return True


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: `model.model.layers` of a Qwen (or of a RewardModel's Qwen)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None and inner is not None:
        layers = getattr(getattr(inner, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no .model.layers to shard layer by layer")
    return list(layers)


def _checkpointed(forward, *args):
    return checkpoint(forward, *args, use_reentrant=False)


def checkpoint_layers(model: nn.Module) -> None:
    """Activation checkpointing: each decoder layer keeps only its input and recomputes the rest in the backward."""
    for layer in decoder_layers(model):
        layer.forward = functools.partial(_checkpointed, layer.forward)


def uncheckpoint_layers(model: nn.Module) -> None:
    for layer in decoder_layers(model):
        if isinstance(layer.__dict__.get("forward"), functools.partial):
            del layer.forward


def shard_model(model: nn.Module, device: torch.device, *, mixed_precision: bool = False,
                activation_checkpointing: bool = False) -> nn.Module:
    """fully_shard each decoder layer, then the root (embedding, final norm, tied head), in place; returns `model`."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision \
        else MixedPrecisionPolicy()
    mesh = dist.device_mesh.init_device_mesh(device.type, (dist.get_world_size(),))
    if activation_checkpointing:  # inside each layer's FSDP hooks: its weights are gathered again for the recompute
        checkpoint_layers(model)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """FSDP's no_sync: without sync the backward keeps full local gradients and reduce-scatters nothing."""
    model.set_requires_gradient_sync(sync)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ over plain or DTensor gradients; returns the total norm before clipping as a plain tensor."""
    norm = nn.utils.clip_grad_norm_(list(parameters), max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def full_state_dict(model: nn.Module, rank0_only: bool = True) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights on CPU: a collective; with rank0_only the other ranks get {}."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=rank0_only))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict) -> None:
    """A checkpoint.pt (full tensors, loaded on every rank) into a sharded model and its optimizer."""
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    # optimizer.state_dict() numbers parameters in param_groups order; set_state_dict wants their names
    by_name = {"state": {order[i]: s for i, s in optimizer_state["state"].items()},
               "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in optimizer_state["param_groups"]]}
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=by_name,
                   options=StateDictOptions(full_state_dict=True))


def release_model(model: nn.Module, rank: int, device: torch.device) -> None:
    """Undo shard_model in place: rank 0's model becomes a plain module with the full weights on `device`;
    the other ranks' keep empty parameters (they are done with it). A collective."""
    state = full_state_dict(model)
    for module in list(model.modules()):
        if not isinstance(module, FSDPModule):
            continue
        fsdp_state = module._get_fsdp_state()
        for handle in {fsdp_state._pre_forward_hook_handle, fsdp_state._post_forward_hook_handle} - {None}:
            handle.remove()  # (one handle for both when fully_shard was given several modules at once)
        for group in fsdp_state._fsdp_param_groups:
            for handles in (group._module_to_pre_save_state_dict_hook_handle,
                            group._module_to_pre_load_state_dict_hook_handle):
                for handle in handles.values():
                    handle.remove()
                handles.clear()
        module.__class__ = type(module).__mro__[type(module)._orig_cls_mro_index]
    uncheckpoint_layers(model)
    for name, param in list(model.named_parameters(remove_duplicate=False)):
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        value = state[name].to(device) if rank == 0 else torch.empty(0, device=device)
        setattr(owner, leaf, nn.Parameter(value, requires_grad=param.requires_grad))
    if hasattr(model, "tie_weights"):
        model.tie_weights()
