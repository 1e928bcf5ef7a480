"""The `qwen-min` command line (also `python -m qwen_min`).

Design choices
- One sub-command per job; each lives with the code it drives and is registered in
  `COMMANDS` as (module, one-line help). Only the command named on the line is imported (its
  add_arguments and run), so `qwen-min --help` imports neither torch nor any command (tested).
- This module imports no other qwen_min module: the command modules share their pieces through
  qwen_min/command.py (model flags, second-level commands), which never comes back here.
- Bad input ends in one line on stderr, `qwen-min <command>: error: ...`, and exit code 2,
  never a traceback: every error the package raises on purpose is a ValueError,
  OSError or RuntimeError subclass and is caught here. argparse's own refusals (an unknown
  choice, a missing flag) are one line too (`OneLineParser`): its default prints the whole
  usage first, 15 lines for `pretrain`, and the line that matters comes last.
- `--device cuda` on a torch without CUDA is refused here, for every command that takes
  `--device`, before the command does anything (tokenising, loading, creating its --out).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args).
COMMANDS = {
    "fetch": ("qwen_min.checkpoints.fetch_command",
        "download and verify the official checkpoints (Qwen2.5-Coder-0.5B/1.5B-Instruct GGUF)"),
    "train-tokenizer": ("qwen_min.tokenizer.bpe_training_command",
        "train a byte-level BPE tokenizer on text files (Qwen2.5 pre-tokenizer)"),
    "generate": ("qwen_min.chat_command",
        "continue a prompt with the model (default: greedy, the default checkpoint)"),
    "chat": ("qwen_min.chat_command",
        "interactive chat with the model, replies streamed as they are generated"),
    "pretrain": ("qwen_min.train.pretrain_command",
        "train a small Qwen from scratch on data/corpora (CPU, or GPUs with torchrun)"),
    "sft": ("qwen_min.train.sft_command",
        "supervised fine-tuning in ChatML, loss on the assistant's tokens only (full or LoRA)"),
    "make-pairs": ("qwen_min.tasks.pairs_command",
        "sample the SFT model, score answers with the task checkers, write preference pairs"),
    "dpo": ("qwen_min.train.dpo_command",
        "direct preference optimisation of an SFT model on preference pairs (qwen-min make-pairs)"),
    "grpo": ("qwen_min.train.grpo_command",
        "online RL with GRPO: groups of sampled answers, rewards from the checkers or a reward model"),
    "consolidate": ("qwen_min.train.consolidate_command",
        "turn a sharded checkpoint (--shard fsdp) into a model folder that transformers loads"),
    "eval": ("qwen_min.eval.command",
        "evaluate a checkpoint: qwen-min eval humaneval | perplexity | passkey (see qwen-min eval --help)"),
    "data": ("qwen_min.corpus.command",
        "pre-training data: a labelled mixed-quality corpus, an LLM judge, dedup, decontamination"),
    "sweep": ("qwen_min.scaling.command", "learning rate x batch size sweep over tiny sizes, and the power laws fitted to it"),
    "bench": ("qwen_min.bench.command",
        "benchmarks, as ratios against a reference measured in the same run"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `PROG: error: MESSAGE (PROG --help lists the options)`, exit code 2.
    Sub-command parsers are of the same class (argparse makes them with the class of their parent)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def check_device(device: str | None) -> None:
    """Refuse a CUDA device when this torch cannot use one (a CPU-only build, or no GPU visible)."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            build = "this torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"CUDA is not available ({build}, torch {torch.__version__}): use --device cpu")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named in `argv` (None: of every command, for tests)."""
    parser = OneLineParser(
        prog="qwen-min",
        description="qwen-min: Qwen2.5 built from scratch, checked against the real thing.",
    )
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if named is None or name == named:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (also for --help and argparse's refusals, so tests call it directly)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a refused command line (2, one line already printed)
        return e.code
    if args.command is None:
        parser.print_help()
        return 0
    try:
        check_device(getattr(args, "device", None))
        return importlib.import_module(args._module).run(args) or 0
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        print(f"qwen-min {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
