"""Passkey retrieval: can the model repeat one number hidden at a chosen depth of a long, repetitive text?

    ids = passkey_prompt(tok, length=4096, depth=0.5, key=31337, template="chat")   # exactly 4,096 tokens
    rows = run_passkey(model, tok, lengths=[1024, 2048], depths=[0, 0.5, 1], trials=2, template="chat")
    summarize(rows)["accuracy"]        # {"1024": {"0.0": 1.0, "0.5": 1.0, "1.0": 1.0}, "2048": {...}}

The test of Mohtashami & Jaggi 2023 (landmark attention), used with the same text by Position Interpolation,
LongLoRA and ChunkLlama (the DCA paper, arXiv 2402.17463): an instruction line, the filler "The grass is green.
The sky is blue. ..." repeated, "The pass key is K. Remember it. K is the pass key." at the chosen depth, more
filler, then "What is the pass key? The pass key is". K is drawn from 1..50,000; greedy decoding; a prompt counts
as retrieved when the first number of the reply is K. Qwen2.5 reports it for its long-context models (report
arXiv 2412.15115 §5.2.4: Qwen2.5-Turbo retrieves it at every depth up to 1M tokens).

Design choices
- Exact lengths: the prompt is built from token ids (instruction, filler sentences, needle, question, each
  tokenized once and joined), so a prompt of `length` has exactly `length` tokens and every method is compared
  on the same lengths. The filler is whole repeats of its 24-token paragraph plus the first tokens of one more,
  which ends the haystack just before the question; the needle goes between whole repeats, at the repeat
  boundary nearest `depth` (so within one paragraph, 24 tokens, of the requested depth).
- Two templates. "plain" is the original test: a base model continues the text. "chat" is what a user of an
  instruct model (both official checkpoints here) expects: the instruction, haystack and question form the user
  turn of the model's chat template (default system prompt included) and the assistant turn is pre-filled with
  "The pass key is", so the reply starts where the number goes, as in the plain test. The command picks "chat"
  for a checkpoint whose name says instruct.
- Keys are drawn per cell from a string seed (seed, length, depth, trial), so a cell has the same key in every
  run and every method: results resume and compare cell by cell.
- Decoding stops after the number (a digit followed by something else) or after 8 new tokens (five digits and
  some spacing): the time of a prompt is its prefill plus a few steps.
- Files (when `out` is given): results.jsonl, one line per (length, depth, trial), appended as each finishes,
  and summary.json, rewritten after each line: the run's settings, accuracy per length x depth, seconds per
  prompt per length and the KV-cache bytes per length. A finished cell is never run again (resume).
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Sequence

import torch

from qwen_min.generation import QWEN_STOP_IDS, generate
from qwen_min.progress import progress_bar
from qwen_min.tokenizer.bpe import Tokenizer

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
               "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key?"
ANSWER_PREFIX = "The pass key is"
TEMPLATES = ("plain", "chat")
MAX_KEY = 50_000
MAX_NEW_TOKENS = 8
_SLOT = "\x00"  # where the user's text goes in the rendered chat template


def _pieces(tok: Tokenizer, template: str) -> tuple[list[int], list[int]]:
    """(head, tail) ids around the haystack: the instruction before it, the question and answer prefix after it."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown passkey template {template!r} (choose from {', '.join(TEMPLATES)})")
    if template == "plain":
        return tok.encode(INSTRUCTION), tok.encode(f"\n{QUESTION} {ANSWER_PREFIX}")
    before, after = tok.render_chat([{"role": "user", "content": _SLOT}], add_generation_prompt=True).split(_SLOT)
    head = tok.encode(before, allowed_special="all") + tok.encode(INSTRUCTION)
    tail = tok.encode(f"\n{QUESTION}") + tok.encode(after, allowed_special="all") + tok.encode(ANSWER_PREFIX)
    return head, tail


