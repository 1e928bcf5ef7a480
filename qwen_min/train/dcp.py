"""Distributed checkpoints: each process writes its own shard of the model and optimizer (torch.distributed.checkpoint).

    save_sharded(out / SHARDED, model, optimizer, trainer_state, rank)    # a collective: every rank calls it
    trainer_state = load_sharded(out / SHARDED, model, optimizer)         # any world size, sharded or not

Layout of `checkpoint.dcp/`
    .metadata            which byte ranges of which file hold which slice of each tensor (written by rank 0)
    __0_0.distcp, ...    one file per rank: its shards of every parameter and of AdamW's two moments
    trainer.pt           step, tokens, scheduler, data position, every rank's RNG states, the run's
                         extra state, the world size and global batch, each tensor's full shape and
                         the model's config.json (for `qwen-min consolidate`)

Design choices
- Model and optimizer go through `get_state_dict` / `set_state_dict`, which name every tensor by its
  parameter's name (not by position), for plain and FSDP-sharded modules alike. DCP stores each tensor
  as slices of the full tensor, so loading reshards: a checkpoint written by 2 processes loads into 1, 3
  or 8 (or into an unsharded model), each reading only the slices it needs.
- Atomic: everything is written to `checkpoint.dcp.tmp/` (DCP fsyncs each file), then rank 0 renames the
  old folder to `.old`, the new one into place, and deletes `.old`. A crash leaves either the complete
  old checkpoint or the complete new one; `recover` puts `.old` back if the crash fell between the renames.
- Bad input is refused before anything is loaded or overwritten: a folder without trainer.pt, one whose
  tensors have other shapes (another model), or one missing a rank's file, each with one line.
- Multi-node runs need `--out` on a filesystem every node sees (each rank writes its own file there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

SHARDED = "checkpoint.dcp"
TRAINER_FILE = "trainer.pt"
FORMAT = "qwen-min sharded checkpoint 1"


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def _single_process_quietly():
    """DCP warns on every single-process save or load, even when asked for one (no_dist=True): silence that one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def full_shapes(model: nn.Module) -> dict[str, list[int]]:
    """name -> full shape of every tensor of the model's state dict (a DTensor's .shape is its full shape)."""
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def recover(folder: str | os.PathLike) -> None:
    """A crash between the two renames of a save leaves `folder.old` and no `folder`: put the old one back."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)


def exists(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return folder.is_dir() or folder.with_name(folder.name + ".old").is_dir()


def save_sharded(folder: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict,
                 rank: int) -> None:
    """Write model + optimizer shards (every rank) and trainer_state (rank 0), then swap the folder in atomically."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    if rank == 0 and tmp.exists():  # the remains of a crashed save
        shutil.rmtree(tmp)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _single_process_quietly():
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=tmp, no_dist=not dist.is_initialized())
    if rank == 0:
        config = model.config.to_hf_dict() if hasattr(getattr(model, "config", None), "to_hf_dict") else None
        meta = {**trainer_state, "format": FORMAT, "shapes": full_shapes(model), "config": config}
        with open(tmp / TRAINER_FILE, "wb") as f:
            torch.save(meta, f)
            f.flush()
            os.fsync(f.fileno())
        recover(folder)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def read_trainer_state(folder: str | os.PathLike) -> dict:
    """trainer.pt of a sharded checkpoint, with one clear error for a folder that is not one."""
    folder = Path(folder)
    recover(folder)
    path = folder / TRAINER_FILE
    if not path.is_file() or not (folder / ".metadata").is_file():
        raise ValueError(f"{folder}: not a qwen-min sharded checkpoint (no {TRAINER_FILE} or .metadata)")
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: one clear line
        raise ValueError(f"{path}: not readable ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a qwen-min sharded checkpoint (format {meta.get('format')!r})")
    return meta


def check_complete(folder: str | os.PathLike) -> None:
    """Every file the metadata points into is there (a rank's file can go missing when copying a run)."""
    folder = Path(folder)
    files = sorted({info.relative_path for info in FileSystemReader(str(folder)).read_metadata().storage_data.values()})
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing shard file(s) {', '.join(missing)} of {len(files)}: the checkpoint "
                                "is incomplete (copy every file of the folder)")


def check_same_model(shapes: dict[str, list[int]], model: nn.Module, folder: str | os.PathLike) -> None:
    """The checkpoint's tensors have this model's names and full shapes."""
    here = full_shapes(model)
    for name in sorted(set(shapes) | set(here)):
        if shapes.get(name) != here.get(name):
            raise ValueError(f"{folder} holds another model: {name} is {shapes.get(name) or 'absent'} there, "
                             f"{here.get(name) or 'absent'} here")


def load_sharded(folder: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load model and optimizer (sharded or plain, any world size) in place; returns the trainer state."""
    meta = read_trainer_state(folder)
    check_same_model(meta["shapes"], model, folder)
    check_complete(folder)
    model_state, optim_state = get_state_dict(model, optimizer)  # this layout: the slices each rank reads
    state = {"model": model_state, "optimizer": optim_state}
    with _single_process_quietly():
        dcp.load(state, checkpoint_id=Path(folder), no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return meta


def load_model_weights(folder: str | os.PathLike, model: nn.Module) -> None:
    """Only the weights, into a plain (unsharded) model in one process: what `qwen-min consolidate` needs."""
    meta = read_trainer_state(folder)
    check_same_model(meta["shapes"], model, folder)
    check_complete(folder)
    stored = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    # in place: the state dict's tensors are the parameters (a tied head may be stored once, as the embedding)
    state = {"model": {k: v for k, v in model.state_dict().items() if f"model.{k}" in stored}}
    with _single_process_quietly():
        dcp.load(state, checkpoint_id=Path(folder), no_dist=True)
