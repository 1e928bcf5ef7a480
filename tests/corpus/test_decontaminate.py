"""The report's decontamination rule: the bit-parallel LCS equals the textbook one; a planted leak is caught, clean
text passes, and both conditions (13 tokens, 0.6 x the shorter) are needed."""

import random

import pytest

from qwen_min import paths
from qwen_min.corpus import decontaminate as dc
from qwen_min.corpus.degrade import build_corpus
from qwen_min.eval.humaneval import load_problems
from qwen_min.tokenizer.bpe import Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_pretrained(paths.official_tokenizer_dir())


@pytest.fixture(scope="module")
def tests(tok):
    return dc.humaneval_tests(tok)


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(6) for _ in range(rng.randrange(0, 70))]
        b = [rng.randrange(6) for _ in range(rng.randrange(0, 70))]
        assert dc.lcs_length(a, b) == dc.lcs_length_dp(a, b)


def test_the_two_conditions():
    test = list(range(30))
    assert dc.leaks(list(range(12)), test) == (False, 0)  # 12 tokens: the LCS cannot reach 13
    assert dc.leaks(list(range(13)), list(range(13))) == (True, 13)  # 13 of 13
    other = [100 + i for i in range(200)]
    assert dc.leaks(other + list(range(13)), test) == (False, 13)  # 13 tokens, but fewer than 0.6 x 30 = 18
    assert dc.leaks(other + list(range(0, 36, 2)), test) == (False, 15)  # only 15 of the 18 are < 30
    assert dc.leaks(other[:50] + list(range(18)) + other[50:], test) == (True, 18)  # a subsequence, interrupted


def test_planted_leak_is_caught_and_clean_text_passes(tok, tests):
    docs = build_corpus(seed=0, clean_per_source=5, degraded_per_kind=0, leaks=3)
    for d in docs:
        hit, k, n = dc.contaminated(tok.encode(d["text"]), tests)
        assert hit == (d["label"] == "leak"), d["id"]


def test_a_reformatted_leak_is_still_caught(tok, tests):
    problem = load_problems()[0]
    text = "# from a blog post\n" + (problem["prompt"] + problem["canonical_solution"]).replace("    ", "  ")
    assert dc.contaminated(tok.encode(text), tests)[0]
