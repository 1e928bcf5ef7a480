"""The command-line flags every training command shares (the argparse side of train/settings.py).

Every flag defaults to None, so `given(args, keys)` tells which ones this command line set; the
defaults live in one dict per command and are shown in the help text from there.
"""

from __future__ import annotations

from pathlib import Path


def add_run_arguments(p) -> None:
    """--out, --resume, --stop-at, --device, --no-progress: what a session needs beyond the settings."""
    p.add_argument("--out", type=Path, required=True, help="run folder: run.json, metrics.jsonl, checkpoint.pt, model/")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the settings of its run.json")
    p.add_argument("--stop-at", type=int, help="end this session after this step (the schedule still runs to --max-steps)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_loop_arguments(p, defaults: dict) -> None:
    """The optimisation flags of the shared loop, each showing its default from `defaults`."""
    def show(key, fmt="{}"):
        value = defaults.get(key)
        if value is None:
            return ""
        return f" (default {value if isinstance(value, str) else fmt.format(value)})"

    p.add_argument("--max-steps", type=int, help="optimizer steps; the learning-rate schedule ends here" + show("max_steps"))
    p.add_argument("--lr", type=float, help="peak learning rate" + show("lr", "{:g}"))
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default lr / 10)")
    p.add_argument("--warmup-steps", type=int, help="linear warmup steps" + show("warmup_steps"))
    p.add_argument("--batch-size", type=int, help="rows per micro-batch, per process" + show("batch_size"))
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step" + show("grad_accum"))
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay on matrices" + show("weight_decay", "{:g}"))
    p.add_argument("--grad-clip", type=float, help="max gradient norm, 0 disables" + show("grad_clip", "{:g}"))
    p.add_argument("--eval-every", type=int, help="held-out figures every N steps and at the end" + show("eval_every"))
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (and at the end)" + show("save_every"))
    p.add_argument("--seed", type=int, help="seed of the data order and the initialisation" + show("seed"))
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 autocast on CUDA, fp32 on CPU")


def given(args, keys) -> dict:
    """{key: value} of the flags among `keys` that this command line set (not None)."""
    return {key: getattr(args, key, None) for key in keys}
