"""Pretraining data: documents -> token shards on disk -> fixed-length windows -> batches mixed from several sources.

    docs = read_documents("data/corpora/shakespeare")                 # one string per document
    train, val = split_documents(docs, val_fraction=0.05, seed=0)     # by document, never inside one
    shard = write_shard("cache/shakespeare.train", train, tok)        # ids of each document, then <|endoftext|>
    batches = MixtureBatches({"shakespeare": shard, "code": code}, {"shakespeare": 0.7, "code": 0.3},
                             seq_len=256, batch_size=8)
    batches.next_batch()                                              # {"input_ids": LongTensor (8, 256)}

Design choices
- Packing: the documents of a source are concatenated, each followed by `<|endoftext|>`, and the
  model reads windows of exactly `seq_len` tokens cut anywhere in that stream: no padding, every
  position trains. A window may hold the end of one document and the start of the next; attention is
  not masked at the boundary (GPT-2 / nanoGPT practice): `<|endoftext|>` tells the model a new
  document starts, and it learns to ignore what came before.
- Shards are raw little-endian token ids, uint16 when the vocabulary fits (< 65,536 ids: half the
  bytes) and uint32 otherwise (the official 151,665 ids), read through `np.memmap`, so a corpus larger
  than memory trains the same. A JSON sidecar records dtype, counts and a fingerprint of the tokenizer
  and the text: a shard built with another tokenizer or other text is rebuilt, never silently reused.
- The train / validation split is by document: a held-out play or module is never seen in training.
- Batches are a pure function of (seed, step): a generator seeded with both draws, for every row of
  the step's global batch, a source (by the mixture weights) and a start offset (uniform over that
  source's shard, with replacement, as nanoGPT does). So the position in the data is one integer, a
  checkpoint restores it exactly, and every process computes the same global batch and keeps its own
  slice: two processes with 4 rows each see the same 8 windows as one process with 8.
- Validation windows are fixed: non-overlapping windows evenly spread over each validation shard.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

EOT = "<|endoftext|>"


class DataError(ValueError):
    """A corpus or shard is missing, empty or malformed."""


# ---------------------------------------------------------------------------- documents
def read_documents(path: str | os.PathLike) -> list[str]:
    """The documents of a source: a folder holding documents.jsonl.gz, a .jsonl[.gz] file ({"text": ...} per
    line), or a folder of .txt files (one document each)."""
    path = Path(path)
    if path.is_dir():
        if (path / "documents.jsonl.gz").exists():
            path = path / "documents.jsonl.gz"
        else:
            files = sorted(path.glob("*.txt"))
            if not files:
                raise DataError(f"{path}: no documents.jsonl.gz and no .txt files")
            return [f.read_text(encoding="utf-8") for f in files]
    if not path.exists():
        raise DataError(f"{path}: no such corpus")
    opener = gzip.open if path.suffix == ".gz" else open
    documents = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                documents.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path}, line {n}: expected a JSON object with a \"text\" field") from None
    if not documents:
        raise DataError(f"{path}: no documents")
    return documents


def split_documents(documents: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle the documents (seeded) and hold out `val_fraction` of them (at least one) for validation.

    >>> split_documents(["a", "b", "c", "d"], 0.25, seed=0)
    (['a', 'b', 'd'], ['c'])
    """
    if len(documents) < 2:
        raise DataError(f"a source needs at least 2 documents to split by document, got {len(documents)}")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    n_val = min(len(documents) - 1, max(1, round(val_fraction * len(documents))))
    return [documents[i] for i in order[n_val:]], [documents[i] for i in order[:n_val]]


# ---------------------------------------------------------------------------- shards
def shard_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def fingerprint(tokenizer, documents: list[str]) -> str:
    """sha256 of the tokenizer (vocabulary, merges, added tokens, normaliser) and the documents."""
    h = hashlib.sha256()
    files = tokenizer.files
    h.update(json.dumps([sorted(files.vocab.items()), files.merges, [(t.id, t.content) for t in files.added_tokens],
                         files.normalizer, files.pattern]).encode())
    for doc in documents:
        h.update(doc.encode("utf-8") + b"\0")
    return h.hexdigest()


