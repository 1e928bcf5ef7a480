"""Held-out checker accuracy, one record per prompt, and the table that compares models on the same prompts (chapter 11a).

    sets = heldout_sets(["reverse", "sort", "count", "max"], n_per_task=50, seed=1)
    records = evaluate_sets(model, tok, sets, max_new_tokens=64)          # one dict per prompt
    write_samples(records, "results/rl/samples/checkpoint.jsonl")
    print(format_table(accuracy_table({"checkpoint": read_samples(a), "+ DPO": read_samples(b)})))

Design choices
- Two sets of held-out prompts, both from the "test" split (no training, DPO or GRPO prompt is in it):
  "same_phrasings" words them as the training prompts are worded; "new_phrasings" uses
  tasks/checkable.py's NEW_PHRASINGS, which no training prompt uses. A gain on the second set is a gain
  on instructions the model was never trained on, not a memorised template.
- One record per prompt ({set, task, prompt, answer, reply, right, reply_tokens}), so every figure of the
  table is recomputed from the records, and a chapter can re-run a model on a subset and compare reply by reply.
- Accuracy intervals are Wilson's (eval/passk.py); differences between models are paired over the same prompts
  (eval/paired.py: bootstrap interval, exact McNemar p).
- Greedy decoding, batched (rows that stop leave the batch: generation.py), in the format the model was loaded in.
"""

from __future__ import annotations

import json
from pathlib import Path

from qwen_min.eval.paired import paired_difference
from qwen_min.eval.passk import wilson_interval
from qwen_min.paths import read_jsonl
from qwen_min.tasks.checkable import Example, evaluate, make_examples

SETS = {"same_phrasings": "train", "new_phrasings": "new"}  # set name -> make_examples' phrasings


def heldout_sets(tasks: list[str], n_per_task: int, seed: int = 1) -> dict[str, list[Example]]:
    """{set name: test prompts}: each task's `n_per_task` prompts worded as in training, and as never in training."""
    return {name: make_examples(tasks, "test", n_per_task, seed=seed, phrasings=phrasings)
            for name, phrasings in SETS.items()}


def evaluate_sets(model, tokenizer, sets: dict[str, list[Example]], max_new_tokens: int = 64,
                  batch_size: int = 64) -> list[dict]:
    """Greedy replies to every prompt of every set, checked: one record per prompt."""
    records = []
    for name, examples in sets.items():
        for ex, reply, right in evaluate(model, tokenizer, examples, max_new_tokens, batch_size)["replies"]:
            records.append({"set": name, "task": ex.task, "prompt": ex.prompt_messages[-1]["content"],
                            "answer": ex.answer, "reply": reply, "right": bool(right),
                            "reply_tokens": len(tokenizer.encode(reply))})
    return records


def write_samples(records: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def read_samples(path: str | Path) -> list[dict]:
    """The records of a samples file (`qwen-min eval tasks --out`)."""
    return [row for _, row in read_jsonl(path, "a samples file of `qwen-min eval tasks`")]


def accuracy_table(models: dict[str, list[dict]], sets=tuple(SETS)) -> list[dict]:
    """One row per (model, set): accuracy with its Wilson interval, mean reply length, and the paired difference
    against the model before it in `models` (same prompts, same order required)."""
    rows, previous = [], None
    for model, records in models.items():
        for name in sets:
            marks = [r["right"] for r in records if r["set"] == name]
            prompts = [r["prompt"] for r in records if r["set"] == name]
            if not marks:
                raise ValueError(f"{model}: no records of the set {name!r}")
            row = {"model": model, "set": name, "prompts": len(marks), "accuracy": sum(marks) / len(marks),
                   "interval": wilson_interval(sum(marks), len(marks)),
                   "reply_tokens": sum(r["reply_tokens"] for r in records if r["set"] == name) / len(marks)}
            if previous is not None:
                before = [r for r in models[previous] if r["set"] == name]
                if [r["prompt"] for r in before] != prompts:
                    raise ValueError(f"{previous} and {model} were not evaluated on the same {name} prompts")
                row["vs"] = previous
                row["difference"] = paired_difference([r["right"] for r in before], marks)
            rows.append(row)
        previous = model
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of `accuracy_table` as a Markdown table."""
    lines = ["| model | prompts | accuracy [95% CI] | vs previous [95% CI], McNemar p | reply tokens |",
             "|---|---|---|---|---|"]
    for set_name in dict.fromkeys(r["set"] for r in rows):
        lines.append(f"| **{set_name.replace('_', ' ')}** | | | | |")
        for r in (r for r in rows if r["set"] == set_name):
            lo, hi = r["interval"]
            diff = ""
            if "difference" in r:
                d = r["difference"]
                diff = (f"{d['difference']:+.3f} [{d['interval'][0]:+.3f}, {d['interval'][1]:+.3f}], "
                        f"p = {d['p_value']:.2g}")
            lines.append(f"| {r['model']} | {r['prompts']} | {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | {diff} | "
                         f"{r['reply_tokens']:.1f} |")
    return "\n".join(lines)
