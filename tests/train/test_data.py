"""Pretraining data: the shipped corpora, token shards, the split by document, windows, mixture and resumable batches."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min.train.data import (
    EOT,
    DataError,
    MixtureBatches,
    TokenShard,
    build_shards,
    eval_batches,
    read_documents,
    shard_dtype,
    split_documents,
    write_shard,
)

REPO = Path(__file__).resolve().parents[2]
CORPORA = ["shakespeare", "chinese-poetry", "python-stdlib"]


@pytest.fixture(scope="module")
def small_tok(tiny_corpora):
    docs = read_documents(tiny_corpora / "prose") + read_documents(tiny_corpora / "code")
    return qm.train_bpe(docs, 320, special_tokens=(EOT,))


@pytest.fixture(scope="module")
def shards(tiny_corpora, small_tok, tmp_path_factory):
    sources = {name: read_documents(tiny_corpora / name) for name in ("prose", "code")}
    return build_shards(sources, small_tok, tmp_path_factory.mktemp("shards"), val_fraction=0.1, seed=0, log=lambda *a: None)


def test_shipped_corpora_are_small_documents_of_their_scripts():
    total = 0
    for name in CORPORA:
        path = REPO / "data" / "corpora" / name / "documents.jsonl.gz"
        total += path.stat().st_size
        docs = read_documents(path.parent)
        assert len(docs) >= 40 and all(d.strip() for d in docs)
    assert total < 30e6
    assert "ROMEO" in "".join(read_documents(REPO / "data/corpora/shakespeare"))
    assert sum("\u4e00" <= c <= "\u9fff" for c in read_documents(REPO / "data/corpora/chinese-poetry")[0]) > 10
    compile(read_documents(REPO / "data/corpora/python-stdlib")[0], "module", "exec")  # real Python


def test_split_is_by_document_and_deterministic():
    docs = [f"doc {i}" for i in range(50)]
    train, val = split_documents(docs, 0.1, seed=3)
    assert len(val) == 5 and sorted(train + val) == sorted(docs) and not set(train) & set(val)
    assert split_documents(docs, 0.1, seed=3) == (train, val)
    assert split_documents(docs, 0.1, seed=4) != (train, val)
    assert len(split_documents(docs[:3], 0.0)[1]) == 1  # always at least one held-out document
    with pytest.raises(DataError, match="at least 2 documents"):
        split_documents(["only"], 0.5)


def test_shard_holds_each_document_then_endoftext(tmp_path, small_tok):
    docs = ["To be, or not to be", "def f(x):\n    return x", "<|endoftext|> stays text"]
    shard = write_shard(tmp_path / "s", docs, small_tok)
    eot = small_tok.added_tokens[EOT]
    want = [i for d in docs for i in small_tok.encode(d) + [eot]]
    assert shard.tokens.dtype == np.uint16 and shard.tokens.tolist() == want
    assert list(want).count(eot) == 3  # the text "<|endoftext|>" inside a document is not a separator
    reopened = TokenShard(tmp_path / "s")
    assert isinstance(reopened.tokens, np.memmap) and reopened.tokens.tolist() == want


def test_official_tokenizer_needs_uint32(tmp_path, official_tokenizer_dir):
    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    assert shard_dtype(tok.vocab_size) == np.uint32 and shard_dtype(65536) == np.uint16
    shard = write_shard(tmp_path / "o", ["Hello world", "你好"], tok)
    assert shard.tokens.dtype == np.uint32
    assert shard.tokens.tolist() == tok.encode("Hello world") + [151643] + tok.encode("你好") + [151643]


def test_build_shards_reuses_and_rebuilds_on_change(tmp_path, tiny_corpora, small_tok):
    sources = {"prose": read_documents(tiny_corpora / "prose")}
    logged = []
    build_shards(sources, small_tok, tmp_path, log=logged.append)
    assert len(logged) == 2  # train and val tokenised
    build_shards(sources, small_tok, tmp_path, log=logged.append)
    assert len(logged) == 2  # reused
    other = qm.train_bpe(sources["prose"], 300, special_tokens=(EOT,))
    build_shards(sources, other, tmp_path, log=logged.append)
    assert len(logged) == 4  # another tokenizer: rebuilt


def test_windows_are_slices_of_the_shards_and_follow_the_mixture(shards):
    train = {n: s["train"] for n, s in shards.items()}
    batches = MixtureBatches(train, {"prose": 0.75, "code": 0.25}, seq_len=16, batch_size=8, seed=1)
    names = batches.names
    counts = np.zeros(2)
    for step in range(100):
        rows = batches.global_windows(step)
        batch = batches.next_batch()["input_ids"]
        assert batch.shape == (8, 16) and batch.dtype == torch.int64
        for row, (s, o) in zip(batch, rows):
            assert row.tolist() == train[names[s]].tokens[o:o + 16].tolist()
            counts[s] += 1
    assert abs(counts[names.index("prose")] / counts.sum() - 0.75) < 0.05


def test_position_resumes_and_global_batch_splits_across_processes_and_micro_batches(shards):
    train = {n: s["train"] for n, s in shards.items()}
    make = lambda **kw: MixtureBatches(train, {"prose": 1, "code": 1}, seq_len=16, seed=5, **kw)  # noqa: E731
    one = make(batch_size=4)
    reference = [one.next_batch()["input_ids"] for _ in range(6)]
    # resume: a fresh source loaded with the state after 3 steps continues identically
    first = make(batch_size=4)
    for _ in range(3):
        first.next_batch()
    resumed = make(batch_size=4)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert all(torch.equal(resumed.next_batch()["input_ids"], reference[k]) for k in range(3, 6))
    # 2 processes x 2 micro-batches x 1 row see the 4 rows of one process's batch
    ranks = [make(batch_size=1, grad_accum=2, world_size=2, rank=r) for r in range(2)]
    for step in range(6):
        rows = [[ranks[r].next_batch()["input_ids"] for r in range(2)] for _ in range(2)]  # [micro][rank]
        assert torch.equal(torch.cat([rows[m][r] for m in range(2) for r in range(2)]), reference[step])
    with pytest.raises(DataError, match="seed"):
        make(batch_size=4).load_state_dict({"step": 0, "micro": 0, "seed": 6})


def test_eval_batches_are_fixed_non_overlapping_windows(shards):
    val = shards["prose"]["val"]
    batches = eval_batches(val, seq_len=8, batch_size=3, max_windows=7)
    rows = torch.cat([b["input_ids"] for b in batches])
    assert len(batches) == 2 and rows.shape == (6, 8)  # full batches only
    starts = []
    tokens = val.tokens.tolist()
    for row in rows.tolist():
        start = next(s for s in range(0, len(tokens) - 7, 8) if tokens[s:s + 8] == row)
        starts.append(start)
    assert len(set(starts)) == 6 and starts == sorted(starts)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, eval_batches(val, 8, 3, 7)))
    singles = torch.cat([b["input_ids"] for b in eval_batches(val, 8, 1, 7)])
    assert torch.equal(singles[:6], rows)  # the same windows whatever the batch size


def test_bad_corpora_fail_with_one_clear_line(tmp_path, shards):
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write('{"text": "fine"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl.gz, line 2"):
        read_documents(bad)
    with pytest.raises(DataError, match="no such corpus"):
        read_documents(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown source"):
        MixtureBatches({"prose": shards["prose"]["train"]}, {"poetry": 1.0}, seq_len=8, batch_size=1)
    with pytest.raises(DataError, match="fewer than one window"):
        MixtureBatches({"prose": shards["prose"]["val"]}, {"prose": 1.0}, seq_len=10**6, batch_size=1)
