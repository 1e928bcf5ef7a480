"""`qwen-min grpo`: online RL of an SFT model with GRPO, rewards from the task checkers or a reward model (chapter 11).

    qwen-min grpo --checkpoint runs/sft --tasks count,sort --group-size 8 --out runs/grpo
    qwen-min grpo --out runs/grpo --resume            # the settings come back from runs/grpo/run.json
"""

from __future__ import annotations

from qwen_min.train.command import add_training_arguments
from qwen_min.train.grpo import SHOWN, GRPOSettings, run_grpo
from qwen_min.train.settings import given, resolve_settings


def add_arguments(p):
    add_training_arguments(p, GRPOSettings, shown=SHOWN)


def run(args) -> int:
    settings = resolve_settings(GRPOSettings(), given(args, GRPOSettings), args.out, args.resume)
    run_grpo(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress,
             device=args.device, shard=args.shard, activation_checkpointing=args.activation_checkpointing)
    return 0
