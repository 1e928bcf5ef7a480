"""What the command modules share: one way to name a model and its format, one way to load it, second-level
commands (`qwen-min eval NAME`, `qwen-min bench NAME`) and renamed flags.

    add_model_arguments(p)                    # --checkpoint 0.5B|1.5B|PATH, --format fp32|bf16|...|auto
    model, tok = load_from_args(args, batch=8)

Design choices
- Every command that needs a model takes the same `--checkpoint` and `--format` (qwen_min/formats.py), with
  the same help text, so a flag learnt on one command works on all of them (tests/test_cli.py checks each
  command's parser). A command narrows the formats it accepts (`formats=`) and picks its default.
- A renamed flag keeps working for one release and says on stderr what to write instead (`Renamed`).
- cli.py does not import this module: command modules import it, the entry point only names them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qwen_min.checkpoints.load import CHECKPOINT_HELP, load
from qwen_min.eval.perplexity import calibration_ids
from qwen_min.formats import FORMAT_HELP, FORMATS


def log(msg: str) -> None:
    """Progress for the person at the terminal, on stderr (stdout holds the command's result)."""
    print(msg, file=sys.stderr, flush=True)


class Renamed(argparse.Action):
    """An old flag name that still works, says once on stderr which name to use, and stores into the new one."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        log(f"{parser.prog}: {option_string} is now {self.new}; it still works for this release")
        setattr(namespace, self.dest, values)


def add_renamed(p, old: str, new: str, dest: str | None = None, **kwargs) -> None:
    """`old` keeps working as `new` (same destination), with a note; hidden from --help."""
    p.add_argument(old, dest=dest or new.lstrip("-").replace("-", "_"), action=Renamed, new=new, **kwargs)


def add_model_arguments(p, *, checkpoint: str | None = "0.5B", formats: tuple[str, ...] = FORMATS,
                        format: str = "fp32") -> None:
    """--checkpoint and --format, the same on every command (defaults: the 0.5B in fp32). checkpoint=None: the
    command needs one named (`load_from_args` refuses a missing one; argparse's `required` would refuse an old
    flag name that gives it)."""
    default = f" (default {checkpoint})" if checkpoint else " (required)"
    p.add_argument("--checkpoint", default=checkpoint, help=CHECKPOINT_HELP + default)
    narrowed = "" if formats == FORMATS else f"; here {', '.join(formats)}"
    p.add_argument("--format", choices=formats, default=format, metavar="FORMAT",
                   help=f"{FORMAT_HELP}{narrowed} (default {format})")


def load_from_args(args, batch: int = 1, device: str | None = None):
    """(model, tokenizer) as --checkpoint, --format (and --tokenizer, --device where the command has them) say."""
    if args.checkpoint is None:
        raise ValueError("--checkpoint is required: 0.5B, 1.5B, a .gguf file, a Hugging Face folder or a run folder")
    return load(args.checkpoint, args.format, device=device or getattr(args, "device", None) or "cpu", batch=batch,
                tokenizer=getattr(args, "tokenizer", None), calibration=calibration_ids, log=log)


def add_subcommands(p, table: dict[str, tuple[str, str]]) -> None:
    """A second level of commands: name -> (module, one-line help), each module with add_arguments(parser) and
    run(args), like the first level."""
    sub = p.add_subparsers(dest="subcommand", metavar="NAME", required=True)
    for name, (module, help_text) in table.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(_submodule=module)
        importlib.import_module(module).add_arguments(q)


def run_subcommand(args) -> int:
    return importlib.import_module(args._submodule).run(args)
