"""`qwen-min pretrain`: train a small Qwen from scratch on data/corpora (chapter 8).

    qwen-min pretrain --out runs/tiny                         # the default CPU recipe: ~10 minutes on 2 cores
    qwen-min pretrain --out runs/tiny --resume                # continue from runs/tiny/checkpoint.pt, settings from run.json
    torchrun --nproc_per_node=2 -m qwen_min pretrain --out runs/ddp           # data parallel, same losses
    torchrun --nproc_per_node=8 -m qwen_min pretrain --recipe gpu-0.5B --data my_corpora --out runs/05b
"""

from __future__ import annotations

from qwen_min.train.command import add_training_arguments
from qwen_min.train.pretrain import DEFAULT_RECIPE, PretrainSettings, recipe_settings, run_pretrain
from qwen_min.train.settings import given, resolve_settings


def add_arguments(p):
    add_training_arguments(p, PretrainSettings, renamed={"--config": "--recipe", "--model": "--size"},
                           shown={"recipe": f"{DEFAULT_RECIPE}; the other settings' defaults below are its own"})


def run(args) -> int:
    settings = resolve_settings(recipe_settings(args.recipe or DEFAULT_RECIPE), given(args, PretrainSettings), args.out,
                                args.resume)
    run_pretrain(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress,
                 device=args.device, shard=args.shard, activation_checkpointing=args.activation_checkpointing)
    return 0
