"""`qwen-min eval perplexity --checkpoint 0.5B --formats bf16,int8,int4,int4-gptq --out FILE.json`.

What quantisation costs, in one run: perplexity on held-out text of `data/corpora` for each weight
format, each loaded fresh from the checkpoint, and each format's ratio to bf16 (the reference).

Design choices
- Formats: fp32, bf16 (the checkpoint's weights as loaded), int8 / int4 (`qm.quantize`,
  round-to-nearest, int4 in groups of 128) and int4-gptq (the same format, codes chosen by
  GPTQ on `calibration_ids`: the *training* documents of the three corpora, 8,192 tokens).
- Held-out text: `held_out_ids`, python-stdlib and shakespeare, `--tokens` each (default 2,048)
  in windows of 512 (the perplexity.py protocol). The README's quality table is this command's
  output for the 0.5B, committed in results/quant/.
- The JSON is written once, at the end, through a temporary name: no half-written result.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from qwen_min.checkpoints.load import checkpoint_path, load
from qwen_min.command import CHECKPOINT_HELP, log
from qwen_min.eval.perplexity import CALIBRATION_TOKENS, calibration_ids, held_out_ids, perplexity
from qwen_min.formats import FORMATS, check_format

HELD_OUT = ("python-stdlib", "shakespeare")
MEASURED = tuple(f for f in FORMATS if f != "auto")  # auto is a choice of speed, not a row of a quality table


def add_arguments(p):
    p.add_argument("--checkpoint", default="0.5B", help=CHECKPOINT_HELP + " (default 0.5B)")
    p.add_argument("--formats", default="bf16,int8,int4,int4-gptq",
                   help=f"comma list of formats, each loaded fresh (choose from {', '.join(MEASURED)}; "
                        "default bf16,int8,int4,int4-gptq)")
    p.add_argument("--tokens", type=int, default=2048, help="held-out tokens per corpus, a multiple of 512 (default 2048)")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")


def run(args) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats:
        raise ValueError("--formats is empty: give a comma list, e.g. bf16,int8")
    for fmt in formats:
        check_format(fmt, MEASURED)
    if args.tokens < 512 or args.tokens % 512:
        raise ValueError(f"--tokens must be a positive multiple of 512 (the window), got {args.tokens}")
    if args.out.is_dir():
        raise ValueError(f"--out is a folder ({args.out}); give a .json file name")
    rows, path = {}, checkpoint_path(args.checkpoint, log=log)
    for fmt in formats:
        t0 = time.perf_counter()
        model, tok = load(path, fmt, calibration=calibration_ids, log=log)
        held_out = {s: held_out_ids(tok, s, n_tokens=args.tokens) for s in HELD_OUT}
        rows[fmt] = {s: round(perplexity(model.eval(), ids, window=512, batch_size=2), 4) for s, ids in held_out.items()}
        rows[fmt]["seconds"] = round(time.perf_counter() - t0, 1)
        figures = ", ".join(f"{s} {rows[fmt][s]:.4f}" for s in HELD_OUT)
        print(f"{fmt:>10}: {figures}  ({rows[fmt]['seconds']:.0f} s)", flush=True)
        del model
    if "bf16" in rows:
        for fmt, row in rows.items():
            row["vs_bf16"] = {s: round(row[s] / rows["bf16"][s] - 1, 4) for s in HELD_OUT}
    record = {"checkpoint": str(args.checkpoint), "checkpoint_file": path.name, "held_out_tokens": args.tokens,
              "window": 512, "held_out": list(HELD_OUT), "calibration_tokens": CALIBRATION_TOKENS, "group_size": 128,
              "perplexity": rows, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "versions": {"torch": torch.__version__, "python": platform.python_version()},
              "torch_threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(args.out)
    print(f"-> {args.out}")
    return 0
