"""The mixed-quality corpus: every degradation does what its label says, seeded, and held-out passages stay held out."""

from collections import Counter

import pytest

from qwen_min.corpus import dedup
from qwen_min.corpus.degrade import DEGRADATIONS, QUALITY_LABEL, build_corpus, is_bad
from qwen_min.eval.humaneval import load_problems


@pytest.fixture(scope="module")
def docs():
    return build_corpus(seed=0, clean_per_source=10, degraded_per_kind=8, leaks=3)


def test_sizes_labels_and_ids(docs):
    counts = Counter(d["label"] for d in docs)
    assert counts == {"clean": 30, **{k: 8 for k in DEGRADATIONS}, "leak": 3}
    assert len({d["id"] for d in docs}) == len(docs)
    assert set(QUALITY_LABEL) == set(counts)
    assert [is_bad(d) for d in docs].count(True) == 8 * 5  # every degradation but near_duplicate


def test_seeded(docs):
    assert build_corpus(seed=0, clean_per_source=10, degraded_per_kind=8, leaks=3) == docs
    assert build_corpus(seed=1, clean_per_source=10, degraded_per_kind=8, leaks=3) != docs


def _by_id(docs):
    return {d["id"]: d for d in docs}


def test_each_degradation_is_what_its_label_says(docs):
    parent = lambda d: _by_id(docs)[d["parent"]]["text"]  # noqa: E731
    for d in docs:
        text = d["text"]
        if d["label"] == "truncated":
            assert parent(d).startswith(text) and len(text) < 0.2 * len(parent(d)) + 12
        elif d["label"] == "shuffled":
            assert sorted("".join(text.split())) == sorted("".join(parent(d).split()))  # same characters, other order
            assert text != parent(d)
        elif d["label"] == "repeated":
            lines = [line for line in text.splitlines() if line.strip()]
            assert len(lines) >= 8 and len(set(lines)) <= 2
        elif d["label"] == "boilerplate":
            assert any(w in text for w in ("Privacy Policy", "Sponsored", "Official Store"))
        elif d["label"] == "broken_code":
            assert d["source"] == "python-stdlib"
            assert not any(line.startswith((" ", "\t")) for line in text.splitlines())  # indentation gone
        elif d["label"] == "near_duplicate":
            assert text != parent(d) and dedup.jaccard(text, parent(d)) >= 0.5
        elif d["label"] == "leak":
            assert any(p["canonical_solution"].strip().splitlines()[-1] in text for p in load_problems())
        else:
            assert d["label"] == "clean" and d["parent"] is None


def test_held_out_passages_come_from_other_documents():
    train = build_corpus(0, 20, 0, 0)
    val = build_corpus(0, 20, 0, 0, split="val")
    assert not {d["text"] for d in train} & {d["text"] for d in val}
    code_val = [d["text"] for d in val if d["source"] == "python-stdlib"]
    code_train = " ".join(d["text"] for d in train if d["source"] == "python-stdlib")
    assert all(t[:200] not in code_train for t in code_val)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1 clean passage"):
        build_corpus(clean_per_source=0)
    with pytest.raises(ValueError, match="split is 'train' or 'val'"):
        build_corpus(split="test")
