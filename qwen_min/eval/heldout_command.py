"""`qwen-min eval tasks`: held-out checker accuracy of a checkpoint, one record per prompt; or the paired table.

    qwen-min eval tasks --checkpoint results/rl/dpo --tasks reverse,sort,count,max --out results/rl/samples/dpo.jsonl
    qwen-min eval tasks --compare results/rl/samples/checkpoint.jsonl results/rl/samples/dpo.jsonl ...

Design choices
- Both held-out sets (eval/heldout.py: the training phrasings and the new ones) in one run, greedy, fp32 by
  default (the format the RL stages train in); the samples file is written once, at the end.
- `--compare` reads samples files only (no model): accuracy with Wilson intervals per model and set, each
  model against the one before it, and the last against the first, paired over the same prompts.
- A samples file that exists is kept (the stage is done): `--resume` skips it, without it the run is refused.
"""

from __future__ import annotations

from pathlib import Path

from qwen_min.command import add_model_arguments, load_from_args, log
from qwen_min.eval.heldout import accuracy_table, evaluate_sets, format_table, heldout_sets, read_samples, write_samples
from qwen_min.tasks.checkable import NEW_PHRASINGS


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--tasks", default=",".join(NEW_PHRASINGS), help=f"comma-separated tasks (default {','.join(NEW_PHRASINGS)})")
    p.add_argument("--prompts-per-task", type=int, default=50, help="test prompts per task and set (default 50)")
    p.add_argument("--seed", type=int, default=1, help="seed of the test prompts (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="reply length (default 64)")
    p.add_argument("--batch-size", type=int, default=64, help="prompts generated together (default 64)")
    p.add_argument("--out", type=Path, help="samples file to write (JSONL, one record per prompt)")
    p.add_argument("--resume", action="store_true", help="a samples file that already exists is kept, not redone")
    p.add_argument("--compare", type=Path, nargs="+", metavar="SAMPLES",
                   help="no model: the table of these samples files, each against the one before")


def run(args) -> int:
    if args.compare:
        models = {path.stem: read_samples(path) for path in args.compare}
        print(format_table(accuracy_table(models)))
        if len(models) > 2:
            first, last = next(iter(models)), list(models)[-1]
            print(f"\n{last} against {first}:")
            print(format_table([r for r in accuracy_table({first: models[first], last: models[last]}) if "vs" in r]))
        return 0
    if args.out is None:
        raise ValueError("--out is required (the samples file), unless --compare")
    if args.out.exists():
        if args.resume:
            log(f"{args.out} exists: kept (--resume)")
            return 0
        raise ValueError(f"{args.out} exists: delete it, or pass --resume to keep it")
    sets = heldout_sets(args.tasks.split(","), args.prompts_per_task, args.seed)
    model, tok = load_from_args(args, batch=args.batch_size)
    records = evaluate_sets(model, tok, sets, args.max_new_tokens, args.batch_size)
    write_samples(records, args.out)
    for name in sets:
        marks = [r["right"] for r in records if r["set"] == name]
        log(f"{name}: {sum(marks)}/{len(marks)} right ({sum(marks) / len(marks):.3f})")
    log(f"wrote {args.out}")
    return 0
