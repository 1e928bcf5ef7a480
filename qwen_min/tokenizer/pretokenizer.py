"""The pre-tokenizer regex, compiled so that Python's `regex` splits text exactly as `tokenizers` does.

    split = compile_pretokenizer(QWEN_PRETOKENIZE_REGEX).findall
    split("Hello world 123")      # ['Hello', ' world', ' ', '1', '2', '3']

`tokenizers` runs the pattern with Oniguruma, whose Unicode tables stop at Unicode 16.0; the `regex`
module ships newer tables (17.0 and later), in which about 17,000 code points that are unassigned in
16.0 became letters (\\p{L}) or digits (\\p{N}): Chinese extension J (U+323B0..), Tolong Siki, Beria Erfe...
Such a character before '/' or after a letter splits differently, so ids would differ.

Design choice: rewrite the letter/digit classes of the pattern to leave those code points out
(`NEWER_THAN_TOKENIZERS`, measured by running both engines over every code point; the test
tests/tokenizer/test_bpe.py::test_pretokenizer_agrees_on_every_code_point re-checks the whole table):
  \\p{L}            -> [^\\P{L}<newer>]                   (a letter, not a newer one)
  [^\\r\\n\\p{L}\\p{N}] -> (?:[^\\r\\n\\p{L}\\p{N}]|[<newer>])    (a newer one is "not a letter" here)
  [... \\p{L} ...]   -> (?:(?![<newer>])[... \\p{L} ...])
Other parts of the pattern are left alone.
"""

from __future__ import annotations

import regex

# Code points that `regex` classifies as \p{L} or \p{N} but Unicode 16.0 (Oniguruma in tokenizers) leaves unassigned.
NEWER_THAN_TOKENIZERS = (
    (0x0558, 0x0558), (0x058B, 0x058C), (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0x208F, 0x208F),
    (0x209D, 0x209F), (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DD, 0xA7DD), (0xA7E2, 0xA7E2),
    (0xA7F1, 0xA7F1), (0xAB6C, 0xAB6D), (0x107BB, 0x107BF), (0x10940, 0x10959), (0x10EC5, 0x10EC7),
    (0x10ED9, 0x10EEE), (0x11B0A, 0x11B0A), (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x11DF1, 0x11DF1),
    (0x1246F, 0x1246F), (0x12475, 0x1247F), (0x12550, 0x12686), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3),
    (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18CD6, 0x18CDA), (0x18D09, 0x18D20), (0x18D80, 0x18DF2),
    (0x18E00, 0x19191), (0x191A0, 0x191D2), (0x1B123, 0x1B128), (0x1B168, 0x1B168), (0x1D6A6, 0x1D6A6),
    (0x1DF1F, 0x1DF24), (0x1DF2B, 0x1DF81), (0x1DF90, 0x1DF96), (0x1DFCD, 0x1DFFF), (0x1E6C0, 0x1E6DE),
    (0x1E6E0, 0x1E6E2), (0x1E6E4, 0x1E6E5), (0x1E6E7, 0x1E6ED), (0x1E6F0, 0x1E6F4), (0x1E6FE, 0x1E6FF),
    (0x2B73A, 0x2B73F), (0x2B81E, 0x2B81E), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479), (0x3D000, 0x3FC3F),
)
_NEWER = "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in NEWER_THAN_TOKENIZERS)

_LETTER_OR_DIGIT = regex.compile(r"\\p\{[LN][a-z]?\}")
# a character class (with escapes and \p{..} inside), a standalone \p{L}/\p{N}..., or any other escape
_PART = regex.compile(r"\[(\^?)(?:\\[pP]\{[^}]*\}|\\.|[^\]\\])*\]|\\p\{[LN][a-z]?\}|\\.", regex.DOTALL)


def _align(match: regex.Match) -> str:
    part = match.group()
    if not _LETTER_OR_DIGIT.search(part):
        return part
    if part.startswith("\\p"):
        return f"[^\\P{{{part[3:-1]}}}{_NEWER}]"
    if match.group(1):  # negated class
        return f"(?:{part}|[{_NEWER}])"
    return f"(?:(?![{_NEWER}]){part})"


def align_with_tokenizers(pattern: str) -> str:
    """The pattern rewritten so that `regex` agrees with Oniguruma's Unicode 16.0 letters and digits."""
    return _PART.sub(_align, pattern)


def compile_pretokenizer(pattern: str) -> regex.Pattern:
    try:
        return regex.compile(align_with_tokenizers(pattern))
    except regex.error as e:
        raise ValueError(f"pre-tokenizer pattern {pattern!r} does not compile: {e}") from None