def passkey_prompt(tok: Tokenizer, length: int, depth: float, key: int, template: str = "plain") -> list[int]:
    """The ids of a passkey prompt of exactly `length` tokens with `key` at `depth` (0 = right after the
    instruction, 1 = right before the end of the haystack).

    >>> ids = passkey_prompt(tok, 300, 0.5, 4321)     # tok: the official tokenizer
    >>> len(ids), tok.decode(ids)[-60:]              # the haystack ends inside its last filler paragraph
    (300, 'low. Here we go. There\\nWhat is the pass key? The pass key is')
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    head, tail = _pieces(tok, template)
    needle = tok.encode(" " + NEEDLE.format(key=key))
    unit = tok.encode(" " + FILLER)
    filler = length - len(head) - len(needle) - len(tail)  # haystack tokens around the needle
    if filler < 0:
        raise ValueError(f"a {template} passkey prompt needs at least {length - filler} tokens "
                         f"(instruction, key {key} and question), got length {length}")
    units, rest = divmod(filler, len(unit))
    before = round(depth * units)
    return head + unit * before + needle + unit * (units - before) + unit[:rest] + tail


def passkey_key(seed: int, length: int, depth: float, trial: int, max_key: int = MAX_KEY) -> int:
    """The key of one cell: the same for a (seed, length, depth, trial) in every run.

    >>> passkey_key(0, 1024, 0.5, 0) == passkey_key(0, 1024, 0.5, 0) != passkey_key(0, 1024, 0.5, 1)
    True
    """
    return random.Random(f"passkey:{seed}:{length}:{float(depth)}:{trial}").randint(1, max_key)


def read_answer(reply: str) -> int | None:
    """The first number in the reply, or None.

    >>> read_answer(" 31337. Remember it."), read_answer(" I don't know.")
    (31337, None)
    """
    found = re.search(r"\d+", reply)
    return int(found.group()) if found else None


def read_results(out: str | Path) -> list[dict]:
    """The finished rows of out/results.jsonl (a last line cut by an interruption is dropped from the file)."""
    path = Path(out) / "results.jsonl"
    if not path.is_file():
        return []
    rows, lines = [], path.read_text().splitlines()
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the run stopped while writing this line
            break
    if len(rows) < len(lines):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    """Accuracy per length x depth, per length and overall; mean seconds per prompt and KV-cache bytes per length.

    >>> summarize([{"length": 64, "depth": 0.5, "correct": True, "seconds": 1.0, "kv_cache_bytes": 10},
    ...            {"length": 64, "depth": 0.5, "correct": False, "seconds": 3.0, "kv_cache_bytes": 10}])["accuracy"]
    {'64': {'0.5': 0.5}}
    """
    cells: dict[int, dict[float, list[bool]]] = {}
    seconds: dict[int, list[float]] = {}
    kv_bytes: dict[int, int] = {}
    for r in sorted(rows, key=lambda r: (r["length"], r["depth"])):
        cells.setdefault(r["length"], {}).setdefault(float(r["depth"]), []).append(bool(r["correct"]))
        seconds.setdefault(r["length"], []).append(r["seconds"])
        kv_bytes[r["length"]] = max(kv_bytes.get(r["length"], 0), r["kv_cache_bytes"])
    mean = lambda xs: round(sum(xs) / len(xs), 4)
    return {
        "prompts": len(rows),
        "accuracy": {str(n): {str(d): mean(v) for d, v in by_depth.items()} for n, by_depth in cells.items()},
        "accuracy_per_length": {str(n): mean([c for v in by_depth.values() for c in v]) for n, by_depth in cells.items()},
        "accuracy_overall": mean([bool(r["correct"]) for r in rows]) if rows else None,
        "seconds_per_prompt": {str(n): round(sum(s) / len(s), 2) for n, s in seconds.items()},
        "kv_cache_bytes": {str(n): b for n, b in kv_bytes.items()},
    }


def write_summary(out: str | Path, settings: dict, rows: Sequence[dict]) -> dict:
    """summary.json = {"settings": ..., **summarize(rows)}, written through a temporary name (never half written)."""
    summary = {"settings": settings, **summarize(rows)}
    path = Path(out) / "summary.json"
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(summary, indent=1) + "\n")
    partial.replace(path)
    return summary


@torch.inference_mode()
def run_passkey(model, tok: Tokenizer, lengths: Sequence[int], depths: Sequence[float], trials: int = 1,
                template: str = "plain", seed: int = 0, out: str | Path | None = None, settings: dict | None = None,
                progress: bool = True, max_key: int = MAX_KEY) -> list[dict]:
    """Run every (length, depth, trial) cell greedily; return one row per cell (finished ones from `out` included).

    max_key: keys are drawn from 1..max_key (the test's 50,000 by default; a small model trained on shorter keys
    in chapter 8c is tested on keys of the same range).

    out: a folder; rows are appended to out/results.jsonl as they finish and out/summary.json is rewritten after
    each (`settings` recorded in it); cells already in results.jsonl are skipped.
    """
    kept = read_results(out) if out is not None else []
    done = {(r["length"], float(r["depth"]), r["trial"]) for r in kept}
    cells = [(n, float(d), i) for n in lengths for d in depths for i in range(trials)]
    todo = [c for c in cells if c not in done]
    rows = list(kept)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_summary(out, settings or {}, rows)
    bytes_per_token = model.config.kv_cache_bytes_per_token(model.model.embed_tokens.weight.element_size())
    digits_done = lambda ids: re.search(r"\d\D", tok.decode(ids)) is not None
    bar = progress_bar(total=len(cells), initial=len(cells) - len(todo), desc="passkey", unit="prompt", enabled=progress)
    for length, depth, trial in todo:
        bar.set_postfix(length=length, depth=depth)
        key = passkey_key(seed, length, depth, trial, max_key)
        ids = passkey_prompt(tok, length, depth, key, template)
        start = time.perf_counter()
        reply_ids = generate(model, ids, max_new_tokens=MAX_NEW_TOKENS, stop_ids=QWEN_STOP_IDS, stop_when=digits_done)
        seconds = time.perf_counter() - start
        reply = tok.decode(reply_ids)
        answer = read_answer(reply)
        row = {"length": length, "depth": depth, "trial": trial, "key": key, "answer": answer, "correct": answer == key,
               "reply": reply, "seconds": round(seconds, 3), "kv_cache_bytes": (length + MAX_NEW_TOKENS) * bytes_per_token}
        rows.append(row)
        if out is not None:
            with open(Path(out) / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            write_summary(out, settings or {}, rows)
        bar.update(1)
    bar.close()
    return rows
