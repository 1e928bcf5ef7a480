"""`qwen-min bench train`: training tokens/s and MFU of a pretraining recipe, against the matmul peak measured in the
same run.

    qwen-min bench train                      # the default CPU recipe (cpu-tiny)
    qwen-min bench train --recipe gpu-medium  # on a GPU: bf16 autocast, peak measured with bf16 matmuls

Design choices
- The step timed is the real one: `Trainer.train_step` (forward, backward, clipping, AdamW) on batches of
  the recipe's shape. The tokens are random: speed does not depend on what they say, so the benchmark
  needs no corpus or tokenizer.
- MFU = tokens/s x FLOPs per token (train/flops.py: 6N + attention) / peak, where the peak is the best rate of
  large square matmuls measured just before and just after the steps (the better of the two), in the
  dtype training computes in. On a shared machine both move with the load; measured together, their
  ratio is the figure that means something.
"""

from __future__ import annotations

import statistics
import tempfile

import torch

from qwen_min.command import add_renamed
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen
from qwen_min.train.flops import flops_per_token, measure_matmul_peak
from qwen_min.train.pretrain import DEFAULT_RECIPE, RECIPES, lm_loss, recipe_settings
from qwen_min.train.trainer import TrainConfig, Trainer, setup_distributed


class RandomTokens:
    """A batch source of uniformly random token windows (seeded): enough to time a step."""

    def __init__(self, vocab_size: int, seq_len: int, batch_size: int, seed: int = 0):
        self.shape, self.vocab_size = (batch_size, seq_len), vocab_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.randint(0, self.vocab_size, self.shape, generator=self.generator)}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def add_arguments(p):
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES), help="pretraining recipe to time")
    add_renamed(p, "--config", "--recipe", choices=list(RECIPES))
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def run(args):
    recipe = recipe_settings(args.recipe)
    world = setup_distributed(args.device)
    cfg = QwenConfig.from_name(recipe.size, **({"vocab_size": recipe.vocab_size} if recipe.vocab_size else {}))
    torch.manual_seed(0)

    model = Qwen(cfg)
    seq_len, batch = recipe.seq_len, recipe.batch_size
    fpt = flops_per_token(cfg, seq_len)
    peak_before = measure_matmul_peak(world.device)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, max_steps=args.warmup + args.steps, lr=recipe.lr, grad_accum=recipe.grad_accum,
                             flops_per_token=fpt, peak_flops=peak_before, progress=False)
        trainer = Trainer(model, lm_loss, RandomTokens(cfg.vocab_size, seq_len, batch), config, world=world)
        records = [trainer.train_step() for _ in range(args.warmup + args.steps)][args.warmup:]
    peak = max(peak_before, measure_matmul_peak(world.device))
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in records)
    achieved = tokens_per_s * fpt
    if world.is_main:
        dtype = "bf16 autocast" if world.device.type == "cuda" else "fp32"  # TrainConfig(precision="auto")
        print(f"recipe {args.recipe}: model {recipe.size} ({model.num_parameters():,} parameters), batch {batch} x "
              f"{seq_len} x {recipe.grad_accum} accumulation, {dtype} on {world.device} ({torch.get_num_threads()} threads)")
        rows = [("FLOPs per token (6N + attention)", f"{fpt / 1e6:,.2f} M"),
                (f"training tokens/s (median of {args.steps} steps)", f"{tokens_per_s:,.0f}"),
                ("achieved", f"{achieved / 1e9:,.1f} GFLOP/s"),
                ("matmul peak, measured in this run", f"{peak / 1e9:,.1f} GFLOP/s"),
                ("MFU", f"{100 * achieved / peak:.1f}% of the measured peak")]
        for label, value in rows:
            print(f"  {label:42s} {value}")
