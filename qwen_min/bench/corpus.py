"""A deterministic, multilingual test corpus for the tokenizer (tests, benchmark, notebook).

    text = mixed_corpus(min_bytes=1_000_000, seed=0)

Nothing is downloaded and no file of unclear licence is shipped: the text is built on the fly from
- code: Python standard-library sources of this interpreter (PSF licence);
- scripts: decoded pieces of the official Qwen2.5 vocabulary (data/qwen2.5/vocab.json), grouped by
  script (Chinese, Japanese, Korean, Arabic, Hindi, Russian, Thai, Greek, English...) and strung into
  pseudo-sentences with that script's punctuation;
- tricky strings written by hand below: emoji sequences (ZWJ, skin tones, flags), combining marks,
  odd whitespace (tabs, CRLF, no-break and ideographic spaces), long digit runs, contractions,
  and special-token-looking strings, complete and broken.
The same seed gives the same text on the same Python version (the code part follows the stdlib).
"""

from __future__ import annotations

import json
import random
import sysconfig
import unicodedata
from pathlib import Path

from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import token_string_to_bytes

# script -> (words separated by, sentence end)
SCRIPTS = {
    "CJK": ("", "。"), "HIRAGANA": ("", "。"), "KATAKANA": ("", "、"), "HANGUL": (" ", ". "),
    "ARABIC": (" ", "، "), "DEVANAGARI": (" ", "। "), "CYRILLIC": (" ", ". "), "THAI": ("", " "),
    "GREEK": (" ", "; "), "HEBREW": (" ", ". "), "LATIN": (" ", ". "),
}

TRICKY = [
    # emoji: ZWJ families, skin tones, flags, keycaps, variation selectors
    "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🇫🇷🇯🇵🇺🇸 1️⃣ #️⃣ ❤️ ☺︎ 👍🏿👍🏻 🧑‍🤝‍🧑",
    # combining marks, decomposed and stacked (NFC composes some of them)
    "cafe\u0301 nai\u0308ve A\u030a \u1100\u1161\u11a8 e\u0301\u0302\u0323 Z\u0351\u0300\u0316a\u0324\u0347lgo q\u0307\u0323",
    "\u0915\u093f \u0627\u064e\u0644\u0652 \u05e9\u05c1\u05b8 >\u0338 =\u0338 \u212b \u2126 \uff21\uff22",
    # odd whitespace
    "tab\there\t\tand  two\r\nCRLF\r\n\r\nno\u00a0break ideographic\u3000space thin\u2009nnbsp\u202fline\u2028para\u2029"
    "nel\u0085zw\u200bsp mongolian\u180evs   \n\n\n   trailing   \t",
    # digits, contractions, punctuation runs
    "3.14159265358979323846264338327950288419716939937510 1,000,000 0x1F600 ١٢٣ ४५६ ⅫⅣ ①②",
    "I'm don't WE'LL you'VE she'd 'S 'tis o'clock rock'n'roll ''quoted'' ``tex''",
    "!!!??? ... --- === *** ~~~ ((())) [[]] {{}} <<>> /// \\\\\\ @@@ ### $$$ %%% ^^^ &&& |||",
    # special-token-looking strings
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>",
    "<|endoftext|><|endoftext|> <|im_start|<|im_end| |im_end|> <|im_end|>> <<|im_start|>> <|unknown|> <tool_call>>",
    "<|fim_prefix|>def f(<|fim_suffix|>):<|fim_middle|> <|repo_name|>x<|file_sep|>y <|vision_start|><|image_pad|>",
]


def _stdlib_code(rng: random.Random, n_files: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size < 200_000)
    return [p.read_text(encoding="utf-8", errors="replace") for p in rng.sample(files, min(n_files, len(files)))]


def _script_of(text: str) -> str | None:
    letter = next((c for c in text if unicodedata.category(c).startswith("L")), None)
    name = unicodedata.name(letter, "") if letter else ""
    return next((s for s in SCRIPTS if name.startswith(s)), None)


def vocabulary_words(vocab_path: Path | None = None) -> dict[str, list[str]]:
    """Decoded tokens of a vocabulary that are whole characters, grouped by script."""
    words: dict[str, list[str]] = {s: [] for s in SCRIPTS}
    for token in json.loads((vocab_path or official_tokenizer_dir() / "vocab.json").read_text(encoding="utf-8")):
        try:
            text = token_string_to_bytes(token).decode("utf-8")
        except UnicodeDecodeError:
            continue
        script = _script_of(text)
        if script:
            words[script].append(text.strip())
    return {s: sorted(w for w in ws if w) for s, ws in words.items()}


def mixed_corpus(min_bytes: int = 1_000_000, seed: int = 0) -> str:
    """At least `min_bytes` of UTF-8: about 35% code, 55% sentences in many scripts, 10% tricky strings."""
    rng = random.Random(seed)
    words = vocabulary_words()
    code = _stdlib_code(rng, 400)
    docs, size = [], 0
    while size < min_bytes:
        kind = rng.random()
        if kind < 0.35 and code:
            doc = code.pop()
            start = rng.randrange(max(1, len(doc) - 6000))
            doc = doc[start:start + 6000]
        elif kind < 0.9:
            script = rng.choice(list(SCRIPTS))
            sep, end = SCRIPTS[script]
            doc = "".join(sep.join(rng.choices(words[script], k=rng.randint(3, 25))) + end for _ in range(rng.randint(5, 40)))
        else:
            doc = "".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 4)))
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return "\n\n".join(docs)
