"""Reference answers and the measurement of notebooks/08b_data_and_scaling.ipynb's exercises (see __init__.py)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from qwen_min.corpus import dedup
from qwen_min.corpus.degrade import SOURCES, build_corpus
from qwen_min.course.exercises.watch import answer
from qwen_min.scaling import fit
from qwen_min.scaling.sweep import model_config, train_tiny
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import EOT, eval_batches, write_shard

BUDGET = 2**16  # training tokens of each corpus
CORPUS_SIZES = dict(clean_per_source=60, degraded_per_kind=30, leaks=5)  # `qwen-min data score`'s default corpus


@answer("ch08b_data_and_scaling.check_minhash_signature")
def minhash_signature(text: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """datasketch's signature; (a, b) are the checker's `permutations(len(a), seed=1)`, which datasketch draws too."""
    return dedup.minhash(text, len(a)).hashvalues


@answer("ch08b_data_and_scaling.check_corpus_prediction")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_corpus_losses(seed: int = 0) -> dict[str, float]:
    """Held-out loss on clean passages (mean of the three domains) of sweep size s2 trained on BUDGET tokens of
    A (every document of the default scored corpus) and of B (its clean documents only), same seed, same tokenizer."""
    docs = build_corpus(0, **CORPUS_SIZES)
    corpora = {"A": docs, "B": [d for d in docs if d["label"] == "clean"]}
    held = build_corpus(0, 60, 0, 0, split="val")
    tok = train_bpe([d["text"] for d in docs], 1024, special_tokens=(EOT,))
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        evals = {s: eval_batches(write_shard(Path(tmp) / f"held-{s}", [d["text"] for d in held if d["source"] == s], tok),
                                 64, 16, 64) for s in SOURCES}
        for name, corpus in corpora.items():
            shards = {s: write_shard(Path(tmp) / f"{name}-{s}", [d["text"] for d in corpus if d["source"] == s], tok)
                      for s in SOURCES}
            r = train_tiny(Path(tmp) / name, model_config("s2", tok.vocab_size), shards,
                           {s: float(len(sh)) for s, sh in shards.items()}, evals, lr=1e-2, batch=16, tokens=BUDGET,
                           seed=seed)
            losses[name] = float(np.mean([r[f"val_loss/{s}"] for s in SOURCES]))
    return losses


@answer("ch08b_data_and_scaling.check_fixed_power_law")
def power_law(x, y):
    found = fit.fit_power_law(x, y)
    return found["coef"], found["exponent"]
