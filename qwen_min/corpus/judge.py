"""An instruct model as the quality judge of pre-training documents, its score read from the logits of the digits.

    model, tok = load_judge("0.5B", "fp32")               # Qwen2.5-Coder-0.5B-Instruct (qm.load's names)
    judge_scores(model, tok, ["def f(x):\\n    return x", "buy buy buy cheap"])
    # [{"score": 6.1, "digit_mass": 0.97, "p": [...10 probabilities...]}, {"score": 1.8, ...}]
    score_into(run / "judge.jsonl", docs, model, tok)      # resumable: documents already in the file are skipped

The Qwen2.5 report (arXiv 2412.15115 §3.1) has Qwen2-Instruct models score pre-training samples for quality;
it does not publish the prompt or the scale. This is the same idea at the smallest scale the course can run.

Design choices
- The answer is read from the logits, not from generated text: one forward pass per document, the
  next-token distribution after the assistant's turn opens, restricted to the ten tokens "0".."9"
  (single tokens in Qwen's vocabulary) and renormalised. The score is the expected digit, a number in
  [0, 9] that ranks documents finely (a sampled digit would tie most of them, and free text may not
  hold a number at all). `digit_mass`, the probability the model gave the digits before renormalising,
  says how much it wanted to answer with one: near 1 means the prompt is understood.
- The document is cut to its first `max_doc_tokens` tokens before it goes into the prompt: the judge sees
  what fits its budget, as a web-scale judge must.
- Batched with left padding and an attention mask, so every sequence's last position is the answer
  position; a forward hook on the final norm keeps only that position, so the LM head (151,936 rows, ~40%
  of the 0.5B model's compute per token) runs once per document, not once per token.
- Deterministic: eval mode, no sampling, fixed batch order. Scores do not depend on which batch a document
  falls in beyond float rounding (masked padding; tested to 1e-4), so a resumed run agrees with an
  uninterrupted one to that tolerance.
- Resumable: one JSON line per document appended after each batch and flushed; a restarted run reads
  the ids already there and scores only the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qwen_min.checkpoints.load import load
from qwen_min.progress import progress_bar

PROMPT = ("Rate the quality of the following text as training data for a language model. "
          "Give 0 for spam, advertising, gibberish, scrambled or truncated text, repeated lines or broken code; "
          "give 9 for clean, complete, well-formed prose, poetry or source code.\n\n"
          "Text:\n<<<\n{doc}\n>>>\n\nAnswer with a single digit from 0 to 9.")
DIGITS = [str(i) for i in range(10)]


def load_judge(checkpoint: str = "0.5B", format: str = "fp32", log=print):
    """(model, tokenizer) of the judge: a --checkpoint and --format as every command names them (checkpoints/load.py)."""
    return load(checkpoint, format, log=log)


def prompt_ids(tok, text: str, max_doc_tokens: int = 256) -> list[int]:
    """Token ids of the judge's chat prompt for `text` (cut to max_doc_tokens), ending where the answer starts."""
    doc = tok.decode(tok.encode(text)[:max_doc_tokens])
    chat = tok.render_chat([{"role": "user", "content": PROMPT.format(doc=doc)}], add_generation_prompt=True)
    return tok.encode(chat, allowed_special="all")


def digit_ids(tok) -> list[int]:
    ids = [tok.encode(d) for d in DIGITS]
    if any(len(i) != 1 for i in ids):
        raise ValueError("the judge's tokenizer does not encode each digit 0-9 as one token")
    return [i[0] for i in ids]


@torch.inference_mode()
def judge_scores(model, tok, texts: list[str], max_doc_tokens: int = 256) -> list[dict]:
    """Score one batch of texts: left-padded, one forward pass, the digits' logits at the last position."""
    prompts = [prompt_ids(tok, t, max_doc_tokens) for t in texts]
    width = max(map(len, prompts))
    pad = tok.added_tokens.get("<|endoftext|>", 0)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (b, width), left-padded
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (b, width)
    last_only = model.model.norm.register_forward_hook(lambda module, args, out: out[:, -1:])
    try:
        logits = model(ids, attention_mask=mask)[:, -1].float()  # (b, vocab)
    finally:
        last_only.remove()
    probs = torch.softmax(logits, dim=-1)[:, digit_ids(tok)]  # (b, 10)
    mass = probs.sum(-1)  # (b,)
    p = probs / mass[:, None]
    score = (p * torch.arange(10.0)).sum(-1)  # (b,): the expected digit
    return [{"score": s, "digit_mass": m, "p": [round(x, 6) for x in row]}
            for s, m, row in zip(score.tolist(), mass.tolist(), p.tolist())]


def read_scores(path: str | Path) -> dict[str, dict]:
    """id -> score record of a judge.jsonl (a line cut short by a crash is ignored: it is scored again)."""
    path = Path(path)
    scores = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            scores[record["id"]] = record
    return scores


def score_into(path: str | Path, docs: list[dict], model, tok, batch_size: int = 8, max_doc_tokens: int = 256,
               progress: bool = True) -> dict[str, dict]:
    """Score every doc ({"id", "text", ...}) not yet in `path` (judge.jsonl), appending after each batch."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    path = Path(path)
    done = read_scores(path)
    todo = [d for d in docs if d["id"] not in done]
    if path.exists() and path.read_bytes()[-1:] not in (b"", b"\n"):  # a line cut short by a crash: end it
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n")
    bar = progress_bar(total=len(docs), initial=len(docs) - len(todo), desc="judge", unit="doc", enabled=progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        records = [{"id": d["id"], **r} for d, r in zip(batch, judge_scores(model, tok, [d["text"] for d in batch],
                                                                             max_doc_tokens))]
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
        done.update((r["id"], r) for r in records)
        bar.update(len(batch))
    bar.close()
    return done