class TokenShard:
    """One source's token stream on disk (`<stem>.bin` + `<stem>.json`), memory-mapped read-only."""

    def __init__(self, stem: str | os.PathLike):
        self.stem = Path(stem)
        try:
            self.meta = json.loads(self.stem.with_name(self.stem.name + ".json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{self.stem}.json: not a token shard description ({e})") from None
        self.tokens = np.memmap(self.stem.with_name(self.stem.name + ".bin"), dtype=self.meta["dtype"], mode="r")
        if len(self.tokens) != self.meta["n_tokens"]:
            raise DataError(f"{self.stem}.bin holds {len(self.tokens)} tokens, its .json says {self.meta['n_tokens']}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self):
        return f"TokenShard({self.stem.name}: {len(self):,} tokens {self.meta['dtype']}, {self.meta['n_documents']} documents)"


def write_shard(stem: str | os.PathLike, documents: list[str], tokenizer, fingerprint_: str | None = None) -> TokenShard:
    """Tokenise `documents` into `<stem>.bin`: each document's ids followed by `<|endoftext|>`."""
    eot = tokenizer.added_tokens.get(EOT)
    if eot is None:
        raise DataError(f"the tokenizer has no {EOT} token to separate documents")
    dtype = shard_dtype(tokenizer.vocab_size)
    ids = []
    for doc in documents:
        ids.extend(tokenizer.encode(doc))  # special-token text inside a document stays plain text
        ids.append(eot)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_name(stem.name + ".bin.tmp")
    np.asarray(ids, dtype=dtype).tofile(tmp)
    os.replace(tmp, stem.with_name(stem.name + ".bin"))
    meta = {"dtype": dtype.name, "n_tokens": len(ids), "n_documents": len(documents), "eot_id": eot,
            "fingerprint": fingerprint_ or fingerprint(tokenizer, documents)}
    stem.with_name(stem.name + ".json").write_text(json.dumps(meta, indent=1) + "\n")
    return TokenShard(stem)


def build_shards(sources: dict[str, list[str]], tokenizer, folder: str | os.PathLike, val_fraction: float = 0.05,
                 seed: int = 0, log=print) -> dict[str, dict[str, TokenShard]]:
    """Split each source by document and tokenise both halves into `folder`; shards already there are reused
    when their fingerprint matches. Returns {source: {"train": shard, "val": shard}}."""
    shards = {}
    for name, documents in sources.items():
        train, val = split_documents(documents, val_fraction, seed)
        shards[name] = {}
        for split, docs in (("train", train), ("val", val)):
            stem = Path(folder) / f"{name}.{split}"
            fp = fingerprint(tokenizer, docs)
            try:
                shard = TokenShard(stem)
                if shard.meta["fingerprint"] != fp:
                    raise DataError("stale")
            except (DataError, OSError):
                shard = write_shard(stem, docs, tokenizer, fp)
                log(f"tokenised {name} {split}: {len(docs)} documents -> {len(shard):,} tokens ({shard.meta['dtype']})")
            shards[name][split] = shard
    return shards


# ---------------------------------------------------------------------------- batches
class MixtureBatches:
    """Resumable source of training micro-batches: windows of `seq_len` tokens drawn from several shards.

    Each optimizer step uses a global batch of batch_size x grad_accum x world_size windows; this process
    gets its batch_size rows of it per `next_batch()` call, grad_accum calls per step.
    """

    def __init__(self, shards: dict[str, TokenShard], weights: dict[str, float], seq_len: int, batch_size: int,
                 grad_accum: int = 1, rank: int = 0, world_size: int = 1, seed: int = 0):
        unknown = set(weights) - set(shards)
        if unknown:
            raise DataError(f"mixture weight for unknown source(s) {sorted(unknown)}; sources: {sorted(shards)}")
        self.names = [n for n in shards if weights.get(n, 0) > 0]
        if not self.names:
            raise DataError("every mixture weight is zero")
        for n in self.names:
            if len(shards[n]) < seq_len:
                raise DataError(f"source {n!r} has {len(shards[n])} tokens, fewer than one window of {seq_len}")
        self.shards = [shards[n] for n in self.names]
        w = np.array([weights[n] for n in self.names], dtype=np.float64)
        self.probs = w / w.sum()
        self.seq_len, self.batch_size, self.grad_accum = seq_len, batch_size, grad_accum
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.step, self.micro = 0, 0
        self._rows = None

    def global_windows(self, step: int) -> list[tuple[int, int]]:
        """(source index, start offset) of every row of step `step`'s global batch."""
        n = self.batch_size * self.grad_accum * self.world_size
        rng = np.random.default_rng([self.seed, step])
        sources = rng.choice(len(self.shards), size=n, p=self.probs)
        u = rng.random(n)
        return [(s, int(x * (len(self.shards[s]) - self.seq_len + 1))) for s, x in zip(sources.tolist(), u)]

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.micro == 0:
            self._rows = self.global_windows(self.step)
        first = (self.micro * self.world_size + self.rank) * self.batch_size
        rows = [self.shards[s].tokens[o:o + self.seq_len] for s, o in self._rows[first:first + self.batch_size]]
        self.micro += 1
        if self.micro == self.grad_accum:
            self.step, self.micro = self.step + 1, 0
        return {"input_ids": torch.from_numpy(np.stack(rows).astype(np.int64))}  # (batch_size, seq_len)

    def state_dict(self) -> dict:
        return {"step": self.step, "micro": self.micro, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise DataError(f"the checkpoint's data stream has seed {state['seed']}, this run {self.seed}")
        self.step, self.micro = state["step"], state["micro"]
        self._rows = self.global_windows(self.step) if self.micro else None


def eval_batches(shard: TokenShard, seq_len: int, batch_size: int, max_windows: int) -> list[dict[str, torch.Tensor]]:
    """Up to max_windows non-overlapping windows evenly spread over the shard, in full batches of batch_size.

    The windows depend on max_windows only (not on batch_size), and every batch is full, so the mean of
    the batch losses is the mean over the same windows whatever the batch size or number of processes.
    """
    n_windows = len(shard) // seq_len
    take = min(max_windows, n_windows) // batch_size * batch_size
    if max_windows < batch_size:
        raise DataError(f"{shard.stem}: {max_windows} evaluation windows asked for, fewer than one batch of {batch_size} "
                        "(raise the evaluation windows or lower the batch size)")
    if take == 0:
        raise DataError(f"{shard.stem}: {len(shard)} tokens, fewer than one batch of {batch_size} windows of {seq_len}")
    starts = np.linspace(0, n_windows - 1, min(max_windows, n_windows)).round().astype(int)[:take] * seq_len
    windows = np.stack([shard.tokens[s:s + seq_len] for s in starts]).astype(np.int64)
    return [{"input_ids": torch.from_numpy(windows[i:i + batch_size])} for i in range(0, take, batch_size)]
