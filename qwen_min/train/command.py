"""The command-line side every training command shares: the session's flags (--out, --resume, ...), the settings'
flags made from the command's settings dataclass (train/settings.py), and the older names of renamed flags.

    def add_arguments(p):
        add_training_arguments(p, SFTSettings, renamed={"--config": "--size"})
    def run(args):
        settings = resolve_settings(SFTSettings(), given(args, SFTSettings), args.out, args.resume)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qwen_min.command import add_renamed
from qwen_min.train.settings import add_settings_arguments, flag_of


def add_run_arguments(p) -> None:
    """--out, --resume, --stop-at, --device, --no-progress, --shard: what a session needs beyond the settings."""
    p.add_argument("--out", type=Path, required=True, help="run folder: run.json, metrics.jsonl, checkpoint.pt, model/")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with the settings of its run.json")
    p.add_argument("--stop-at", type=int, help="end this session after this step (the schedule still runs to --max-steps)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shard", choices=["none", "ddp", "fsdp"],
                   help="none: one copy of the model per process; ddp: same, gradients averaged; fsdp: weights, "
                        "gradients and optimizer state sharded across processes (default: ddp under torchrun, else none)")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each layer's activations in the backward instead of keeping them (less memory)")


RENAMED_FLAGS = {"--init": "--checkpoint", "--precision": "--format"}  # on every training command, for one release


def add_training_arguments(p, cls: type, shown: dict[str, str] | None = None, renamed: dict[str, str] | None = None):
    """The session's flags, one flag per setting of `cls`, and the older names of renamed flags."""
    add_run_arguments(p)
    add_settings_arguments(p, cls, shown)
    fields = {flag_of(f): f for f in dataclasses.fields(cls)}
    for old, new in {**RENAMED_FLAGS, **(renamed or {})}.items():
        if new in fields:
            add_renamed(p, old, new, dest=fields[new].name, choices=fields[new].metadata.get("choices"))
