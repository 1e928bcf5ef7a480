"""Near-duplicate detection with MinHash and locality-sensitive hashing (`datasketch`).

    sig = minhash(text)                                   # a datasketch.MinHash of the text's 5-character shingles
    groups = near_duplicate_groups(docs, threshold=0.5)   # [[id, id, ...], ...]: documents judged near-identical
    keep = first_of_each_group(docs, groups)              # the ids a deduplicated corpus keeps

Design choices
- Shingles are character 5-grams of the text with runs of whitespace folded to one space: they work the same
  for English, code and Chinese (which has no spaces to split words on), and an edit touches at most 5 of them.
- MinHash (Broder 1997) with NUM_PERM = 128 permutations estimates the Jaccard similarity of two shingle sets
  as the fraction of equal signature slots (standard error ~ sqrt(J(1-J)/128) ~ 0.04 at J = 0.5).
- The hash family is datasketch's "legacy" scheme, the textbook one: SHA-1 of a shingle cut to 32 bits, h, then
  for each permutation (a h + b) mod (2^61 - 1) cut to 32 bits, with (a, b) drawn by numpy's RandomState(seed).
  Chapter 8b builds it by hand and checks it against datasketch bit for bit. (datasketch 2.0's default,
  "affine32", pre-mixes h and wraps mod 2^32 instead: faster, and less biased on very large sets; the
  estimates agree at the sizes here.) Quirk kept from datasketch: a h is computed in uint64 and wraps mod 2^64
  before the mod p.
- LSH (datasketch.MinHashLSH) splits the signature into bands and puts documents that agree on a whole band
  in one bucket, so candidate pairs come without comparing every pair; datasketch picks the bands for
  `threshold`. Every candidate pair is then checked against the estimated Jaccard, and groups are the
  connected components of the pairs that pass (union-find), so a chain of copies is one group.
- THRESHOLD = 0.5 (estimated Jaccard of 5-shingles): a copy with ~3% of its words changed keeps ~70-90% of
  its shingles, while two different passages of the same play share under 10%. The recall on the planted
  near-duplicates is measured (`planted_recall`), not assumed.
"""

from __future__ import annotations

import re

NUM_PERM = 128
SHINGLE = 5
THRESHOLD = 0.5


def shingles(text: str, k: int = SHINGLE) -> set[str]:
    """The set of k-character substrings of `text` (whitespace runs folded to one space).

    >>> sorted(shingles("ab  cde", 4))
    [' cde', 'ab c', 'b cd']
    """
    text = re.sub(r"\s+", " ", text)
    return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}


def minhash(text: str, num_perm: int = NUM_PERM, seed: int = 1):
    """datasketch.MinHash of the text's shingles (datasketch's hash functions: a seeded universal family)."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the shingle sets of two texts (what MinHash estimates)."""
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def near_duplicate_groups(docs: list[dict], threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> list[list[str]]:
    """Groups (of two or more ids, in corpus order) of documents whose estimated Jaccard >= threshold."""
    from datasketch import MinHashLSH

    if not 0 < threshold < 1:
        raise ValueError(f"the dedup threshold is a Jaccard similarity strictly between 0 and 1, got {threshold}")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = {}
    for d in docs:
        sigs[d["id"]] = minhash(d["text"], num_perm)
        lsh.insert(d["id"], sigs[d["id"]])
    parent = {d["id"]: d["id"] for d in docs}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for d in docs:
        for other in lsh.query(sigs[d["id"]]):
            if other != d["id"] and sigs[d["id"]].jaccard(sigs[other]) >= threshold:
                parent[root(other)] = root(d["id"])
    order = {d["id"]: i for i, d in enumerate(docs)}
    groups: dict[str, list[str]] = {}
    for d in docs:
        groups.setdefault(root(d["id"]), []).append(d["id"])
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: order[g[0]])


def first_of_each_group(docs: list[dict], groups: list[list[str]]) -> set[str]:
    """Ids a deduplicated corpus keeps: every document outside a group, and the first of each group."""
    dropped = {i for g in groups for i in g[1:]}
    return {d["id"] for d in docs} - dropped


def planted_recall(docs: list[dict], groups: list[list[str]]) -> tuple[int, int]:
    """(caught, planted): near_duplicate documents found in one group with the passage they were copied from."""
    group_of = {i: n for n, g in enumerate(groups) for i in g}
    planted = [d for d in docs if d["label"] == "near_duplicate"]
    caught = sum(d["id"] in group_of and group_of[d["id"]] == group_of.get(d["parent"]) for d in planted)
    return caught, len(planted)
