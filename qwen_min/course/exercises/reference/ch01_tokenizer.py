"""Reference answers and the measurement of notebooks/01_tokenizer.ipynb's exercises (see __init__.py)."""

from __future__ import annotations

import functools
from functools import lru_cache

from qwen_min.course.exercises.watch import answer
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import StreamingDecoder, Tokenizer


@lru_cache(maxsize=1)
def official_tokenizer() -> Tokenizer:
    return Tokenizer.from_pretrained(official_tokenizer_dir())


@answer("ch01_tokenizer.check_token_count")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_token_count(text: str) -> int:
    return len(official_tokenizer().encode(text))


@answer("ch01_tokenizer.check_decode")
def decode(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode(ids)


@answer("ch01_tokenizer.check_stream")
def stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    decoder = StreamingDecoder(tok)
    return [decoder.push(i) for i in ids] + [decoder.flush()]
