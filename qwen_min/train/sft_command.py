"""`qwen-min sft`: supervised fine-tuning of a checkpoint on the checkable tasks (chapter 9).

    qwen-min sft --init runs/tiny/model --out runs/sft --max-steps 1500 --lr 3e-3
    qwen-min sft --out runs/sft --resume              # the settings come back from runs/sft/run.json
"""

from __future__ import annotations

from qwen_min.tasks.checkable import GENERATED
from qwen_min.train.command import add_loop_arguments, add_run_arguments, given
from qwen_min.train.settings import resolve_settings
from qwen_min.train.sft import DEFAULTS, run_sft


def add_arguments(p):
    add_run_arguments(p)
    p.add_argument("--init", help="checkpoint to fine-tune: a folder (config.json + safetensors, e.g. from "
                                  "`qwen-min pretrain`), a .gguf file, or 'default' for the default checkpoint")
    p.add_argument("--config", help="start from a randomly initialised model of this named size (tests, experiments)")
    p.add_argument("--tokenizer", help="tokenizer folder or .gguf (default: the --init folder's tokenizer.json, "
                                       "the .gguf itself, else data/qwen2.5)")
    p.add_argument("--tasks", help=f"comma-separated generated tasks (default: all of {','.join(GENERATED)})")
    p.add_argument("--n-train", type=int, help=f"training examples per task (default {DEFAULTS['n_train']})")
    p.add_argument("--n-test", type=int, help=f"held-out test prompts per task (default {DEFAULTS['n_test']})")
    p.add_argument("--handwritten-repeat", type=int,
                   help=f"copies of the handwritten conversations in the training set (default {DEFAULTS['handwritten_repeat']})")
    p.add_argument("--data", action="append", help="extra JSONL file of conversations (repeatable)")
    p.add_argument("--lora", action="store_true", default=None,
                   help="train LoRA adapters only; they are merged into the weights on save")
    p.add_argument("--lora-rank", type=int, help=f"(default {DEFAULTS['lora_rank']})")
    p.add_argument("--lora-alpha", type=float, help=f"(default {DEFAULTS['lora_alpha']:g})")
    p.add_argument("--max-len", type=int, help=f"conversations are cut to this many tokens (default {DEFAULTS['max_len']})")
    p.add_argument("--max-new-tokens", type=int,
                   help=f"reply length in the accuracy evaluation (default {DEFAULTS['max_new_tokens']})")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", default=None,
                   help="skip the checker accuracy before and after training")
    add_loop_arguments(p, {**DEFAULTS, "lr": "7e-6 (2e-4 with --lora)", "warmup_steps": "5%% of --max-steps"})


def run(args) -> int:
    settings = resolve_settings(DEFAULTS, given(args, DEFAULTS), args.out, args.resume)
    run_sft(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress, device=args.device)
    return 0
