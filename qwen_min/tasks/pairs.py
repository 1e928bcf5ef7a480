"""Preference pairs made the way the Qwen2.5 report makes them: resample the SFT model, let checkers judge.

    qwen-min make-pairs --model runs/sft/model --out runs/pairs.jsonl            # prompts of the "dpo" split

    pairs, report = make_pairs(model, tok, tasks.make_examples(tasks.GENERATED, "dpo", 40, seed=0), n_samples=8)
    write_pairs(pairs, "runs/pairs.jsonl"); pairs = read_pairs("runs/pairs.jsonl")

For each prompt the model writes `n_samples` answers (seeded sampling); the task's checker marks each
right or wrong (answer matching, as the report's "execution feedback / answer matching"). A right answer
becomes *chosen*, a wrong one *rejected*. A prompt whose answers all pass or all fail teaches no
preference: it is counted in the report and skipped.

One JSON object per line, TRL's conversational preference format plus what made the pair:
    {"task": "add", "prompt": [{"role": "user", "content": "What is 47 + 38?"}],
     "chosen": [{"role": "assistant", "content": "85"}], "rejected": [{"role": "assistant", "content": "75"}],
     "answer": "85", "scores": {"chosen": 1.0, "rejected": 0.0}, "pass_rate": 0.375,
     "sampling": {"n_samples": 8, "temperature": 1.0, "top_k": null, "top_p": null, "max_new_tokens": 32, "seed": 0}}

Design choices
- Prompts come from the "dpo" split of tasks/checkable.py by default: a hash of the prompt text puts it there,
  so SFT (the "train" split) never saw them and evaluation (the "test" split) never will.
- Sampling defaults to temperature 1.0 with no top-k / top-p: the model's own distribution, so the
  pairs show the mistakes it actually makes (Qwen's chat settings, 0.7 / 0.8 / 20, are a flag away).
- Answers are stored as text (re-tokenised for training, as TRL does). A sampled id the tokenizer lacks
  (a padding row of the embedding, never trained toward) is dropped from the text.
- Several prompts are sampled in one batch (each repeated n_samples times); one torch.Generator seeded
  with `seed` draws every token, so a file is reproducible for the same model, prompts and settings.
- Up to `pairs_per_prompt` pairs per prompt (default 1). Duplicate answers are removed, both lists are
  shuffled (a `random.Random` seeded with the seed and the prompt), then pair i takes passing answer
  i and failing answer i, cycling through the shorter list: a task with one right answer ("85") pairs
  it with several distinct wrong ones. More pairs per prompt give more data, but more correlated data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from qwen_min.generation import generate
from qwen_min.paths import read_jsonl
from qwen_min.tasks.checkable import TASKS, Example, prompt_ids, reply_text


def sample_answers(model, tokenizer, examples: list[Example], n_samples: int, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, max_new_tokens: int = 32, seed: int = 0,
                   prompts_per_batch: int = 16, progress=None) -> list[list[str]]:
    """`n_samples` sampled replies to each example's prompt (a list per example)."""
    import torch

    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    was_training = model.training
    model.eval()
    answers = []
    for start in range(0, len(examples), prompts_per_batch):
        chunk = examples[start:start + prompts_per_batch]
        prompts = [prompt_ids(tokenizer, ex.prompt_messages, ex.tools) for ex in chunk]
        outputs = generate(model, [p for p in prompts for _ in range(n_samples)], max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, stop_ids=tokenizer.stop_ids,
                           generator=generator)
        texts = [reply_text(tokenizer, ids) for ids in outputs]
        answers += [texts[i:i + n_samples] for i in range(0, len(texts), n_samples)]
        if progress is not None:
            progress(len(chunk))
    model.train(was_training)
    return answers


