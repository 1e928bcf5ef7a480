"""A mixed-quality corpus with known labels: clean passages cut from data/corpora, and copies degraded on purpose.

    docs = build_corpus(seed=0, clean_per_source=40, degraded_per_kind=20)
    docs[0]   # {"id": "clean-0000", "text": "...", "label": "clean", "source": "shakespeare", "parent": None}
    Counter(d["label"] for d in docs)   # clean 120, and 20 of each kind in DEGRADATIONS

The report (Qwen2.5, arXiv 2412.15115 §3.1) filters web data whose flaws it names only loosely (repetitive,
templated, machine-generated); the degradations here are those flaws, planted so that every filter can be
scored against the truth.

Design choices
- A clean document is a passage of a shipped corpus: ~20 lines of a play, one poem or chapter (cut to
  MAX_CHARS), ~25 lines of a stdlib module starting at a `def` or `class`. Passages, not whole works: a
  whole play is 120 K characters, more than a judge's window and than a dedup shingle set should carry.
- Each degradation is a small function of (clean passage, random generator) -> text, so what "broken" means
  is readable in one place:
  boilerplate (template spam with random slot fillers), shuffled (words, or characters for Chinese, in random
  order), truncated (the first 4-12% of a passage, cut mid-word), repeated (one or two lines of a passage
  repeated 8-20 times), broken_code (Python with its indentation stripped, lines swapped, brackets dropped),
  near_duplicate (a copy of a clean passage with ~3% of its words deleted or changed; `parent` names it).
- Leaks: a few clean code passages with a HumanEval problem (prompt + canonical solution) pasted in the
  middle, labelled "leak": the target of decontamination (decontaminate.py).
- Labels: QUALITY_LABEL maps each label to "good" / "bad" as a judge should see it. A near-duplicate is good
  text that is a duplicate, a leak good text that is a benchmark: they are the targets of dedup and
  decontamination, so they count "good" for the quality filters and are scored by those instead.
- Seeded: the same (seed, sizes) give the same documents, byte for byte (one `random.Random`).
"""

from __future__ import annotations

import random
import re

from qwen_min import paths
from qwen_min.eval.humaneval import load_problems
from qwen_min.train.data import read_documents, split_documents

SOURCES = ("shakespeare", "chinese-poetry", "python-stdlib")
DEGRADATIONS = ("boilerplate", "shuffled", "truncated", "repeated", "broken_code", "near_duplicate")
QUALITY_LABEL = {"clean": "good", "near_duplicate": "good", "leak": "good", "boilerplate": "bad", "shuffled": "bad",
                 "truncated": "bad", "repeated": "bad", "broken_code": "bad"}
VAL_FRACTION = 0.05  # as pretraining holds out (pretrain.COMMON["val_fraction"])
MAX_CHARS = 1200  # a clean passage is cut here (at a line end when there is one)

# ---------------------------------------------------------------------------- clean passages
def _lines_window(text: str, rng: random.Random, n_lines: int, start_pattern: str | None = None) -> str:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if start_pattern is None or re.match(start_pattern, line)]
    starts = [i for i in starts if i + 5 < len(lines)] or [0]
    i = rng.choice(starts)
    return _cap("\n".join(lines[i:i + n_lines]).strip("\n"))


