"""The chapter 8b exercise checkers accept right answers and reject plausible wrong ones."""

import hashlib
import math
import struct

import numpy as np
import pytest

from qwen_min.corpus import dedup
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch08b_data_and_scaling import (
    MAX_HASH,
    MERSENNE,
    PACKAGE_EQUIVALENTS,
    check_corpus_prediction,
    check_fixed_power_law,
    check_minhash_signature,
)
from qwen_min.course.exercises.reference.ch08b_data_and_scaling import measured_corpus_losses


def _signature(text, a, b, fold=True):
    sig = np.full(len(a), MAX_HASH, dtype=np.uint64)
    for s in dedup.shingles(text):
        h = np.uint64(struct.unpack("<I", hashlib.sha1(s.encode("utf-8")).digest()[:4])[0])
        value = (a * h + b) % np.uint64(MERSENNE)
        sig = np.minimum(sig, np.bitwise_and(value, np.uint64(MAX_HASH)) if fold else value)
    return sig


def test_minhash_signature_checker():
    check_minhash_signature(_signature)
    with pytest.raises(ExerciseFailed, match="minhash_signature: wrong"):  # the 32-bit cut forgotten
        check_minhash_signature(lambda text, a, b: _signature(text, a, b, fold=False))
    with pytest.raises(ExerciseFailed, match="minhash_signature: wrong"):  # words instead of 5-character shingles
        check_minhash_signature(lambda text, a, b: _signature(" ".join(text.split()[:1]), a, b))
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        check_minhash_signature(PACKAGE_EQUIVALENTS["check_minhash_signature"][0])


def _log_log_fit(x, y):
    exponent, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return math.exp(intercept), exponent


def test_fixed_power_law_checker():
    check_fixed_power_law(_log_log_fit)
    with pytest.raises(ExerciseFailed, match="fixed_power_law: wrong"):  # the planted bug: y left in linear space
        check_fixed_power_law(lambda x, y: (math.exp(np.polyfit(np.log(x), y, 1)[1]), np.polyfit(np.log(x), y, 1)[0]))
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        check_fixed_power_law(PACKAGE_EQUIVALENTS["check_fixed_power_law"][0])


@pytest.mark.slow
def test_corpus_prediction_checker():
    losses = measured_corpus_losses()
    winner = min(losses, key=losses.get)
    check_corpus_prediction(lambda: winner)
    with pytest.raises(ExerciseFailed, match="you predicted"):
        check_corpus_prediction(lambda: "A" if winner == "B" else "B")
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check_corpus_prediction(lambda: (_ for _ in ()).throw(NotImplementedError))
