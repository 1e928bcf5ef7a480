"""A generic training loop: the same code pretrains (chapter 8), fine-tunes (8) and aligns (9), on a CPU or many GPUs.

    def loss_fn(model, batch):                      # -> (scalar loss to minimise, dict of floats to log)
        _, loss = model(batch["input_ids"], labels=batch["input_ids"])
        return loss, {}

    trainer = Trainer(model, loss_fn, train_batches, TrainConfig(out="runs/x", max_steps=200),
                      eval_sets={"val": val_batches})
    trainer.fit()                                   # runs/x/metrics.jsonl, loss.png, checkpoint.pt

What the caller supplies
- `loss_fn(model, batch) -> (loss, metrics)`; `model` is the (possibly DDP-wrapped) module.
- `train_batches`, a batch source: `next_batch()` returns this process's next micro-batch (a tensor or a
  dict of tensors), `state_dict()` / `load_state_dict(d)` save and restore its position. The position
  is part of the checkpoint, so a resumed run sees exactly the batches it would have seen.
- `eval_sets`: name -> fixed list of batches, so successive validation losses are comparable.

Design choices
- AdamW (betas 0.9 / 0.95) with weight decay on matrices only (ndim >= 2: linear weights and
  embeddings), never on biases or norm gains, which only scale and shift.
- Learning rate: linear warmup from lr / warmup_steps to lr, then a half cosine down to min_lr at
  max_steps (`lr_schedule`), driven by a `LambdaLR` whose state is checkpointed.
- Gradient accumulation: each of the `grad_accum` micro-batch losses is divided by grad_accum, so the
  step's gradient is the mean over micro-batches: the gradient of one batch grad_accum times larger
  when each micro-batch counts the same number of tokens (tested). Micro-batches are weighted equally,
  as in nanoGPT: where they hold different numbers of counted tokens (SFT masks), that is a choice.
- Data parallel: launched by torchrun (RANK / WORLD_SIZE in the environment) each process draws its
  own micro-batches and DDP averages gradients (gloo on CPU, NCCL on CUDA); all but the last micro-batch
  of a step skip the all-reduce (`no_sync`). Logged losses are averaged over processes, so they match a
  single process with the same global batch (tested within 1e-5). Only rank 0 writes files.
- Sharded data parallel (`shard="fsdp"`, shard.py): each decoder layer and the root are wrapped with
  fully_shard, so every process holds 1/world of the weights, gradients and AdamW state; micro-batches
  before the last skip the reduce-scatter (`set_requires_gradient_sync`). Its checkpoints are folders
  written by every rank at once (dcp.py, `checkpoint.dcp/`) that load on any world size. Under fsdp the
  Trainer makes a process group of one when torchrun did not start it, and after `fit` the model is a
  plain module again (full weights on rank 0), so callers save and sample it as before.
- The checkpoint format follows the mode: checkpoint.pt (none, ddp) or checkpoint.dcp/ (fsdp). A run may
  resume in another mode or on another world size: the sharded folder loads into any of them, and
  checkpoint.pt loads into fsdp as full tensors. Once the new checkpoint is in place the other format's,
  older, is deleted, so a resume never picks a stale one. Changing the world size must keep the global
  batch (rows per optimizer step), or the losses would not continue the same run: refused otherwise.
- Precision: bf16 autocast on CUDA (weights, gradients and optimizer state stay fp32), fp32 on CPU.
- Checkpoints hold model, optimizer, scheduler, data position, step and every process's RNG states; they
  are written to a temporary file, fsync'ed, then renamed over the old one (`os.replace` is atomic), so
  a crash mid-write leaves the previous checkpoint loadable. Resuming then gives bit-identical losses on
  CPU (tested); CUDA kernels are not all deterministic, so there it is close, not identical.
- A loss or gradient norm that is nan or inf stops the run before the optimizer step, with an error
  naming the step (weights and checkpoint are left as they were).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from qwen_min.progress import progress_bar
from qwen_min.train import dcp
from qwen_min.train import shard as sharding

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOSS_PLOT = "loss.png"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became nan or inf."""


@dataclass
class TrainConfig:
    out: str | os.PathLike  # run folder: metrics.jsonl, loss.png, checkpoint.pt
    max_steps: int  # optimizer steps; the schedule ends here
    lr: float = 3e-4  # peak learning rate
    min_lr: float | None = None  # floor of the cosine; None: lr / 10
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    eval_every: int = 0  # validate every N steps and at the end; 0: only at the end
    save_every: int = 0  # checkpoint every N steps; the end of a session is always saved
    stop_at: int | None = None  # end this session after this step (the schedule still runs to max_steps)
    resume: bool = False  # continue from out/checkpoint.pt
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU; or "fp32", "bf16"
    flops_per_token: float | None = None  # training FLOPs per token, for MFU (flops.flops_per_token)
    peak_flops: float | None = None  # FLOP/s of one device, for MFU (flops.measure_matmul_peak)
    progress: bool = True  # tqdm bar (rank 0)

    def __post_init__(self):
        if self.min_lr is None:  # the one place of this rule
            self.min_lr = self.lr / 10


