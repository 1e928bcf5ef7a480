"""Checkers for the exercises of notebooks/01_tokenizer.ipynb (references: reference/ch01_tokenizer.py).

    from qwen_min.course.exercises import ch01_tokenizer as ex
    ex.check_token_count(my_prediction)   # predict: my_prediction() -> how many ids tok.encode(ex.PREDICT_TEXT) gives
    ex.check_decode(my_decode)            # debug:   my_decode(tok, ids) -> text; ex.buggy_decode holds the planted bug
    ex.check_stream(my_stream)            # build:   my_stream(tok, ids) -> one text piece per id, then the held-back rest
"""

from __future__ import annotations

import random

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch01_tokenizer as ref
from qwen_min.course.exercises.reference.ch01_tokenizer import official_tokenizer
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.tokenizer.bpe import BYTE_TO_CHAR, StreamingDecoder, Tokenizer

PREDICT_TEXT = "In 2024, 1234567 people said: naïve café 🙂"
# texts whose tokens cut characters in two (emoji, CJK), and bytes that never form valid UTF-8
_TEXTS = ["Hello world", "😂👩‍💻 汉字", "naïve café, 1234 ✓", "床前明月光，疑是地上霜。", "🤖🦾 robots", "a\u0301e\u0301"]


def _id_sequences(tok: Tokenizer) -> list[list[int]]:
    byte_id = {b: tok.vocab[c] for b, c in BYTE_TO_CHAR.items()}
    seqs = [tok.encode(t) for t in _TEXTS]
    seqs.append([byte_id[0xF0], byte_id[0x9F]] + tok.encode(" ok"))  # a 4-byte character cut after 2 bytes
    seqs.append([byte_id[0x80], byte_id[0xC3]] + tok.encode("x") + [byte_id[0xE4], byte_id[0xB8]])  # stray bytes
    seqs.append(tok.encode("<|im_start|>user\n你好<|im_end|>", allowed_special="all"))
    rng = random.Random(seed(1))
    for _ in range(20):  # random cuts through a multi-byte text
        ids = tok.encode("".join(rng.choice(_TEXTS) for _ in range(3)))
        i = rng.randrange(len(ids))
        seqs.append(ids[i:i + rng.randrange(1, 8)])
    return seqs


def check_token_count(student_fn) -> None:
    """student_fn() -> your prediction of len(tok.encode(PREDICT_TEXT)) with the official tokenizer."""
    guess = prediction("token count", student_fn)
    measured = ref.measured_token_count(PREDICT_TEXT)
    judge_prediction("token count", guess, measured, isinstance(guess, int) and abs(guess - measured) <= 3,
                     "Look again at how the pre-tokenizer cuts numbers, and at what happens to a space before "
                     "a digit.")


def buggy_decode(tok: Tokenizer, ids: list[int]) -> str:
    """Ids -> text (one planted bug)."""
    return "".join(tok.token_bytes(i).decode("utf-8", errors="replace") for i in ids)


def check_decode(student_fn) -> None:
    """student_fn(tok, ids) -> text, with U+FFFD for bytes that are not valid UTF-8, as Tokenizer.decode."""
    tok = official_tokenizer()
    compare("decode", student_fn, ref.decode, [(tok, ids) for ids in _id_sequences(tok)],
            hint="a token is a run of bytes, and a character may be spread over two tokens: where must the bytes "
                 "be turned into text?",
            forbidden=[Tokenizer.decode, StreamingDecoder.push, StreamingDecoder.flush])


def check_stream(student_fn) -> None:
    """student_fn(tok, ids) -> list of len(ids) + 1 strings: the text each id completes ('' while a character is
    incomplete), then what is left at the end of the stream (U+FFFD per incomplete character)."""
    tok = official_tokenizer()
    compare("stream", lambda t, ids: list(student_fn(t, ids)), ref.stream, [(tok, ids) for ids in _id_sequences(tok)],
            hint="keep the bytes that do not yet form a whole character for the next id; the first byte of a "
                 "UTF-8 character says how many bytes it needs, and a byte that cannot start or continue one "
                 "is replaced at once. The pieces must join to tok.decode(ids).",
            forbidden=Forbidden.of([Tokenizer.decode, StreamingDecoder.push, StreamingDecoder.flush],
                                   modules=["codecs", "encodings.utf_8"], builtins=["utf_8_decode"]))


PACKAGE_EQUIVALENTS = {
    "check_decode": [lambda t, ids: t.decode(ids)],
    "check_stream": [lambda t, ids: (lambda s: [s.push(i) for i in ids] + [s.flush()])(StreamingDecoder(t))],
}
