"""Checkers for the exercises of notebooks/01_tokenizer.ipynb (the reference is qwen_min.tokenizer.bpe / bpe_train).

1. `check_bytes_to_unicode(fn)`: fn() -> {byte: printable character}, GPT-2's byte-to-unicode map.
2. `check_merge(fn)`: fn(ids, pair, new_id) -> ids with every (left, right) occurrence replaced, left to right.
3. `check_bpe(fn)`: fn(word, ranks) -> tokens: BPE on a list of byte-level characters with the official
   merge ranks {(left, right): rank}, merging the lowest rank first until no merge applies.
"""

from __future__ import annotations

import random
from functools import lru_cache

from qwen_min.bench.corpus import TRICKY
from qwen_min.course.exercises import compare
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import BYTE_TO_CHAR, CHAR_TO_BYTE, Tokenizer, bytes_to_token_string, bytes_to_unicode
from qwen_min.tokenizer.train import _merge_word


@lru_cache(maxsize=1)
def _official():
    tok = Tokenizer.from_pretrained(official_tokenizer_dir())
    ranks = {pair: rank for rank, pair in enumerate(tok.merges)}
    return tok, ranks


def check_bytes_to_unicode(fn) -> None:
    compare("bytes_to_unicode", lambda: dict(fn()), bytes_to_unicode, [()],
            hint="bytes 33-126, 161-172 and 174-255 map to themselves; the other 68, in byte order, to chr(256 + n).")


def check_merge(fn) -> None:
    rng = random.Random(0)
    inputs = [([1, 2, 3, 1, 2], (1, 2), 9), ([5, 5, 5, 5, 5], (5, 5), 7), ([], (1, 2), 3), ([1, 2], (2, 1), 4)]
    inputs += [([rng.randrange(4) for _ in range(rng.randint(0, 20))], (rng.randrange(4), rng.randrange(4)), 99)
               for _ in range(200)]
    compare("merge", lambda ids, pair, new: list(fn(list(ids), pair, new)),
            lambda ids, pair, new: _merge_word(ids, *pair, new, []), inputs,
            hint="scan left to right; after replacing a pair, skip both of its elements (so 5 5 5 -> 7 5).")


def check_bpe(fn) -> None:

    tok, ranks = _official()
    pieces = [p for text in TRICKY for p in tok.pattern.findall(text)]
    pieces += ["Hello", " world", " tokenization", "自然语言处理", " unbelievably", "    ", "ération"]
    pieces = random.Random(0).sample(pieces, len(pieces))

    def reference(word, ranks):
        piece = bytes(CHAR_TO_BYTE[c] for c in word).decode("utf-8")
        return [bytes_to_token_string(tok.token_bytes(i)) for i in tok._bpe(piece)]

    inputs = [([BYTE_TO_CHAR[b] for b in p.encode("utf-8")], ranks) for p in pieces]
    compare("bpe", lambda word, ranks: list(fn(list(word), ranks)), reference, inputs,
            hint="each step: among adjacent pairs that are in `ranks`, merge the one with the lowest rank; "
                 "stop when no adjacent pair is in `ranks`.")