def _cap(text: str) -> str:
    """Cut at MAX_CHARS, at the last line end before it when there is one."""
    if len(text) <= MAX_CHARS:
        return text
    cut = text.rfind("\n", 0, MAX_CHARS)
    return text[:cut if cut > MAX_CHARS // 2 else MAX_CHARS]


def clean_passage(source: str, document: str, rng: random.Random) -> str:
    """One passage of a shipped document, as a clean training document of that source."""
    if source == "shakespeare":
        return _lines_window(document, rng, 20, r"\S")
    if source == "python-stdlib":
        return _lines_window(document, rng, 25, r"(def|class) ")
    return _cap(document)  # a poem or a chapter of the Analects: already passage-sized


# ---------------------------------------------------------------------------- degradations
SPAM_TEMPLATES = [
    "Home | About Us | Contact | Privacy Policy | Terms of Service\n"
    "Buy {product} online at the best price! Free shipping on orders over ${price}.\n"
    "{product} {product} {product} - cheap {product}, best {product}, {product} deals.\n"
    "Click here to subscribe to our newsletter and get {pct}% off your first order!\n"
    "Copyright (c) {year} {shop}. All rights reserved.",
    "Top {n} {product} reviews {year}: we tested {n} {product}s so you don't have to.\n"
    "Sponsored | Advertisement | Read more >>\n"
    "Related posts: best {product} {year} | {product} vs {product} | cheap {product} near me\n"
    "Share on Facebook | Share on Twitter | Pin it | Email\n"
    "Tags: {product}, {product} sale, {product} discount, {shop}",
    "{shop} - Official Store\nLogin | Register | Cart (0) | Wishlist\n"
    "HOT SALE!!! {product} only ${price} !!! Limited time offer !!!\n"
    "Customers who bought {product} also bought: {product}, {product} case, {product} cover\n"
    "Cookies help us deliver our services. By using our services, you agree to our use of cookies. OK",
]
PRODUCTS = ["phone case", "running shoes", "LED lamp", "yoga mat", "coffee maker", "gaming chair", "face cream",
            "bluetooth speaker", "water bottle", "backpack"]
SHOPS = ["MegaDeals", "ShopNow24", "BestBuyOnline", "SuperStore", "DealHunter"]


def boilerplate(_: str, rng: random.Random) -> str:
    """Template spam: a shop or review page's navigation, ads and keyword stuffing (the passage is not used)."""
    template = rng.choice(SPAM_TEMPLATES)
    product = rng.choice(PRODUCTS)
    return template.format(product=product, price=rng.randint(5, 99), pct=rng.choice([10, 15, 20, 50]),
                           year=rng.randint(2015, 2024), shop=rng.choice(SHOPS), n=rng.randint(5, 15))


def _is_chinese(text: str) -> bool:
    return sum("\u4e00" <= c <= "\u9fff" for c in text) > len(text) / 4


def shuffled(text: str, rng: random.Random) -> str:
    """The passage's words in random order, one line kept every ~10 words (characters for Chinese)."""
    units = [c for c in text if not c.isspace()] if _is_chinese(text) else text.split()
    rng.shuffle(units)
    sep = "" if _is_chinese(text) else " "
    return "\n".join(sep.join(units[i:i + 10]) for i in range(0, len(units), 10))


def truncated(text: str, rng: random.Random) -> str:
    """The first 4-12% of the passage (at least 12 characters), cut wherever that falls: mid-word, mid-line."""
    return text[:max(12, int(len(text) * rng.uniform(0.04, 0.12)))]


def repeated(text: str, rng: random.Random) -> str:
    """One or two lines of the passage, repeated 8-20 times: a machine stuck in a loop."""
    lines = [line for line in text.splitlines() if line.strip()] or [text]
    chosen = rng.sample(lines, min(len(lines), rng.choice([1, 2])))
    return "\n".join(chosen * rng.randint(8, 20))


def broken_code(text: str, rng: random.Random) -> str:
    """Python with its structure broken: indentation stripped, a third of the lines swapped, brackets dropped."""
    lines = [line.strip() for line in text.splitlines()]
    for _ in range(len(lines) // 3):
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(re.sub(r"[()\[\]:]", lambda m: "" if rng.random() < 0.5 else m.group(), line) for line in lines)


def near_duplicate(text: str, rng: random.Random, rate: float = 0.03) -> str:
    """A copy with ~`rate` of its words deleted or replaced by a neighbour's (characters for Chinese): the kind of
    copy a mirror, a re-post or a scrape of another edition makes."""
    chinese = _is_chinese(text)
    units = list(text) if chinese else re.split(r"(\s+)", text)  # separators kept, so lines survive
    for i in range(len(units)):
        if units[i].strip() and rng.random() < rate:
            units[i] = "" if rng.random() < 0.5 else units[min(len(units) - 1, i + 2)]
    return "".join(units)


def leak(text: str, problem: dict) -> str:
    """A code passage with a HumanEval problem (prompt + canonical solution) pasted after its first half of lines."""
    lines = text.splitlines()
    solution = (problem["prompt"] + problem["canonical_solution"]).splitlines()
    return "\n".join(lines[:len(lines) // 2] + [""] + solution + [""] + lines[len(lines) // 2:])


DEGRADE = {"boilerplate": boilerplate, "shuffled": shuffled, "truncated": truncated, "repeated": repeated,
           "broken_code": broken_code, "near_duplicate": near_duplicate}


# ---------------------------------------------------------------------------- the corpus
def build_corpus(seed: int = 0, clean_per_source: int = 40, degraded_per_kind: int = 20, leaks: int = 5,
                 data_dir=None, split: str = "train") -> list[dict]:
    """`clean_per_source` clean passages per source, then `degraded_per_kind` documents of each degradation, each
    made from a clean passage drawn at random (broken_code and leaks from code passages only), then `leaks`
    leaks. Every document is {"id", "text", "label", "source", "parent"}: `parent` is the id of the clean
    passage it was made from. Passages come from the `split` ("train" or "val") documents of each source, split
    as pretraining splits them (5% of documents held out, seed 0), so "val" passages are held-out clean text."""
    if split not in ("train", "val"):
        raise ValueError(f"split is 'train' or 'val', got {split!r}")
    if clean_per_source < 1 or degraded_per_kind < 0 or leaks < 0:
        raise ValueError(f"need at least 1 clean passage per source and >= 0 degraded per kind, got "
                         f"{clean_per_source} and {degraded_per_kind}")
    rng = random.Random(seed)
    data_dir = paths.data_dir("corpora") if data_dir is None else data_dir
    docs = []
    for source in SOURCES:
        documents = split_documents(read_documents(f"{data_dir}/{source}"), VAL_FRACTION, 0)[split == "val"]
        for _ in range(clean_per_source):
            text = clean_passage(source, rng.choice(documents), rng)
            docs.append({"id": f"clean-{len(docs):04d}", "text": text, "label": "clean", "source": source,
                         "parent": None})
    clean = list(docs)
    for kind in DEGRADATIONS:
        pool = [d for d in clean if d["source"] == "python-stdlib"] if kind == "broken_code" else clean
        for n in range(degraded_per_kind):
            parent = rng.choice(pool)
            docs.append({"id": f"{kind}-{n:04d}", "text": DEGRADE[kind](parent["text"], rng), "label": kind,
                         "source": parent["source"], "parent": parent["id"]})
    if leaks:
        problems = load_problems()
        code = [d for d in clean if d["source"] == "python-stdlib"]
        for n in range(leaks):
            parent = rng.choice(code)
            docs.append({"id": f"leak-{n:04d}", "text": leak(parent["text"], rng.choice(problems)), "label": "leak",
                         "source": parent["source"], "parent": parent["id"]})
    return docs


def is_bad(doc: dict) -> bool:
    """Whether a quality filter should remove `doc` (its label's QUALITY_LABEL is "bad")."""
    return QUALITY_LABEL[doc["label"]] == "bad"
