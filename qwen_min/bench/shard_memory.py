"""Memory per process of one sharded (FSDP) SFT step, for 1, 2, ... processes on CPU (gloo).

    python -m qwen_min.bench.shard_memory --model 0.5B --world 1 2 --out results/sharding/memory.json
    python -m qwen_min.bench.shard_memory --model tiny --world 1 2      # a few seconds: what the tests run

Each process reports
- the bytes it holds of parameters, gradients (read just before the optimizer step) and AdamW state
  (after it): its shards, so about 1/world of the unsharded figures (FSDP pads each tensor's first
  dimension to a multiple of world, hence "about");
- its resident memory (RSS) after loading and sharding, and the peak RSS during the step, sampled every
  5 ms by a thread (the process-lifetime peak would be the checkpoint loading's, not the step's).

Design choices
- The step is the package's own: `Trainer(..., shard="fsdp").train_step()` with `sft_loss` on real
  conversations of the checkable tasks (official tokenizer, short rows), full fine-tuning (LoRA off), fp32.
- The global batch is fixed (`--rows`, split over the processes), so the runs do the same work.
- Processes are started with torch.multiprocessing and meet through a file store (no port to pick);
  each gets cores / world threads.
- Budget before running the 0.5B: 494M parameters x (4 weights + 4 gradients + 8 AdamW) bytes = 7.9 GB
  unsharded; loading the GGUF file peaks near 3.8 GB per process; with 2 processes each holds ~4 GB of
  training state plus one gathered layer, the gathered root (embedding 0.54 GB and its gradient) and
  activations. Fits 23 GB one world size at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

from qwen_min.checkpoints.load import load
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import GENERATED, make_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.sft import SFTBatches, sft_loss
from qwen_min.train.trainer import Dist, TrainConfig, Trainer

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Samples rss_bytes() every `interval` seconds in a thread while in the `with` block; `.peak` after."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def local_bytes(tensors) -> int:
    """Bytes this process holds of `tensors` (a DTensor counts its local shard, padding included)."""
    total = 0
    for t in tensors:
        if t is None:
            continue
        local = t._local_tensor if isinstance(t, DTensor) else t  # the padded shard actually allocated
        total += local.numel() * local.element_size()
    return total


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    return local_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v) and v.ndim)


def load_model_and_tokenizer(name: str):
    """The model to fine-tune: the official checkpoint for a size name, else a random model of a named config."""
    if name in ("0.5B", "1.5B"):
        return load(name, "fp32", log=lambda msg: None)
    torch.manual_seed(0)
    return Qwen(QwenConfig.from_name(name)), Tokenizer.from_pretrained(official_tokenizer_dir())


class FixedBatches:
    """The same micro-batch every call (one step is measured)."""

    def __init__(self, batch):
        self.batch, self.batch_size = batch, len(batch["input_ids"])

    def next_batch(self):
        return self.batch

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _worker(rank: int, world: int, model_name: str, rows: int, max_len: int, store: str, result_dir: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model, tok = load_model_and_tokenizer(model_name)
    examples = make_examples(GENERATED, "train", rows, seed=0)[:rows]
    batch = SFTBatches(tok, examples, rows // world, max_len, rank=rank, world_size=world).next_batch()
    unsharded = {"parameters": local_bytes(model.parameters())}
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, sft_loss, FixedBatches(batch), TrainConfig(out=out, max_steps=1, lr=1e-5, progress=False),
                          world=Dist(rank, world, torch.device("cpu")), shard="fsdp")
        figures = {"parameters": local_bytes(model.parameters())}
        trainer.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: figures.update(gradients=local_bytes(p.grad for p in model.parameters())))
        rss_before = rss_bytes()
        with PeakRSS() as sampler:
            record = trainer.train_step()
        figures["optimizer"] = optimizer_bytes(trainer.optimizer)
    result = {"rank": rank, "world": world, "model": model_name, "rows": rows, "tokens": int(batch["input_ids"].numel()),
              "loss": record["loss"], "bytes": figures, "unsharded_parameter_bytes": unsharded["parameters"],
              "rss_before_step": rss_before, "peak_rss_step": sampler.peak,
              "max_rss_lifetime": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def measure(model_name: str = "tiny", world: int = 2, rows: int = 4, max_len: int = 64) -> list[dict]:
    """One FSDP SFT step in `world` processes; returns each rank's figures (see the module docstring)."""
    if rows % world:
        raise ValueError(f"--rows {rows} is not divisible by {world} processes")
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.start_processes(_worker, args=(world, model_name, rows, max_len, store, tmp), nprocs=world,
                           start_method="spawn")
        return [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qwen_min.bench.shard_memory", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="0.5B or 1.5B (official checkpoint) or a named config (random)")
    p.add_argument("--world", type=int, nargs="+", default=[1, 2], help="process counts to measure, one after another")
    p.add_argument("--rows", type=int, default=4, help="conversations per step, all processes together")
    p.add_argument("--max-len", type=int, default=64, help="tokens per conversation at most")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    results = []
    for world in args.world:
        start = time.perf_counter()
        ranks = measure(args.model, world, args.rows, args.max_len)
        seconds = time.perf_counter() - start
        results.append({"world": world, "seconds": round(seconds, 1), "ranks": ranks})
        gb = 1e9
        for r in ranks:
            b = r["bytes"]
            print(f"world {world} rank {r['rank']}: parameters {b['parameters'] / gb:.3f} GB, gradients "
                  f"{b['gradients'] / gb:.3f} GB, AdamW {b['optimizer'] / gb:.3f} GB; RSS before the step "
                  f"{r['rss_before_step'] / gb:.2f} GB, peak during it {r['peak_rss_step'] / gb:.2f} GB "
                  f"(loss {r['loss']:.4f}, {seconds:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": args.model, "rows": args.rows, "max_len": args.max_len,
                                        "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
