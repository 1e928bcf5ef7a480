"""`qwen-min sft`: supervised fine-tuning of a checkpoint on the checkable tasks (chapter 9).

    qwen-min sft --checkpoint runs/tiny --out runs/sft --max-steps 1500 --lr 3e-3
    qwen-min sft --out runs/sft --resume              # the settings come back from runs/sft/run.json
"""

from __future__ import annotations

from qwen_min.train.command import add_training_arguments
from qwen_min.train.settings import given, resolve_settings
from qwen_min.train.sft import SHOWN, SFTSettings, run_sft


def add_arguments(p):
    add_training_arguments(p, SFTSettings, shown=SHOWN, renamed={"--config": "--size"})


def run(args) -> int:
    settings = resolve_settings(SFTSettings(), given(args, SFTSettings), args.out, args.resume)
    run_sft(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress, device=args.device,
            shard=args.shard, activation_checkpointing=args.activation_checkpointing)
    return 0
