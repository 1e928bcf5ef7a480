"""qm.train_bpe against a naive trainer (full recount per merge) and HF tokenizers' BpeTrainer."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest

from qwen_min.bench.corpus import TRICKY, mixed_corpus
from qwen_min.cli import main
from qwen_min.tokenizer.bpe import BYTE_TO_CHAR
from qwen_min.tokenizer.bpe_training import BYTE_TOKENS, count_words, train_bpe
from qwen_min.tokenizer.files import QWEN_PRETOKENIZE_REGEX

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def naive_merges(texts, n_merges):
    """The textbook loop: recount every pair of every word at each step. Same tie-break: smallest ids first."""
    ids = {t: i for i, t in enumerate(BYTE_TOKENS)}
    words = {tuple(BYTE_TO_CHAR[b] for b in w.encode("utf-8")): c for w, c in count_words(texts).items()}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], -ids[p[0]], -ids[p[1]]))
        merges.append(best)
        ids.setdefault(best[0] + best[1], len(ids))
        words = {_merge(word, best): c for word, c in words.items()}
    return merges


def _merge(word, pair):
    out, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


@pytest.fixture(scope="module")
def corpus():
    return mixed_corpus(300_000, seed=3).split("\n\n")


@pytest.mark.parametrize("seed", range(4))
def test_identical_to_naive_trainer(seed):
    texts = mixed_corpus(6_000, seed=seed).split("\n\n") + ["aaaa aaa aaaaaaa", "abab ababab", "\n\n\n  \t  "] + TRICKY
    tok = train_bpe(texts, 256 + 150 + len(SPECIALS), SPECIALS)
    assert tok.merges == naive_merges(texts, len(tok.merges))
    assert len(tok.merges) >= 150


def test_identical_to_hf_bpe_trainer(corpus):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(corpus, trainer)
    model = json.loads(hf.to_str())["model"]
    tok = train_bpe(corpus, 1200, SPECIALS)
    assert tok.merges == [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    assert set(tok.vocab) | set(tok.special_tokens) == set(model["vocab"])


def test_saved_tokenizer_loads_in_hf_with_identical_ids(corpus, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = train_bpe(corpus[::2], 1000, SPECIALS)
    tok.save_pretrained(tmp_path)
    held_out = "\n\n".join(corpus[1::2]) + "<|im_start|>user\nhi<|im_end|>"
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.encode(held_out, allowed_special="all") == hf.encode(held_out).ids
    assert tok.decode(tok.encode(held_out)) == unicodedata.normalize("NFC", held_out)
    assert AutoTokenizer.from_pretrained(tmp_path)(held_out)["input_ids"] == hf.encode(held_out).ids
    assert (tok.vocab_size, tok.special_tokens["<|im_end|>"], tok.eos_id) == (1000, 999, 999)


def test_vocab_size_too_small_is_one_clear_error():
    with pytest.raises(ValueError, match="vocab_size 258 is too small: it must be at least 256 bytes \\+ 3 special"):
        train_bpe(["text"], 258, SPECIALS)
    assert train_bpe(["text"], 259, SPECIALS).merges == []


def test_cli(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("\n".join(TRICKY) * 20, encoding="utf-8")
    assert main(["train-tokenizer", str(text), "--vocab-size", "300", "--out", str(tmp_path / "tok")]) == 0
    assert (tmp_path / "tok" / "tokenizer.json").exists() and "merges" in capsys.readouterr().out
    assert main(["train-tokenizer", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.txt" in err and "\n" not in err
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    assert main(["train-tokenizer", str(tmp_path / "bin.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
