"""MinHash/LSH finds the planted near-duplicates at the stated threshold and groups nothing unrelated."""

import pytest

from qwen_min.corpus import dedup
from qwen_min.corpus.degrade import build_corpus


def test_minhash_estimates_jaccard():
    a = "the quick brown fox jumps over the lazy dog " * 5
    b = a.replace("lazy", "sleepy", 2)
    estimate = dedup.minhash(a).jaccard(dedup.minhash(b))
    assert abs(estimate - dedup.jaccard(a, b)) < 0.1  # standard error ~0.04 at 128 permutations


def test_planted_near_duplicates_are_caught_at_the_threshold():
    docs = build_corpus(seed=0, clean_per_source=15, degraded_per_kind=10, leaks=0)
    groups = dedup.near_duplicate_groups(docs, dedup.THRESHOLD)
    caught, planted = dedup.planted_recall(docs, groups)
    assert (caught, planted) == (10, 10)
    keep = dedup.first_of_each_group(docs, groups)
    assert all(d["id"] not in keep for d in docs if d["label"] == "near_duplicate")  # the copy goes, the original stays
    assert all(g[0] in keep for g in groups)


def test_unrelated_documents_are_not_grouped():
    docs = [d for d in build_corpus(seed=0, clean_per_source=15, degraded_per_kind=0, leaks=0)
            if d["source"] != "python-stdlib"]  # stdlib windows of one module may overlap: real near-duplicates
    text = {d["id"]: d["text"] for d in docs}
    for group in dedup.near_duplicate_groups(docs):
        assert len({text[i] for i in group}) == 1  # only a passage drawn twice: an exact repeat


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        dedup.near_duplicate_groups([], threshold=1.0)
