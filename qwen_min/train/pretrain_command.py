"""`qwen-min pretrain`: train a small Qwen from scratch on data/corpora (chapter 8).

    qwen-min pretrain --out runs/tiny                         # the default CPU recipe: ~10 minutes on 2 cores
    qwen-min pretrain --out runs/tiny --resume                # continue from runs/tiny/checkpoint.pt, settings from run.json
    torchrun --nproc_per_node=2 -m qwen_min pretrain --out runs/ddp           # data parallel, same losses
    torchrun --nproc_per_node=8 -m qwen_min pretrain --config gpu-0.5B --data my_corpora --out runs/05b
"""

from __future__ import annotations

from qwen_min.config import CONFIGS
from qwen_min.train.command import add_loop_arguments, add_run_arguments, given
from qwen_min.train.pretrain import DEFAULT_RECIPE, RECIPES, recipe_settings, run_pretrain
from qwen_min.train.settings import resolve_settings


def add_arguments(p):
    add_run_arguments(p)
    p.add_argument("--config", choices=list(RECIPES),
                   help=f"recipe: model size and every loop setting (default {DEFAULT_RECIPE}: ~10 min on 2 CPU cores)")
    p.add_argument("--model", choices=list(CONFIGS), help="model size (config.py name) instead of the recipe's")
    p.add_argument("--data", help="folder of sources, one sub-folder each (default: data/corpora)")
    p.add_argument("--mix", help="mixture weights, e.g. shakespeare=0.5,python-stdlib=0.5 (sources left out are unused)")
    p.add_argument("--tokenizer", help="'bpe' (train one on the training documents), 'official', or a tokenizer folder")
    p.add_argument("--vocab-size", type=int, help="tokens of the trained BPE tokenizer")
    p.add_argument("--seq-len", type=int, help="tokens per window")
    p.add_argument("--eval-windows", type=int, help="validation windows per source (fixed, evenly spread)")
    p.add_argument("--val-fraction", type=float, help="documents held out per source (default 0.05)")
    add_loop_arguments(p, {})  # the recipe holds the defaults: `--config` names one


def run(args) -> int:
    defaults = recipe_settings(args.config or DEFAULT_RECIPE)
    settings = resolve_settings(defaults, given(args, [k for k in defaults if k != "recipe"]), args.out, args.resume)
    run_pretrain(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress,
                 device=args.device)
    return 0
