"""Perplexity on held-out text: how surprised a model is by text it was not tuned on, one number per model.

    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir())
    ids = held_out_ids(tok, "python-stdlib", n_tokens=2048)      # the validation documents of data/corpora
    perplexity(model, ids, window=512)                           # e.g. ~3 for the 0.5B coder on Python

Design choices
- perplexity = exp(mean negative log-likelihood of each token given the ones before it), the
  measure GPTQ, AWQ and llama.cpp's `llama-perplexity` report for quantised models. It compares
  models with the *same tokenizer* on the same ids only.
- Non-overlapping windows of `window` tokens (the first token of each window is context only):
  simple and deterministic. A sliding window would give each token more context and a lower
  number; quantisation comparisons need the same protocol, not the lowest one.
- Held-out means the validation documents of `data/corpora/<source>` as pretraining splits
  them (`split_documents`, 5%, seed 0: train/data.py), so chapter 08's models never saw them
  either. Each document is followed by <|endoftext|>, as in the pretraining shards.
- The loss is `causal_lm_loss` (model/qwen.py), computed in float32 whatever the model's dtype.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from qwen_min.model.qwen import causal_lm_loss
from qwen_min.paths import data_dir
from qwen_min.train.data import EOT, read_documents, split_documents

SOURCES = ("python-stdlib", "shakespeare", "chinese-poetry")


def held_out_ids(tokenizer, source: str = "python-stdlib", n_tokens: int = 2048, val_fraction: float = 0.05,
                 seed: int = 0) -> list[int]:
    """The first `n_tokens` ids of the held-out documents of `data/corpora/<source>`, each ended by <|endoftext|>."""
    return _corpus_ids(tokenizer, source, n_tokens, "held-out", val_fraction, seed)


CALIBRATION_TOKENS = {"python-stdlib": 4096, "shakespeare": 2048, "chinese-poetry": 2048}


def calibration_ids(tokenizer, tokens_per_source: dict[str, int] | None = None, window: int = 512,
                    val_fraction: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(sequences, window) ids from the *training* documents of `data/corpora` (default: `CALIBRATION_TOKENS`),
    the calibration set of GPTQ (quant/gptq.py), disjoint from the held-out text perplexity is measured on."""
    tokens_per_source = tokens_per_source or CALIBRATION_TOKENS
    rows = []
    for source, n_tokens in tokens_per_source.items():
        if n_tokens < window or n_tokens % window:
            raise ValueError(f"{source}: {n_tokens} tokens is not a positive multiple of the window ({window})")
        rows.append(torch.tensor(_corpus_ids(tokenizer, source, n_tokens, "training", val_fraction, seed)).reshape(-1, window))
    return torch.cat(rows)


def _corpus_ids(tokenizer, source: str, n_tokens: int, split: str, val_fraction: float, seed: int) -> list[int]:
    if source not in SOURCES:
        raise ValueError(f"unknown corpus {source!r} (choose from {', '.join(SOURCES)})")
    train, val = split_documents(read_documents(data_dir("corpora", source)), val_fraction, seed)
    ids: list[int] = []
    for doc in val if split == "held-out" else train:
        ids += tokenizer.encode(doc) + tokenizer.encode(EOT, allowed_special="all")
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
    raise ValueError(f"the {split} documents of {source} have {len(ids)} tokens, fewer than the {n_tokens} asked for")


@torch.inference_mode()
def perplexity(model, ids: Sequence[int] | torch.Tensor, window: int = 512, batch_size: int = 4) -> float:
    """exp(mean next-token negative log-likelihood) of `model` over `ids`, cut into non-overlapping windows.

    A tail shorter than a window is dropped, so every token is scored with the same context budget.

    >>> import qwen_min as qm
    >>> model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=256)).eval()
    >>> 200 < perplexity(model, list(range(256)) * 2, window=64) < 320   # an untrained model: about the vocabulary size
    True
    """
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n_windows = len(ids) // window
    if window < 2 or n_windows == 0:
        raise ValueError(f"perplexity needs at least one window of {window} >= 2 tokens, got {len(ids)} tokens")
    windows = ids[:n_windows * window].reshape(n_windows, window)  # (n, window)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in windows.split(batch_size):
        batch = batch.to(device)
        loss = causal_lm_loss(model(batch), batch)  # mean over (b * (window - 1)) predictions
        predictions = batch.shape[0] * (window - 1)
        total, count = total + loss.item() * predictions, count + predictions
    return math.exp(total / count)
