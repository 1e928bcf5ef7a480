"""`qwen-min dpo`: direct preference optimisation of an SFT model on preference pairs (chapter 10).

    qwen-min dpo --checkpoint runs/sft --pairs runs/pairs.jsonl --out runs/dpo --beta 0.1 --lr 3e-4
    qwen-min dpo --out runs/dpo --resume              # the settings come back from runs/dpo/run.json
"""

from __future__ import annotations

from qwen_min.train.command import add_training_arguments
from qwen_min.train.dpo import DPOSettings, run_dpo
from qwen_min.train.settings import given, resolve_settings


def add_arguments(p):
    add_training_arguments(p, DPOSettings, shown={"max_steps": "from --epochs"})


def run(args) -> int:
    settings = resolve_settings(DPOSettings(), given(args, DPOSettings), args.out, args.resume)
    run_dpo(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress, device=args.device,
            shard=args.shard, activation_checkpointing=args.activation_checkpointing)
    return 0
