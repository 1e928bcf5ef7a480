"""Train a byte-level BPE vocabulary from text, with the Qwen2.5 pre-tokenizer; plus `qwen-min train-tokenizer`.

    tok = train_bpe(["some text", "more text"], vocab_size=1000)
    tok.save_pretrained("my_tokenizer")       # tokenizer.json that HF tokenizers / transformers load

Algorithm (the one HF `tokenizers`' BpeTrainer uses, so both learn the same merges):
  1. NFC-normalise each text, split it with the pre-tokenizer regex, count the distinct pieces
     ("words"); each word becomes a list of byte tokens.
  2. Count every adjacent pair over all words, weighted by word count (overlaps count: "aaa" has
     two ("a", "a") pairs), and remember which words hold each pair.
  3. Repeatedly take the most frequent pair, append it to the merges, and rewrite only the words that
     hold it, updating the pair counts by the pairs that disappear and appear around each merge.
     No full recount per merge: a max-heap of (count, pair) with lazy deletion (an entry whose count
     is out of date is pushed back with its current count) finds the next pair.

Design choices
- Deterministic tie-break: among pairs of equal count, the smallest (left id, right id) wins, where
  the 256 byte tokens have ids in GPT-2 order (their printable characters sorted by code point,
  so '!' is 0, as in Qwen's vocabulary) and each new token the next id. This is the order of HF's
  BpeTrainer with `initial_alphabet=ByteLevel.alphabet()`, so the tests compare merge lists exactly.
- Layout of the result, as Qwen's: ids 0..255 bytes, then merged tokens in merge order, then the
  special tokens. `vocab_size` counts all of them (as HF's `vocab_size` does).
- If a merge rebuilds a string that already is a token (x + yz == xy + z), the existing id is reused
  and the merge is still recorded, as in HF.
- Texts are plain text: special-token strings inside them are counted as ordinary text.
"""

from __future__ import annotations

import heapq
import unicodedata
from collections import Counter
from collections.abc import Iterable

from qwen_min.progress import progress_bar
from qwen_min.tokenizer.bpe import BYTE_TO_CHAR, Tokenizer, bytes_to_token_string
from qwen_min.tokenizer.files import QWEN_PRETOKENIZE_REGEX, AddedToken, VocabFiles
from qwen_min.tokenizer.pretokenizer import compile_pretokenizer

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# the 256 byte tokens in GPT-2 / Qwen order: their printable characters sorted by code point
BYTE_TOKENS = sorted(BYTE_TO_CHAR.values())
_BYTE_ID = {b: BYTE_TOKENS.index(c) for b, c in BYTE_TO_CHAR.items()}


def count_words(texts: Iterable[str], pattern: str = QWEN_PRETOKENIZE_REGEX, normalizer: str | None = "NFC") -> Counter:
    """How often each pre-tokenized piece occurs: Counter({' the': 120, 'Hello': 3, ...})."""
    split = compile_pretokenizer(pattern).findall
    counts: Counter = Counter()
    for text in texts:
        counts.update(split(unicodedata.normalize("NFC", text) if normalizer == "NFC" else text))
    return counts


def _merge_word(word: list[int], a: int, b: int, new: int, changes: list) -> list[int]:
    """Replace every (a, b) in `word`, left to right, by `new`; record the pair-count changes.

    Around each merge the pairs (left, a) and (b, right) disappear and (left, new), (new, right)
    appear; `left` is the symbol already rewritten (so "aaaa" -> (aa, aa), like HF's Word::merge).
    """
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            if out:
                changes += [((out[-1], a), -1), ((out[-1], new), 1)]
            if i + 2 < n:
                changes += [((b, word[i + 2]), -1), ((new, word[i + 2]), 1)]
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(word_counts: dict[str, int], n_new_tokens: int, progress: bool = False) -> tuple[list[bytes], list]:
    """The BPE loop. Returns (token bytes by id, merges as (left id, right id) in rank order)."""
    tokens = [bytes([b]) for b in sorted(range(256), key=_BYTE_ID.get)]  # id -> bytes
    token_id = {t: i for i, t in enumerate(tokens)}
    words = [[_BYTE_ID[b] for b in w.encode("utf-8")] for w in word_counts]
    counts = list(word_counts.values())
    pair_counts: Counter = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            where.setdefault(pair, set()).add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items()]  # max count first, then smallest pair
    heapq.heapify(heap)
    merges = []
    bar = progress_bar(total=n_new_tokens, desc="merges", unit="tok", enabled=progress, mininterval=0.5)
    while len(tokens) < 256 + n_new_tokens and heap:
        neg_count, pair = heapq.heappop(heap)
        if -neg_count != pair_counts[pair]:  # out of date: push back with the current count
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            continue
        a, b = pair
        merged = tokens[a] + tokens[b]
        new = token_id.setdefault(merged, len(tokens))
        if new == len(tokens):
            tokens.append(merged)
            bar.update(1)
        merges.append(pair)
        changes: list = []
        for w in where.pop(pair):
            before = len(changes)
            words[w] = _merge_word(words[w], a, b, new, changes)
            for i in range(before, len(changes)):
                changed, delta = changes[i]
                changes[i] = (changed, delta, w)
        grown = set()
        for changed, delta, w in changes:
            pair_counts[changed] += delta * counts[w]
            if delta > 0:
                where.setdefault(changed, set()).add(w)
                grown.add(changed)
        for changed in sorted(grown):
            if pair_counts[changed] > 0:
                heapq.heappush(heap, (-pair_counts[changed], changed))
    bar.close()
    return tokens, merges


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS,
              pattern: str = QWEN_PRETOKENIZE_REGEX, progress: bool = False) -> Tokenizer:
    """Learn a byte-level BPE tokenizer of `vocab_size` tokens (256 bytes + merges + special tokens).

    >>> tok = train_bpe(["low lower lowest"] * 10, vocab_size=256 + 5 + 3)
    >>> [tok.decode([i]) for i in range(256, 261)]      # the first merged tokens
    ['lo', 'low', ' low', ' lowe', 'st']

    Stops early (a smaller vocabulary) when no pair occurs any more.
    """
    special_tokens = list(dict.fromkeys(special_tokens))
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} is too small: it must be at least 256 bytes + "
                         f"{len(special_tokens)} special tokens = {256 + len(special_tokens)}")
    tokens, merges = learn_merges(count_words(texts, pattern), vocab_size - 256 - len(special_tokens), progress)
    as_string = [bytes_to_token_string(t) for t in tokens]
    files = VocabFiles(
        vocab={s: i for i, s in enumerate(as_string)},
        merges=[(as_string[a], as_string[b]) for a, b in merges],
        added_tokens=[AddedToken(len(tokens) + k, s, special=True) for k, s in enumerate(special_tokens)],
        pattern=pattern,
        eos_token=next((t for t in ("<|im_end|>", "<|endoftext|>") if t in special_tokens), None),
        pad_token="<|endoftext|>" if "<|endoftext|>" in special_tokens else None,
    )
    return Tokenizer(files)


# ---------------------------------------------------------------------------- qwen-min train-tokenizer
