"""`qwen-min make-pairs`: sample an SFT model, score the answers with the task checkers, write preference pairs.

    qwen-min make-pairs --checkpoint runs/sft/model --out runs/pairs.jsonl --n-samples 8

Design choices
- `--checkpoint` and `--format` name the model as every other command does (`qm.load`: an SFT run folder,
  0.5B, 1.5B or a .gguf file); `--model`, this command's older name, still works for one release.
- Everything that can be refused (the tasks, the checkpoint, the tokenizer) is checked before the model
  is loaded; the pairs file is written once, at the end, so a refused or failed run leaves nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qwen_min.command import add_model_arguments, add_renamed, load_from_args
from qwen_min.progress import progress_bar
from qwen_min.tasks.checkable import GENERATED, make_examples
from qwen_min.tasks.pairs import format_report, make_pairs, write_pairs


def add_arguments(p):
    add_model_arguments(p, checkpoint=None)
    add_renamed(p, "--model", "--checkpoint")
    p.add_argument("--out", type=Path, required=True, help="pairs file to write (JSONL)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the model folder)")
    p.add_argument("--tasks", default=",".join(GENERATED), help=f"comma-separated task names (default: {','.join(GENERATED)})")
    p.add_argument("--split", default="dpo", help="prompt split to sample on (default dpo: prompts SFT never saw)")
    p.add_argument("--prompts-per-task", type=int, default=50,
                   help="prompts of each task (default 50: en_zh's dpo split holds no more)")
    p.add_argument("--n-samples", type=int, default=8, help="answers sampled per prompt (default 8)")
    p.add_argument("--pairs-per-prompt", type=int, default=1, help="pairs kept per prompt, at most (default 1)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts and of the sampling (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.n_samples < 2:
        raise ValueError(f"--n-samples must be at least 2 (a pair needs a right and a wrong answer), got {args.n_samples}")
    examples = make_examples(args.tasks.split(","), args.split, args.prompts_per_task, seed=args.seed)
    model, tok = load_from_args(args, batch=args.n_samples,
                                device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bar = progress_bar(total=len(examples), desc="sampling", unit="prompt", enabled=not args.no_progress)
    pairs, report = make_pairs(model, tok, examples, args.n_samples, args.pairs_per_prompt, args.temperature, args.top_k,
                               args.top_p, args.max_new_tokens, args.seed, progress=bar.update)
    bar.close()
    print(format_report(report))
    if not pairs:
        raise RuntimeError("no pairs: every prompt's answers all passed or all failed (try more samples or a higher temperature)")
    write_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} pairs to {args.out} (skipped: prompts whose {args.n_samples} answers all passed or all failed)")
    return 0