def pairs_from_answers(example: Example, answers: list[str], pairs_per_prompt: int = 1, seed: int = 0) -> list[dict]:
    """Preference pairs of one prompt: passing answers as chosen, failing ones as rejected (none if all agree).

    >>> ex = Example("add", [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}], "4")
    >>> [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs_from_answers(ex, ["4", "5", "4"])]
    [('4', '5')]
    >>> pairs_from_answers(ex, ["4", "4"])
    []
    """
    check = TASKS[example.task].check
    passing = list(dict.fromkeys(a for a in answers if check(a, example.answer)))
    failing = list(dict.fromkeys(a for a in answers if not check(a, example.answer)))
    rng = random.Random(f"{seed}/{example.prompt_messages}")
    rng.shuffle(passing)
    rng.shuffle(failing)
    pass_rate = sum(check(a, example.answer) for a in answers) / len(answers)
    pairs = []
    n_pairs = min(pairs_per_prompt, max(len(passing), len(failing))) if passing and failing else 0
    for i in range(n_pairs):  # cycle through the shorter list: every pair differs in at least one answer
        chosen, rejected = passing[i % len(passing)], failing[i % len(failing)]
        pair = {"task": example.task, "prompt": example.prompt_messages,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "answer": example.answer, "scores": {"chosen": 1.0, "rejected": 0.0}, "pass_rate": pass_rate}
        if example.tools:
            pair["tools"] = example.tools
        pairs.append(pair)
    return pairs


def make_pairs(model, tokenizer, examples: list[Example], n_samples: int = 8, pairs_per_prompt: int = 1,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, max_new_tokens: int = 32,
               seed: int = 0, progress=None) -> tuple[list[dict], dict]:
    """Sample, check, pair. Returns (pairs, report); report[task] counts prompts, all_pass, all_fail, pairs."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to find a passing and a failing answer, got {n_samples}")
    sampling = {"n_samples": n_samples, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                "max_new_tokens": max_new_tokens, "seed": seed}
    answers = sample_answers(model, tokenizer, examples, n_samples, temperature, top_k, top_p, max_new_tokens, seed,
                             progress=progress)
    pairs, report = [], {}
    for example, replies in zip(examples, answers):
        counts = report.setdefault(example.task, {"prompts": 0, "all_pass": 0, "all_fail": 0, "pairs": 0, "pass_rate": 0.0})
        passed = sum(TASKS[example.task].check(r, example.answer) for r in replies)
        counts["prompts"] += 1
        counts["pass_rate"] += passed / n_samples
        counts["all_pass"] += passed == n_samples
        counts["all_fail"] += passed == 0
        new = pairs_from_answers(example, replies, pairs_per_prompt, seed)
        counts["pairs"] += len(new)
        pairs += [{**p, "sampling": sampling} for p in new]
    for counts in report.values():
        counts["pass_rate"] /= counts["prompts"]
    return pairs, report


def format_report(report: dict) -> str:
    """The per-task table of a make_pairs report."""
    lines = [f"{'task':<14}{'prompts':>8}{'pass rate':>11}{'all pass':>10}{'all fail':>10}{'pairs':>7}"]
    for task, c in report.items():
        lines.append(f"{task:<14}{c['prompts']:>8}{c['pass_rate']:>11.2f}{c['all_pass']:>10}{c['all_fail']:>10}{c['pairs']:>7}")
    total = {k: sum(c[k] for c in report.values()) for k in ("prompts", "all_pass", "all_fail", "pairs")}
    lines.append(f"{'total':<14}{total['prompts']:>8}{'':>11}{total['all_pass']:>10}{total['all_fail']:>10}{total['pairs']:>7}")
    return "\n".join(lines)


def write_pairs(pairs: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")


def read_pairs(path: str | Path) -> list[dict]:
    """The pairs of a JSONL file; each needs "prompt" (messages), "chosen" and "rejected" (assistant messages)."""
    pairs = []
    for n, pair in read_jsonl(path, "a pairs file: make one with `qwen-min make-pairs`"):
        try:
            ok = all(isinstance(pair[k], list) and pair[k] for k in ("prompt", "chosen", "rejected"))
        except (KeyError, TypeError):
            ok = False
        if not ok or pair["chosen"][-1].get("role") != "assistant" or pair["rejected"][-1].get("role") != "assistant":
            raise ValueError(f"{path}:{n}: expected a JSON object with 'prompt' (messages) and 'chosen' / 'rejected' "
                             "(lists ending with an assistant message)")
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


# ---------------------------------------------------------------------------- qwen-min make-pairs
