"""The README cannot drift from the code: every `qwen-min` command it shows parses against the real command line,
every `make` target it names exists, every script it runs exists, and every Python snippet runs.

Design choices
- Commands are checked in-process against `qwen_min.cli.build_parser()`: a command in a ```bash block must parse
  as a whole (sub-command, flags, their values and the required ones); a command quoted inline in the prose may be
  cut short (`qwen-min bench generate --compare formats`), so there only its sub-commands and flag names must exist.
- The Python snippets run in order in one namespace, as in one session started at the repository root (the
  README says so). The names the README leaves to the reader's data (`STAND_INS`) get small values before each
  snippet; the checkpoints are replaced by a tiny random model (a GGUF file for `qm.default_checkpoint()`, a
  Hugging Face folder for the folder the README loads), so the snippets check the API, not the weights, in seconds.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import torch

import qwen_min as qm
from qwen_min.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.M | re.S)
QWEN_MIN = re.compile(r"(?:^|\s)((?:\.venv/bin/)?qwen-min|python -m qwen_min)\s+(.*)")


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def inline_code() -> list[str]:
    """The `code spans` of the prose (fenced blocks left out)."""
    return re.findall(r"`([^`\n]+)`", FENCE.sub("", README))


def qwen_min_commands(lines: list[str]) -> list[list[str]]:
    """The arguments after `qwen-min` (or `.venv/bin/qwen-min`, `python -m qwen_min`) of each line that runs it."""
    commands = []
    for line in lines:
        found = QWEN_MIN.search(line)
        if found:
            commands.append(shlex.split(found.group(2), comments=True))
    return commands


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def test_readme_shows_commands():
    """The extraction finds the commands the README is known to hold (so the tests below cannot pass on nothing)."""
    shown = {tuple(c[:2]) for c in qwen_min_commands([ln for b in blocks("bash") for ln in b.splitlines()])}
    assert {("generate", "def quicksort(xs):"), ("pretrain", "--out"), ("make-pairs", "--checkpoint")} <= shown


@pytest.mark.parametrize("argv", qwen_min_commands([ln for b in blocks("bash") for ln in b.splitlines()]), ids=" ".join)
def test_every_command_in_a_bash_block_parses(argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"README: `qwen-min {shlex.join(argv)}` does not parse: {capsys.readouterr().err.strip()}")


def test_every_inline_command_names_real_sub_commands_and_flags():
    commands = qwen_min_commands(inline_code())
    assert len(commands) >= 5
    for argv in commands:
        parser = build_parser()
        words = [w for w in argv if not w.startswith("-")]
        while subparsers(parser) and words and words[0] in subparsers(parser):
            parser = subparsers(parser)[words.pop(0)]
        assert not subparsers(parser), f"README: `qwen-min {shlex.join(argv)}` names no sub-command here"
        flags = [w.split("=")[0] for w in argv if w.startswith("--")]
        unknown = [f for f in flags if f not in parser._option_string_actions]
        assert not unknown, f"README: `qwen-min {shlex.join(argv)}`: no such flag {unknown}"


def test_every_make_target_and_script_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile, re.M))
    code = "\n".join(inline_code() + [body for _, body in FENCE.findall(README)])
    named = set(re.findall(r"(?:^|[\s&;])make ([a-z][\w-]*)", code, re.M))
    assert {"walkthrough", "test", "lab", "student"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"
    scripts = set(re.findall(r"python ([\w/.-]+\.py)", code))
    assert scripts and all((REPO / s).is_file() for s in scripts), scripts


# ---------------------------------------------------------------------------- the Python snippets
STAND_INS = {  # the reader's own data in the snippets: small values of the right kind
    "prompt": lambda: "Hello <|im_end|>",
    "messages": lambda: [{"role": "user", "content": "Reverse a string in Python."}],
    "texts": lambda: ["low lower lowest newer newest wider " * 20, "def f(x):\n    return x\n" * 20],
    "input_ids": lambda: torch.randint(0, 1000, (2, 8)),
    "ids": lambda: torch.randint(0, 1000, (2, 6)),
    "mask": lambda: torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]),
    "prompt_ids": lambda: torch.randint(0, 1000, (1, 5)),
}


def tiny_checkpoint_model() -> qm.Qwen:
    """A random model the official tokenizer's ids fit, with widths the int4 kernels and GGUF blocks accept."""
    torch.manual_seed(0)
    cfg = qm.QwenConfig.from_name("tiny", hidden_size=128, intermediate_size=256, vocab_size=151936)
    return qm.Qwen(cfg).eval()


def test_python_snippets_run_in_order(tmp_path, monkeypatch, capsys):
    snippets = blocks("python")
    assert len(snippets) >= 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(REPO / "data")  # the README's relative paths, from the repository root
    model = tiny_checkpoint_model()
    qm.save_pretrained(model, tmp_path / "Qwen2.5-0.5B-Instruct")
    checkpoint = qm.save_gguf(model, tmp_path / "checkpoint.gguf")
    monkeypatch.setattr(qm, "default_checkpoint", lambda *args, **kwargs: checkpoint)
    monkeypatch.setattr("qwen_min.checkpoints.load.default_checkpoint", lambda *args, **kwargs: checkpoint)  # qm.load("0.5B")
    namespace: dict = {}
    for number, source in enumerate(snippets, 1):
        namespace.update({name: make() for name, make in STAND_INS.items()})
        try:
            exec(compile(source, f"README.md python snippet {number}", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"README python snippet {number} fails: {type(e).__name__}: {e}\n{source}")
    assert (tmp_path / "my_tokenizer" / "tokenizer.json").exists() and (tmp_path / "out.gguf").exists()
