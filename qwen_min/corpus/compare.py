"""What filtering buys: the same small Qwen trained on the unfiltered, filtered and reweighted corpus at one token
budget, several seeds, scored on held-out clean text.

    summary = compare_corpora("runs/data", "runs/compare", seeds=(0, 1, 2, 3, 4))
    summary["arms"]["filtered"]["mean"], summary["differences"]["filtered - unfiltered"]["ci"]

Design choices
- Arms (all from one scored run folder, score.py):
  unfiltered  every document, sampled in proportion to its tokens;
  filtered    what `qwen-min data filter` keeps with the stages in `use`;
  oracle      the documents labelled clean only, deduplicated: what a perfect quality filter would keep;
  reweighted  the filtered documents with the three domains sampled equally (1/3 each) instead of by their
              tokens: the report's domain rebalancing (§3.1: some domains down-, others up-sampled), here
              aimed at the target the evaluation weighs equally.
- Same budget: every arm trains on the same number of tokens (a smaller corpus is repeated more), same model
  (sweep size s3, 93K non-embedding parameters), same lr and batch (1e-2 and 16 windows of 64 tokens, fixed
  before the sweep ran: not s3's optimum, which the sweep puts near 5e-3 and ~300 tokens, but the same for
  every arm), same tokenizer (a 1,024-token BPE trained once on the unfiltered corpus), the package's Trainer.
- Held-out clean text: clean passages cut from the documents pretraining holds out (build_corpus(split="val")),
  never trained on by any arm; the score is the mean of the three domains' losses, so each domain counts once.
- Seeds pair the arms: seed k draws the same initial weights in every arm, so the difference between two arms
  is taken seed by seed and its 95% interval is a t-interval over the seeds (paired), narrower than comparing
  two independent means.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from qwen_min.corpus.degrade import SOURCES, build_corpus
from qwen_min.corpus.score import kept_ids
from qwen_min.progress import progress_bar
from qwen_min.scaling.sweep import model_config, train_tiny
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import EOT, eval_batches, write_shard

MODEL_SIZE = "s3"
LR = 1e-2
BATCH = 16
TOKENS = 2**18
VOCAB = 1024
ARMS = ("unfiltered", "filtered", "oracle", "reweighted")
EVAL_PASSAGES = 60  # per domain


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of `values` (scipy's t quantile)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else float("inf")
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def arm_documents(run: str | Path, use: tuple[str, ...]) -> dict[str, list[dict]]:
    """arm -> its training documents (reweighted has the filtered documents; its weights differ)."""
    docs, removed = kept_ids(run, use)
    gone = set().union(*removed.values())
    dedup_dropped = set(json.loads((Path(run) / "dedup.json").read_text(encoding="utf-8"))["dropped"])
    filtered = [d for d in docs if d["id"] not in gone]
    return {"unfiltered": docs, "filtered": filtered, "reweighted": filtered,
            "oracle": [d for d in docs if d["label"] == "clean" and d["id"] not in dedup_dropped]}


def compare_corpora(run: str | Path, out: str | Path, seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
                    use: tuple[str, ...] = ("heuristics", "dedup", "decontaminate"), progress: bool = True,
                    log=print) -> dict:
    """Train every arm with every seed into out/<arm>-seed<k>/ (resumable: finished runs are read back) and write
    out/summary.json: per-arm held-out losses, and paired differences with 95% intervals."""
    out = Path(out)
    arms = arm_documents(run, use)
    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tok = Tokenizer.from_pretrained(tok_dir)
    else:
        tok = train_bpe([d["text"] for d in arms["unfiltered"]], VOCAB, special_tokens=(EOT,))
        tok.save_pretrained(tok_dir)
    held = build_corpus(0, EVAL_PASSAGES, 0, 0, split="val")
    evals = {s: eval_batches(write_shard(out / "data" / f"heldout-{s}", [d["text"] for d in held if d["source"] == s], tok),
                             64, 16, 64) for s in SOURCES}
    shards, weights = {}, {}
    for arm in ARMS:
        docs = arms["filtered" if arm == "reweighted" else arm]
        shards[arm] = {s: write_shard(out / "data" / f"{arm}-{s}", [d["text"] for d in docs if d["source"] == s], tok)
                       for s in SOURCES}
        weights[arm] = ({s: 1.0 for s in SOURCES} if arm == "reweighted" else
                        {s: float(len(shards[arm][s])) for s in SOURCES})  # by tokens: every token equally likely
    runs = [(arm, seed) for seed in seeds for arm in ARMS]
    losses: dict[str, dict[str, list[float]]] = {arm: {s: [] for s in SOURCES} for arm in ARMS}
    for arm, seed in progress_bar(runs, desc="compare", unit="run", enabled=progress):
        r = train_tiny(out / f"{arm}-seed{seed}", model_config(MODEL_SIZE, tok.vocab_size), shards[arm], weights[arm],
                       evals, lr=LR, batch=BATCH, tokens=TOKENS, seed=seed)
        for s in SOURCES:
            losses[arm][s].append(r[f"val_loss/{s}"])
    score = {arm: [float(np.mean(v)) for v in zip(*losses[arm].values())] for arm in ARMS}  # per seed: mean of domains
    summary = {"seeds": list(seeds), "use": list(use), "model": MODEL_SIZE, "lr": LR, "batch": BATCH, "tokens": TOKENS,
               "documents": {arm: len(arms["filtered" if arm == "reweighted" else arm]) for arm in ARMS},
               "train_tokens": {arm: {s: len(sh) for s, sh in shards[arm].items()} for arm in ARMS},
               "weights": weights, "losses": losses, "arms": {}, "differences": {}}
    for arm in ARMS:
        mean, low, high = t_interval(score[arm])
        summary["arms"][arm] = {"per_seed": score[arm], "mean": mean, "ci": [low, high],
                                "by_domain": {s: float(np.mean(v)) for s, v in losses[arm].items()}}
    for a, b in (("filtered", "unfiltered"), ("oracle", "unfiltered"), ("oracle", "filtered"), ("reweighted", "filtered")):
        mean, low, high = t_interval(np.array(score[a]) - np.array(score[b]))
        summary["differences"][f"{a} - {b}"] = {"mean": mean, "ci": [low, high]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(compare_markdown(summary))
    return summary


def compare_markdown(summary: dict) -> str:
    n = len(summary["seeds"])
    lines = [f"Held-out clean text, mean of the three domains' losses (nats/token), {n} seeds, 95% t-intervals:", "",
             "| arm | documents | mean loss (95% CI) | " + " | ".join(SOURCES) + " |", "|---|---|---|" + "---|" * len(SOURCES)]
    for arm, a in summary["arms"].items():
        lines.append(f"| {arm} | {summary['documents'][arm]} | {a['mean']:.4f} ({a['ci'][0]:.4f}-{a['ci'][1]:.4f}) | "
                     + " | ".join(f"{a['by_domain'][s]:.4f}" for s in SOURCES) + " |")
    lines += ["", "| paired difference | mean | 95% CI | interval excludes 0 |", "|---|---|---|---|"]
    for k, d in summary["differences"].items():
        lines.append(f"| {k} | {d['mean']:+.4f} | {d['ci'][0]:+.4f} to {d['ci'][1]:+.4f} | "
                     f"{'yes' if d['ci'][0] > 0 or d['ci'][1] < 0 else 'no'} |")
    return "\n".join(lines) + "\n"


def read_summary(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))

