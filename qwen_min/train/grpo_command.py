"""`qwen-min grpo`: online RL of an SFT model with GRPO, rewards from the task checkers or a reward model (chapter 11).

    qwen-min grpo --init runs/sft/model --tasks count,sort --group-size 8 --out runs/grpo
    qwen-min grpo --out runs/grpo --resume            # the settings come back from runs/grpo/run.json
"""

from __future__ import annotations

from qwen_min.tasks.checkable import GENERATED
from qwen_min.train.command import add_loop_arguments, add_run_arguments, given
from qwen_min.train.grpo import AGGREGATIONS, DEFAULTS, run_grpo
from qwen_min.train.settings import resolve_settings


def add_arguments(p):
    d = DEFAULTS
    add_run_arguments(p)
    p.add_argument("--init", help="the model to start from, also the frozen reference: an SFT model folder, a .gguf "
                                  "file, or 'default' for the default checkpoint (required unless --resume)")
    p.add_argument("--tasks", help=f"comma-separated checkable tasks whose prompts are trained on (default {d['tasks']}; "
                                   f"any of {','.join(GENERATED)})")
    p.add_argument("--reward-model", help="a reward model folder (Qwen2ForSequenceClassification, one label) to score "
                                          "answers with, instead of the task checkers")
    p.add_argument("--group-size", type=int, help=f"answers sampled per prompt, G (default {d['group_size']}, the report's)")
    p.add_argument("--order", choices=["variance", "plain"],
                   help="prompts with the most varied rewards first, as the report does (default), or a plain shuffle")
    p.add_argument("--n-prompts", type=int, help=f"training prompts per task, from the 'dpo' split (default {d['n_prompts']})")
    p.add_argument("--temperature", type=float, help=f"sampling temperature of the rollouts (default {d['temperature']:g})")
    p.add_argument("--max-new-tokens", type=int, help=f"answer length, rollouts and evaluation (default {d['max_new_tokens']})")
    p.add_argument("--beta", type=float, help=f"KL coefficient against the reference (default {d['beta']:g}, DeepSeekMath's; "
                                              "0 skips the reference)")
    p.add_argument("--epsilon", type=float, help=f"PPO clip range of the ratio (default {d['epsilon']:g})")
    p.add_argument("--aggregation", choices=AGGREGATIONS,
                   help="sequence: GRPO's per-answer mean then batch mean (default); token: DAPO's; constant: Dr. GRPO's")
    p.add_argument("--kl-ratio", action="store_true", default=None,
                   help="weight each token's KL by its ratio (TRL's use_bias_correction_kl)")
    p.add_argument("--iterations", type=int, help=f"optimizer steps per batch of answers, mu (default {d['iterations']})")
    p.add_argument("--eval-prompts", type=int, help=f"held-out test prompts per task (default {d['eval_prompts']})")
    p.add_argument("--eval-seed", type=int, help=f"seed of the held-out prompts (default {d['eval_seed']})")
    p.add_argument("--lora", action="store_true", default=None, help="train LoRA adapters only (merged on save)")
    p.add_argument("--lora-rank", type=int, help=f"(default {d['lora_rank']})")
    p.add_argument("--lora-alpha", type=float, help=f"(default {d['lora_alpha']:g})")
    add_loop_arguments(p, {**d, "batch_size": f"{d['batch_size']} answers, a multiple of --group-size"})


def run(args) -> int:
    settings = resolve_settings(DEFAULTS, given(args, DEFAULTS), args.out, args.resume)
    run_grpo(settings, args.out, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress,
             device=args.device)
    return 0
