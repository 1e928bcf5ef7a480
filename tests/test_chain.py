"""The README's "train your own chain" end to end, through the command line, at a smaller size: pretrain -> sft ->
make-pairs -> dpo -> grpo -> generate, each step reading the folder the one before wrote.

The README runs it on data/corpora in about 5 minutes on 2 cores; here the corpora are the 30-document `tiny_corpora`
and every step is shorter. The counting task keeps it honest at this size: a model that has learned to answer with a
small number is sometimes right and sometimes wrong among 8 samples, so make-pairs finds real pairs to train DPO on.
"""

from __future__ import annotations

import json

import pytest

import qwen_min.tasks.checkable as tasks
from qwen_min.cli import main
from qwen_min.tasks.pairs import read_pairs
from qwen_min.train.trainer import read_metrics


def run(*argv: str) -> None:
    assert main([*argv, "--no-progress"] if argv[0] != "generate" else list(argv)) == 0, argv


@pytest.mark.slow
def test_pretrain_sft_pairs_dpo_grpo_chain(tiny_corpora, tmp_path, capsys):
    runs = tmp_path / "runs"
    run("pretrain", "--out", f"{runs}/pretrain", "--data", str(tiny_corpora), "--mix", "prose=0.5,code=0.5",
        "--vocab-size", "512", "--max-steps", "60", "--seq-len", "64", "--batch-size", "8", "--warmup-steps", "5",
        "--eval-every", "60", "--eval-windows", "8", "--save-every", "60")
    run("sft", "--checkpoint", f"{runs}/pretrain/model", "--out", f"{runs}/sft", "--tasks", "count", "--n-train", "400",
        "--handwritten-repeat", "0", "--batch-size", "16", "--max-steps", "150", "--lr", "3e-3", "--max-len", "128",
        "--eval-every", "150", "--save-every", "150", "--n-test", "10", "--max-new-tokens", "6")
    run("make-pairs", "--checkpoint", f"{runs}/sft/model", "--out", f"{runs}/pairs.jsonl", "--tasks", "count",
        "--prompts-per-task", "16", "--n-samples", "8", "--pairs-per-prompt", "2", "--max-new-tokens", "6")
    run("dpo", "--checkpoint", f"{runs}/sft/model", "--pairs", f"{runs}/pairs.jsonl", "--out", f"{runs}/dpo", "--beta", "0.1",
        "--nll-weight", "1", "--lr", "3e-4", "--batch-size", "8", "--max-steps", "4", "--eval-every", "4",
        "--eval-prompts", "10", "--max-new-tokens", "6")
    run("grpo", "--checkpoint", f"{runs}/sft/model", "--out", f"{runs}/grpo", "--tasks", "count", "--n-prompts", "8",
        "--group-size", "4", "--batch-size", "16", "--max-steps", "3", "--lr", "3e-4", "--eval-every", "3",
        "--eval-prompts", "10", "--max-new-tokens", "6", "--save-every", "0")
    capsys.readouterr()
    run("generate", "--checkpoint", f"{runs}/dpo/model", "--chat", "How many times does b appear in: b, a, b?",
        "--max-new-tokens", "6")
    reply = capsys.readouterr().out
    assert reply.strip() and "<|im_end|>" not in reply  # it stops at its own end token

    pairs = read_pairs(runs / "pairs.jsonl")
    right = lambda pair, side: tasks.TASKS[pair["task"]].check(pair[side][0]["content"], pair["answer"])  # noqa: E731
    assert all(right(p, "chosen") and not right(p, "rejected") for p in pairs)
    assert len({json.dumps(p["prompt"]) for p in pairs}) >= 2  # DPO holds some prompts out for validation
    dpo = read_metrics(runs / "dpo" / "metrics.jsonl")
    assert [r["step"] for r in dpo] == [1, 2, 3, 4] and "val_rewards/accuracies" in dpo[-1]
    assert len(read_metrics(runs / "grpo" / "metrics.jsonl")) == 3
    for step in ("sft", "dpo", "grpo"):
        assert set(json.loads((runs / step / "eval.json").read_text())["after"]) >= {"count"}
