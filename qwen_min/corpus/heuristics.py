"""Cheap quality signals a pre-training pipeline computes before any model reads a document.

    signals(text)   # {"units": 150, "repeated_line_fraction": 0.0, "top_ngram_fraction": 0.04, "language": "en",
                    #  "language_score": -1830.2}
    flags(text)     # {"too_short": False, "repetitive": False, "language": False}: True where a rule removes it

Design choices
- Three families, as in the Gopher / C4 rule sets (Rae et al. 2021, Raffel et al. 2020) that most pipelines
  start from: length, repetition, language. The thresholds are written down before looking at any score
  (MIN_UNITS, MAX_REPEATED_LINES, MAX_TOP_NGRAM), so the precision/recall reported for them is not tuned.
- Length in units, words or CJK characters, not in characters: a Tang quatrain is 20-40 characters and a whole
  poem, while 40 characters of English are a line.
- Repetition: the fraction of non-blank lines that repeat an earlier line, and the fraction of word 3-grams
  (characters for Chinese) taken by the most frequent one. The first catches a loop of lines, the second
  keyword stuffing inside lines.
- Language ID: `langid` (langid.py, Lui & Baldwin 2012), whose model ships inside the package, so it runs
  offline. It answers with one of 97 ISO 639-1 codes; a document not in LANGUAGES (English, Chinese) is
  flagged. Python source is mostly English words to it, so it passes; shuffled English is still English:
  language ID only catches the wrong language and some gibberish, and says so in its recall.
"""

from __future__ import annotations

import re
from collections import Counter

MIN_UNITS = 25  # fewer words (or CJK characters) than this: too short to teach anything (a line or two)
MAX_REPEATED_LINES = 0.3  # more than this fraction of lines repeat an earlier one
MAX_TOP_NGRAM = 0.15  # the most frequent word 3-gram takes more than this fraction of them
LANGUAGES = ("en", "zh")


def _units(text: str) -> list[str]:
    """Words, or single characters for CJK text (which has no spaces between words)."""
    return re.findall(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+", text)


def repeated_line_fraction(text: str) -> float:
    """Fraction of non-blank lines equal to an earlier line (stripped).

    >>> repeated_line_fraction("a\\nb\\na\\na")
    0.5
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return 1 - len(set(lines)) / len(lines) if lines else 0.0


def top_ngram_fraction(text: str, n: int = 3) -> float:
    """Fraction of the word n-grams taken by the most frequent one (0 when there are fewer than 2).

    >>> top_ngram_fraction("buy it now buy it now buy it now")
    0.42857142857142855
    """
    units = _units(text)
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return Counter(grams).most_common(1)[0][1] / len(grams)


def language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, langid's log-probability score) of `text`."""
    import langid  # its model (~2 MB) unpickles on first use: imported only when needed

    code, score = langid.classify(text)
    return code, float(score)


def signals(text: str) -> dict:
    code, score = language(text)
    return {"units": len(_units(text)), "repeated_line_fraction": repeated_line_fraction(text),
            "top_ngram_fraction": top_ngram_fraction(text), "language": code, "language_score": score}


def flags_from_signals(s: dict) -> dict[str, bool]:
    """Which rule removes a document with signals `s` (True: removed by that rule)."""
    return {"too_short": s["units"] < MIN_UNITS,
            "repetitive": s["repeated_line_fraction"] > MAX_REPEATED_LINES or s["top_ngram_fraction"] > MAX_TOP_NGRAM,
            "language": s["language"] not in LANGUAGES}


def flags(text: str) -> dict[str, bool]:
    return flags_from_signals(signals(text))
