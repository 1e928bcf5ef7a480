"""Preference pairs written by hand from their definition equal `qwen-min make-pairs` (qwen_min/tasks/pairs.py).

The definition (the Qwen2.5 report's offline-RL data, as chapter 10 writes it): sample n answers per prompt
from the SFT model, check each with the task's checker, pair a passing answer (chosen) with a failing one
(rejected). The conventions that make a file reproducible are the package's documented ones: every prompt
of a batch (at most 16) repeated n times in one `generate` call, one torch.Generator seeded with the seed;
duplicates dropped, passing and failing answers shuffled by a `random.Random` seeded with the seed and the
prompt; pair i takes passing answer i and failing answer i, cycling through the shorter list.
"""

from __future__ import annotations

import json
import random

import torch

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.tasks import checkable as tasks
from qwen_min.tasks.pairs import read_pairs

TASKS = ["count", "sort"]
SAMPLING = {"n_samples": 8, "temperature": 1.0, "top_k": None, "top_p": None, "max_new_tokens": 16, "seed": 3}
PAIRS_PER_PROMPT = 3


def pairs_by_hand(model, tok, examples, n_samples, temperature, max_new_tokens, seed, pairs_per_prompt):
    """Sample, check, pair: the loop of chapter 10, written from the definition."""
    prompts = [tok.encode(tok.render_chat(ex.prompt_messages, add_generation_prompt=True), allowed_special="all")
               for ex in examples]
    generator = torch.Generator().manual_seed(seed)
    outputs = qm.generate(model, [p for p in prompts for _ in range(n_samples)], max_new_tokens=max_new_tokens,
                          temperature=temperature, stop_ids=tok.stop_ids, generator=generator)
    replies = [tok.decode([i for i in ids if i < tok.vocab_size], skip_special=True) for ids in outputs]
    pairs = []
    for k, ex in enumerate(examples):
        answers = replies[k * n_samples:(k + 1) * n_samples]
        right = [tasks.TASKS[ex.task].check(a, ex.answer) for a in answers]
        passing = list(dict.fromkeys(a for a, ok in zip(answers, right) if ok))  # distinct, first seen first
        failing = list(dict.fromkeys(a for a, ok in zip(answers, right) if not ok))
        if not passing or not failing:
            continue  # every answer agrees: no preference to learn
        rng = random.Random(f"{seed}/{ex.prompt_messages}")
        rng.shuffle(passing)
        rng.shuffle(failing)
        for i in range(min(pairs_per_prompt, max(len(passing), len(failing)))):
            pairs.append({"task": ex.task, "prompt": ex.prompt_messages,
                          "chosen": [{"role": "assistant", "content": passing[i % len(passing)]}],
                          "rejected": [{"role": "assistant", "content": failing[i % len(failing)]}],
                          "answer": ex.answer, "scores": {"chosen": 1.0, "rejected": 0.0},
                          "pass_rate": sum(right) / n_samples,
                          "sampling": {"n_samples": n_samples, "temperature": temperature, "top_k": None,
                                       "top_p": None, "max_new_tokens": max_new_tokens, "seed": seed}})
    return pairs


def test_pairs_by_hand_equal_make_pairs(tiny_sft_model, tmp_path):
    s = SAMPLING
    assert main(["make-pairs", "--checkpoint", str(tiny_sft_model), "--out", str(tmp_path / "pairs.jsonl"),
                 "--tasks", ",".join(TASKS), "--prompts-per-task", "4", "--n-samples", str(s["n_samples"]),
                 "--pairs-per-prompt", str(PAIRS_PER_PROMPT), "--max-new-tokens", str(s["max_new_tokens"]),
                 "--seed", str(s["seed"]), "--no-progress"]) == 0
    package = read_pairs(tmp_path / "pairs.jsonl")

    model, tok = qm.from_pretrained(tiny_sft_model), qm.Tokenizer.from_pretrained(tiny_sft_model)
    examples = tasks.make_examples(TASKS, "dpo", 4, seed=s["seed"])  # the command's prompts: 4 per task, its seed
    hand = pairs_by_hand(model, tok, examples, s["n_samples"], s["temperature"], s["max_new_tokens"], s["seed"],
                         PAIRS_PER_PROMPT)
    assert json.loads(json.dumps(hand)) == package  # identical, field by field, in the same order
    assert len({p["prompt"][0]["content"] for p in hand}) >= 2  # several prompts gave pairs
    per_prompt = {}
    for p in hand:
        per_prompt.setdefault(p["prompt"][0]["content"], []).append(p["chosen"][0]["content"])
    assert any(len(chosen) > len(set(chosen)) for chosen in per_prompt.values())  # the shorter list was cycled
