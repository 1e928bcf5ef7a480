"""Benchmark decontamination with the Qwen2.5 report's rule: a training sequence is removed when its longest common
subsequence (LCS) with any test sequence is at least 13 tokens long AND at least 0.6 x the shorter one's length.

    tests = [tok.encode(p["prompt"] + p["canonical_solution"]) for p in load_problems()]   # HumanEval
    contaminated(tok.encode(doc), tests)     # (True, index of the test it leaks, LCS length) or (False, None, best)
    lcs_length([1, 2, 3, 4], [2, 4, 9])      # 2

Design choices
- The rule is the report's (arXiv 2412.15115 §3.1, after Qwen2's): |LCS| >= 13 and |LCS| >= 0.6 x min(len). The
  report does not say which tokens; here they are the tokenizer's ids (the official Qwen tokenizer in the command),
  so 13 tokens are ~50 characters of English or code.
- A *subsequence*, not a substring: a leaked problem reformatted, with lines dropped or a few words changed, still
  matches, which an exact n-gram test would miss. The 0.6 x shorter condition keeps a long document that happens to
  share 13 scattered common tokens (`return`, `(`, `)`, ...) with a test from being removed.
- `lcs_length` is bit-parallel (Allison & Dix 1986; Hyyrö 2004): the row of the DP table is a bit vector
  (a Python integer), updated for each token of `b` with one AND, one add, one subtract and one OR:
  O(len(b)) big-integer operations instead of O(len(a) x len(b)) Python steps, ~100x faster here. The textbook
  DP (`lcs_length_dp`) is kept as the reference it is tested against.
- Pairs whose lengths make 13 and 0.6 x shorter impossible to reach are skipped (|LCS| <= the shorter length).
"""

from __future__ import annotations

from qwen_min.eval.humaneval import load_problems

MIN_TOKENS = 13
MIN_FRACTION = 0.6


def lcs_length_dp(a: list, b: list) -> int:
    """Length of the longest common subsequence, by the O(len(a) len(b)) dynamic programme (the reference).

    >>> lcs_length_dp("ABCBDAB", "BDCABA")
    4
    """
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence, bit-parallel: bit i of V is 0 where the DP row steps up at a[i].

    >>> lcs_length("ABCBDAB", "BDCABA")
    4
    """
    if not a or not b:
        return 0
    match: dict = {}  # token -> bit mask of its positions in a
    for i, x in enumerate(a):
        match[x] = match.get(x, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for y in b:
        u = v & match.get(y, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def leaks(train: list, test: list, min_tokens: int = MIN_TOKENS, min_fraction: float = MIN_FRACTION) -> tuple[bool, int]:
    """(whether the rule fires for this pair, the LCS length)."""
    shorter = min(len(train), len(test))
    if shorter < min_tokens:  # the LCS cannot reach 13 tokens
        return False, 0
    n = lcs_length(train, test)
    return n >= min_tokens and n >= min_fraction * shorter, n


def contaminated(train: list, tests: list[list], min_tokens: int = MIN_TOKENS,
                 min_fraction: float = MIN_FRACTION) -> tuple[bool, int | None, int]:
    """(whether `train` leaks any test sequence, the index of the first it leaks, the LCS length found)."""
    best = 0
    for k, test in enumerate(tests):
        hit, n = leaks(train, test, min_tokens, min_fraction)
        if hit:
            return True, k, n
        best = max(best, n)
    return False, None, best


def humaneval_tests(tok) -> list[list[int]]:
    """The held-out evaluation texts of the course (chapter 12): HumanEval's 164 problems, prompt + canonical
    solution, as token ids."""
    return [tok.encode(p["prompt"] + p["canonical_solution"]) for p in load_problems()]
