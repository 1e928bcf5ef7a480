"""`qwen-min dpo`: direct preference optimisation of an SFT model on preference pairs (chapter 10).

    qwen-min dpo --init runs/sft/model --pairs runs/pairs.jsonl --out runs/dpo --beta 0.1 --lr 3e-4
    qwen-min dpo --out runs/dpo --resume              # the settings come back from runs/dpo/run.json
"""

from __future__ import annotations

from pathlib import Path

from qwen_min.tasks.checkable import GENERATED
from qwen_min.train.command import add_loop_arguments, add_run_arguments, given
from qwen_min.train.dpo import DEFAULTS, run_dpo
from qwen_min.train.settings import resolve_settings


def add_arguments(p):
    d = DEFAULTS
    add_run_arguments(p)
    p.add_argument("--init", type=Path, help="the SFT model folder to start from and use as the reference (required "
                                             "unless --resume)")
    p.add_argument("--pairs", type=Path, help="preference pairs (JSONL from `qwen-min make-pairs`; required unless --resume)")
    p.add_argument("--beta", type=float, help=f"DPO beta: how far the policy may drift from the reference (default {d['beta']})")
    p.add_argument("--nll-weight", type=float, help="weight of an extra cross-entropy loss on the chosen answers "
                                                   f"(TRL's rpo_alpha; default {d['nll_weight']:g}: plain DPO)")
    p.add_argument("--epochs", type=float, help=f"passes over the training pairs unless --max-steps is given "
                                                f"(default {d['epochs']:g}, as in the report)")
    p.add_argument("--val-fraction", type=float, help=f"pairs held out by prompt for validation (default {d['val_fraction']:g})")
    p.add_argument("--reference", choices=["precomputed", "frozen"],
                   help="reference log-probs computed once before training (default), or a frozen copy run every step")
    p.add_argument("--max-len", type=int, help=f"tokens per conversation, longer ones are cut (default {d['max_len']})")
    p.add_argument("--eval-tasks", help="tasks whose held-out test prompts are checked before and after (default: those "
                                        f"in the pairs; any of {','.join(GENERATED)}); 'none' skips it")
    p.add_argument("--eval-prompts", type=int, help=f"test prompts per task, checker evaluation (default {d['eval_prompts']})")
    p.add_argument("--eval-seed", type=int, help=f"seed of the test prompts (default {d['eval_seed']})")
    p.add_argument("--max-new-tokens", type=int, help=f"reply length in the checker evaluation (default {d['max_new_tokens']})")
    add_loop_arguments(p, {**d, "max_steps": "from --epochs"})


def run(args) -> int:
    settings = resolve_settings(DEFAULTS, given(args, DEFAULTS), args.out, args.resume)
    run_dpo(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress, device=args.device)
    return 0