def lr_schedule(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then half a cosine down to min_lr.

    >>> [round(lr_schedule(s, lr=1.0, warmup_steps=2, max_steps=6, min_lr=0.1), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1]
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: matrices (ndim >= 2) decay, vectors (biases, norm gains) do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # a tied embedding appears once
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


# ---------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    """Where this process sits: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    """Join the process group torchrun describes in the environment (else a single process).

    device: "cpu", "cuda" or None (CUDA when available). Backend NCCL on CUDA, gloo on CPU.
    """
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if "RANK" not in os.environ:
        return Dist(device=torch.device(device or ("cuda" if cuda else "cpu")))
    rank, world_size, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world_size, torch.device(f"cuda:{local_rank}" if cuda else "cpu"))


def _all_mean(values: torch.Tensor, world: Dist) -> torch.Tensor:
    if world.world_size > 1:
        dist.all_reduce(values)
        values /= world.world_size
    return values


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary file, fsync, then rename over `path`: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_run_folder(out: str | os.PathLike, resume: bool) -> None:
    """The one check before a run starts: a new run never overwrites a checkpoint; --resume needs one."""
    checkpoint, sharded = Path(out) / CHECKPOINT, Path(out) / dcp.SHARDED
    if resume and not checkpoint.is_file() and not dcp.exists(sharded):
        raise FileNotFoundError(f"{checkpoint}: no checkpoint to resume from")
    for path in (checkpoint, sharded):
        if not resume and (path.exists() or dcp.exists(path)):
            raise FileExistsError(f"{path} exists: pass --resume to continue it, or use another --out")


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: one clear line
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states, in types `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- the loop
def default_tokens_in(batch) -> int:
    """Tokens a batch feeds the model: every integer tensor named like `*input_ids` (or the batch itself)."""
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    return sum(v.numel() for k, v in batch.items() if k.endswith("input_ids") and isinstance(v, torch.Tensor))


def rows_per_batch(source) -> int | None:
    """Rows of one micro-batch of a batch source, when it says (its `batch_size`)."""
    return getattr(source, "batch_size", None)


def check_global_batch(saved: dict, rows: int | None, grad_accum: int, world_size: int) -> None:
    """Resuming on another world size keeps the global batch (rows per optimizer step), else the run changes."""
    before, world_before = saved.get("global_batch"), saved.get("world_size")
    if before is None or rows is None or world_before in (None, world_size):
        return
    per_process = grad_accum * world_size
    if before % per_process:
        raise ValueError(f"the checkpoint's global batch of {before} rows per step (written by {world_before} "
                         f"process(es)) is not divisible by {world_size} processes x --grad-accum {grad_accum}: "
                         "choose a world size that divides it")
    if rows * per_process != before:
        raise ValueError(f"{world_size} process(es) x --batch-size {rows} x --grad-accum {grad_accum} = "
                         f"{rows * per_process} rows per step, the checkpoint's run has {before}: resume with "
                         f"--batch-size {before // per_process} to continue it")


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Runs `config.max_steps` optimizer steps of `loss_fn` over `train_batches`; see the module docstring."""

    def __init__(self, model: nn.Module, loss_fn: Callable, train_batches, config: TrainConfig,
                 eval_sets: dict[str, list] | None = None, world: Dist | None = None,
                 tokens_in: Callable[[Any], int] = default_tokens_in, extra_state: dict | None = None,
                 shard: str | None = None, activation_checkpointing: bool = False):
        self.config, self.loss_fn, self.train_batches = config, loss_fn, train_batches
        self.eval_sets, self.tokens_in = eval_sets or {}, tokens_in
        self.world = world or Dist(device=next(model.parameters()).device)
        self.extra_state = extra_state or {}  # saved in the checkpoint as is (e.g. the command's settings)
        self.out = Path(config.out)
        self.model = model.to(self.world.device)
        self.shard = sharding.resolve_shard(shard, self.world.world_size)
        bf16 = config.precision == "bf16" or (config.precision == "auto" and self.world.device.type == "cuda")
        self.own_group = False  # True when this Trainer made the (one-process) group fully_shard needs
        if self.shard == "fsdp":
            self.own_group = sharding.ensure_process_group(self.world.device)
            sharding.shard_model(self.model, self.world.device, activation_checkpointing=activation_checkpointing,
                                 mixed_precision=bf16 and self.world.device.type == "cuda")
        elif activation_checkpointing:
            sharding.checkpoint_layers(self.model)
        self.activation_checkpointing = activation_checkpointing
        self.ddp = (nn.parallel.DistributedDataParallel(self.model, device_ids=[self.world.device.index]
                                                        if self.world.device.type == "cuda" else None)
                    if self.world.world_size > 1 and self.shard == "ddp" else self.model)
        min_lr = config.min_lr
        self.optimizer = torch.optim.AdamW(decay_groups(self.model, config.weight_decay), lr=config.lr,
                                           betas=config.betas, fused=self.world.device.type == "cuda")
        schedule = functools.partial(lr_schedule, lr=1.0, warmup_steps=config.warmup_steps,
                                     max_steps=config.max_steps, min_lr=min_lr / config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.autocast = functools.partial(torch.autocast, self.world.device.type, dtype=torch.bfloat16, enabled=bf16)
        self.step = 0  # optimizer steps done
        self.saved_step = None  # step of the last checkpoint written or loaded
        self.tokens = 0  # tokens trained on, all processes

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        rngs = [None] * self.world.world_size
        if self.world.world_size > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        state = {"step": self.step, "tokens": self.tokens, "scheduler": self.scheduler.state_dict(),
                 "data": self.train_batches.state_dict(), "rng": rngs, "extra": self.extra_state,
                 "world_size": self.world.world_size, "global_batch": self.global_batch()}
        if self.shard != "fsdp":  # sharded: model and optimizer go to the DCP folder, rank by rank
            state |= {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        return state

    def global_batch(self) -> int | None:
        rows = rows_per_batch(self.train_batches)
        return None if rows is None else rows * self.config.grad_accum * self.world.world_size

    def load_state_dict(self, state: dict) -> None:
        check_global_batch(state, rows_per_batch(self.train_batches), self.config.grad_accum, self.world.world_size)
        if "model" in state and self.shard == "fsdp":  # a checkpoint.pt: full tensors into the shards
            sharding.load_full_state(self.model, self.optimizer, state["model"], state["optimizer"])
        elif "model" in state:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_batches.load_state_dict(state["data"])
        self.step, self.tokens = state["step"], state["tokens"]
        self.saved_step = self.step
        if len(state["rng"]) == self.world.world_size:
            set_rng_state(state["rng"][self.world.rank])

    def save(self) -> None:
        state = self.state_dict()  # collective under DDP and FSDP: every rank takes part
        if self.shard == "fsdp":
            dcp.save_sharded(self.out / dcp.SHARDED, self.model, self.optimizer, state, self.world.rank)
            stale = self.out / CHECKPOINT
        else:
            if self.world.is_main:
                save_checkpoint(state, self.out / CHECKPOINT)
            stale = self.out / dcp.SHARDED
        if self.world.is_main and stale.exists():  # the other format's checkpoint is older now
            stale.unlink() if stale.is_file() else shutil.rmtree(stale)
        self.saved_step = self.step

    def load(self) -> None:
        """Resume from out/checkpoint.dcp (any mode, any world size) or out/checkpoint.pt."""
        sharded = self.out / dcp.SHARDED
        if dcp.exists(sharded):
            self.load_state_dict(dcp.read_trainer_state(sharded))  # refuses a changed global batch before any load
            dcp.load_sharded(sharded, self.model, self.optimizer)
        else:
            self.load_state_dict(load_checkpoint(self.out / CHECKPOINT))

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """One optimizer step over grad_accum micro-batches; returns the step's figures (averaged over processes)."""
        cfg, model = self.config, self.ddp
        model.train()
        start = time.perf_counter()
        sums, tokens = {}, 0
        for micro in range(cfg.grad_accum):
            batch = to_device(self.train_batches.next_batch(), self.world.device)
            tokens += self.tokens_in(batch)
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or model is self.model else model.no_sync()
            if self.shard == "fsdp":
                sharding.set_gradient_sync(model, last)
            with sync:
                with self.autocast():
                    loss, metrics = self.loss_fn(model, batch)
                (loss / cfg.grad_accum).backward()
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        names = list(sums)
        figures = _all_mean(torch.tensor([sums[k] / cfg.grad_accum for k in names] + [tokens], dtype=torch.float64),
                            self.world)
        step_figures = dict(zip(names, figures[:-1].tolist()))
        grad_norm = sharding.clip_grad_norm(self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        for name, value in (("loss", step_figures["loss"]), ("gradient norm", grad_norm.item())):
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                saved = "no checkpoint yet" if self.saved_step is None else \
                    f"last checkpoint: step {self.saved_step}, {self.out / CHECKPOINT}"
                raise TrainingDiverged(f"step {self.step + 1}: {name} is {value}; stopped before the optimizer step "
                                       f"({saved}). Lower the learning rate or check the data.")
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.world.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        step_tokens = round(figures[-1].item() * self.world.world_size)
        self.step += 1
        self.tokens += step_tokens
        record = {"step": self.step, **step_figures, "lr": lr, "grad_norm": grad_norm.item(), "tokens": self.tokens,
                  "tokens_per_s": step_tokens / seconds}
        if cfg.flops_per_token and cfg.peak_flops:
            record["mfu"] = record["tokens_per_s"] * cfg.flops_per_token / (cfg.peak_flops * self.world.world_size)
        return record

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Mean loss (and metrics) over each eval set; `val_loss` over all batches, `val_ppl` = exp(val_loss)."""
        self.model.eval()
        results, total = {}, torch.zeros(2, dtype=torch.float64)
        for name, batches in self.eval_sets.items():
            if len(batches) < self.world.world_size:
                raise ValueError(f"eval set {name!r}: {len(batches)} batches for {self.world.world_size} processes")
            sums = 0.0
            mine = batches[self.world.rank::self.world.world_size]
            # under fsdp every forward is a collective: ranks with fewer batches run one more and discard it
            rounds = -(-len(batches) // self.world.world_size) if self.shard == "fsdp" else len(mine)
            for i in range(rounds):
                with self.autocast():
                    loss, metrics = self.loss_fn(self.model, to_device(mine[min(i, len(mine) - 1)], self.world.device))
                if i >= len(mine):
                    continue
                keys = ["loss", *metrics]
                sums = sums + torch.tensor([float(loss), *map(float, metrics.values()), 1.0], dtype=torch.float64)
            if self.world.world_size > 1:
                dist.all_reduce(sums)
            suffix = "" if len(self.eval_sets) == 1 else f"/{name}"
            results.update({f"val_{k}{suffix}": (v / sums[-1]).item() for k, v in zip(keys, sums[:-1])})
            total += torch.stack([sums[0], sums[-1]])
        results["val_loss"] = (total[0] / total[1]).item()
        results["val_ppl"] = math.exp(min(results["val_loss"], 700.0))
        return results

    # ------------------------------------------------------------------ the run
    def fit(self) -> list[dict]:
        """Train until max_steps (or stop_at); returns this session's records (also in out/metrics.jsonl)."""
        try:
            records = self._fit()
            self.release()
        finally:
            if self.own_group:  # the group of one made for fsdp without torchrun
                dist.destroy_process_group()
                self.own_group = False
        return records

    def _fit(self) -> list[dict]:
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / METRICS
        check_run_folder(self.out, cfg.resume)
        if cfg.resume:
            self.load()
            if self.world.is_main and metrics_path.exists():  # drop figures logged after the checkpoint
                kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= self.step]
                metrics_path.write_text("".join(line + "\n" for line in kept))
        else:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            if self.world.is_main:
                metrics_path.write_text("")
        end = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
        bar = progress_bar(total=end, initial=self.step, desc="train", unit="step", enabled=cfg.progress and self.world.is_main)
        records = []
        while self.step < end:
            record = self.train_step()
            if self.eval_sets and (self.step == end or (cfg.eval_every and self.step % cfg.eval_every == 0)):
                record.update(self.evaluate())
            records.append(record)
            if self.world.is_main:  # the figures first: a crash before the checkpoint loses nothing on resume
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if "val_loss" in record:
                    plot_metrics(metrics_path, self.out / LOSS_PLOT)
                bar.update(1)
                bar.set_postfix_str(_postfix(record), refresh=False)
            if self.step == end or (cfg.save_every and self.step % cfg.save_every == 0):
                self.save()
        bar.close()
        return records

    def release(self) -> None:
        """After training: the model unsharded (rank 0 holds it whole), layers no longer checkpointed."""
        if self.shard == "fsdp" and sharding.is_sharded(self.model):
            sharding.release_model(self.model, self.world.rank, self.world.device)
        elif self.activation_checkpointing:
            sharding.uncheckpoint_layers(self.model)


def _postfix(record: dict) -> str:
    text = f"loss {record['loss']:.3f}  {record['tokens_per_s']:,.0f} tok/s"
    if "mfu" in record:
        text += f"  MFU {100 * record['mfu']:.1f}%"
    if "val_loss" in record:
        text += f"  val {record['val_loss']:.3f}"
    return text


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl (one JSON object per step)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_metrics(metrics_path: str | os.PathLike, png_path: str | os.PathLike | None = None, ax=None):
    """Training loss per step and validation loss where measured, on `ax` (or a new figure saved to png_path)."""
    from matplotlib.figure import Figure  # no pyplot: works under any backend, in a notebook or headless

    records = read_metrics(metrics_path)
    fig = None
    if ax is None:
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], lw=1, label="train loss")
    val = [r for r in records if "val_loss" in r]
    ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    if fig is not None and png_path is not None:
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
    return ax

