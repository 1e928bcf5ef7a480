"""Checkers for the exercises of notebooks/08b_data_and_scaling.ipynb (references: reference/ch08b_data_and_scaling.py).

    from qwen_min.course.exercises.ch08b_data_and_scaling import (check_minhash_signature, check_corpus_prediction,
                                                                  check_fixed_power_law, permutations)
    a, b = permutations(128, seed=1)
    check_minhash_signature(my_signature)   # build: my_signature(text, a, b) -> the 128 MinHash values of its shingles
    check_corpus_prediction(my_prediction)  # predict: my_prediction() -> "A" (every document) or "B" (clean only)
    check_fixed_power_law(my_fit)           # debug: my_fit(x, y) -> (coef, exponent) of y = coef * x ** exponent
"""

from __future__ import annotations

import math

import numpy as np
import torch
from datasketch import MinHash

from qwen_min.corpus import dedup
from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch08b_data_and_scaling as ref
from qwen_min.course.exercises.watch import Forbidden
from qwen_min.scaling import fit

MERSENNE = (1 << 61) - 1  # the prime of datasketch's textbook ("legacy") hash family
MAX_HASH = (1 << 32) - 1

TEXTS = ["the quick brown fox jumps over the lazy dog",
         "def add(a, b):\n    return a + b\n",
         "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
         "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
         "ab"]


def permutations(num_perm: int = dedup.NUM_PERM, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), two uint64 arrays of num_perm: the parameters of the hash functions h -> (a h + b) mod (2^61 - 1),
    drawn as datasketch draws them (numpy RandomState(seed), a in [1, p), b in [0, p), pair by pair)."""
    gen = np.random.RandomState(seed)
    pairs = [(gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64)) for _ in range(num_perm)]
    return tuple(np.array(pairs, dtype=np.uint64).T)


def check_minhash_signature(student) -> None:
    """student(text, a, b) -> array of len(a) integers: for each hash function k, the minimum over the text's
    5-character shingles (dedup.shingles) s of ((a[k] * h(s) + b[k]) mod (2^61 - 1)) & (2^32 - 1), where h(s) is the
    first 4 bytes of SHA-1(s as UTF-8), read little-endian. Compute a[k] * h(s) in np.uint64, as datasketch does."""

    def as_tensor(values):
        return torch.tensor(np.asarray(values, dtype=np.uint64).astype(np.int64))  # every value < 2^32 fits

    rng = np.random.default_rng(seed(8))
    texts = TEXTS + ["".join(rng.choice(list("abcdefgh ，。🙂"), 40)) for _ in range(2)]
    compare("minhash_signature", lambda text, n: as_tensor(student(text, *permutations(n))),
            lambda text, n: as_tensor(ref.minhash_signature(text, *permutations(n))),
            [(t, n) for t in texts for n in (16, 128)], atol=0,
            hint="one running minimum per hash function, starting at 2^32 - 1; the shingles come from "
                 "dedup.shingles(text); hash each with hashlib.sha1(s.encode('utf-8')).digest()[:4] read as a "
                 "little-endian uint32 (struct.unpack('<I', ...)), and do the arithmetic in np.uint64.",
            forbidden=Forbidden.of([dedup.minhash, MinHash.update, MinHash.update_batch], modules=["datasketch.minhash"]))


# ---------------------------------------------------------------------------- predict, then measure
def check_corpus_prediction(student) -> None:
    """student() -> "A" or "B": which corpus gives the LOWER held-out loss on clean text when the same small Qwen
    trains on the same number of tokens of each? A: all 365 documents of the scored corpus (half of them degraded:
    spam, shuffled, truncated, repeated, broken code, near-copies). B: only its 180 clean passages (repeated more
    often, to fill the same budget)."""
    guess = prediction("corpus_prediction", student)
    losses = ref.measured_corpus_losses()
    winner = min(losses, key=losses.get)
    judge_prediction("corpus_prediction", guess, f"{winner} ({', '.join(f'{k}: {v:.3f}' for k, v in losses.items())})",
                     isinstance(guess, str) and guess == winner,
                     "Every token of budget spent on a shuffled line or a spam page is a token not spent on text "
                     "like the held-out one; repeating good text a few more times costs little at this budget.")


# ---------------------------------------------------------------------------- debug
def check_fixed_power_law(student) -> None:
    """student(x, y) -> (coef, exponent) with y ~ coef * x ** exponent: the notebook's `buggy_power_law`, fixed."""
    rng = np.random.default_rng(seed(0))
    inputs = []
    for coef, exponent in ((0.3, -0.125), (0.29, 0.33), (2.0, -0.5)):
        x = np.geomspace(1e9, 1e13, 6)
        inputs.append((x, coef * x ** exponent * np.exp(rng.normal(0, 0.1, len(x)))))

    def as_tensor(fn):
        def run(x, y):
            coef, exponent = fn(x, y)
            return torch.tensor([math.log(coef), exponent], dtype=torch.float64)
        return run

    compare("fixed_power_law", as_tensor(student), as_tensor(ref.power_law), inputs, atol=1e-6,
            hint="a power law is a straight line only after taking the log of BOTH axes; which one is still linear?",
            forbidden=[fit.fit_power_law])


PACKAGE_EQUIVALENTS = {
    "check_minhash_signature": [lambda text, a, b: dedup.minhash(text, len(a)).hashvalues],
    "check_fixed_power_law": [lambda x, y: (fit.fit_power_law(x, y)["coef"], fit.fit_power_law(x, y)["exponent"])],
}
