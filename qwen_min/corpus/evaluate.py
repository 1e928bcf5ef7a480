"""How well a filter finds the planted bad documents: precision and recall with 95% intervals, ROC AUC.

    pr = precision_recall(flagged=[True, False, True], bad=[True, False, False])
    # {"tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "precision_ci": [0.09, 0.91], "recall": 1.0, ...}
    auc, (low, high) = roc_auc(scores=[1.0, 5.0, 2.0], bad=[True, False, True])   # a low score should mean bad

Design choices
- Precision and recall are proportions (of flagged documents that are bad, of bad documents that are flagged),
  so their 95% intervals are Wilson score intervals (qwen_min.eval.passk.wilson_interval), which stay inside
  [0, 1] and behave at 0 and n, where the normal approximation does not.
- The judge's score is a number, a filter needs a threshold: it is chosen on one half of the corpus (the
  calibration half, the documents at even positions of a seeded shuffle) to maximise F1, and every filter is
  reported on the other half (the evaluation half), so the judge's figures are not tuned on the documents they
  are measured on. The heuristics' thresholds were fixed in advance (heuristics.py) and need no calibration.
- ROC AUC (the probability a random bad document scores lower than a random good one, ties counting half)
  needs no threshold; its interval is a seeded percentile bootstrap (1,000 resamples).
"""

from __future__ import annotations

import random

import numpy as np

from qwen_min.eval.passk import wilson_interval


def precision_recall(flagged: list[bool], bad: list[bool]) -> dict:
    """Counts, precision and recall of `flagged` against the truth `bad`, with Wilson 95% intervals."""
    tp = sum(f and b for f, b in zip(flagged, bad))
    fp = sum(f and not b for f, b in zip(flagged, bad))
    fn = sum(b and not f for f, b in zip(flagged, bad))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision,
            "precision_ci": list(wilson_interval(tp, tp + fp)) if tp + fp else [0.0, 1.0],
            "recall": recall, "recall_ci": list(wilson_interval(tp, tp + fn)) if tp + fn else [0.0, 1.0]}


def roc_auc(scores: list[float], bad: list[bool], resamples: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """P(score of a bad document < score of a good one), ties half; and its 95% percentile-bootstrap interval."""
    scores, bad = np.asarray(scores, dtype=float), np.asarray(bad, dtype=bool)

    def auc(s, b):
        lo, hi = s[b], s[~b]
        if not len(lo) or not len(hi):
            return float("nan")
        return float(((lo[:, None] < hi[None]).sum() + 0.5 * (lo[:, None] == hi[None]).sum()) / (len(lo) * len(hi)))

    rng = np.random.default_rng(seed)
    boots = [auc(scores[i], bad[i]) for i in (rng.integers(0, len(scores), len(scores)) for _ in range(resamples))]
    return auc(scores, bad), [float(x) for x in np.nanpercentile(boots, [2.5, 97.5])]


def halves(ids: list[str], seed: int = 0) -> tuple[set[str], set[str]]:
    """(calibration ids, evaluation ids): even and odd positions of a seeded shuffle."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return set(order[::2]), set(order[1::2])


def best_threshold(scores: list[float], bad: list[bool]) -> float:
    """The threshold t (flag a document when score < t) that maximises F1; t is a midpoint between two scores."""
    values = sorted(set(scores))
    candidates = [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-9]

    def f1(t):
        pr = precision_recall([s < t for s in scores], bad)
        return 2 * pr["tp"] / (2 * pr["tp"] + pr["fp"] + pr["fn"]) if pr["tp"] else 0.0

    return max(candidates, key=f1)


def quality_report(docs: list[dict], heuristic_flags: dict[str, dict[str, bool]], judge: dict[str, dict] | None,
                   is_bad, seed: int = 0) -> dict:
    """Precision/recall of each filter on the evaluation half: each heuristic, any heuristic, and, when judge
    scores are given, the judge (threshold from the calibration half) and judge-or-heuristics.
    Also the fraction of each label every filter flags, over all documents."""
    calibration, evaluation = halves([d["id"] for d in docs], seed)
    flagged: dict[str, dict[str, bool]] = {}
    rules = next(iter(heuristic_flags.values())).keys()
    for rule in rules:
        flagged[rule] = {i: f[rule] for i, f in heuristic_flags.items()}
    flagged["heuristics"] = {i: any(f.values()) for i, f in heuristic_flags.items()}
    report: dict = {"n_documents": len(docs), "n_evaluation": len(evaluation)}
    if judge is not None:
        cal = [d for d in docs if d["id"] in calibration]
        threshold = best_threshold([judge[d["id"]]["score"] for d in cal], [is_bad(d) for d in cal])
        flagged["judge"] = {d["id"]: judge[d["id"]]["score"] < threshold for d in docs}
        flagged["judge_or_heuristics"] = {i: flagged["judge"][i] or flagged["heuristics"][i] for i in flagged["judge"]}
        ev = [d for d in docs if d["id"] in evaluation]
        auc, auc_ci = roc_auc([judge[d["id"]]["score"] for d in ev], [is_bad(d) for d in ev], seed=seed)
        report["judge"] = {"threshold": threshold, "auc": auc, "auc_ci": auc_ci,
                           "min_digit_mass": min(judge[d["id"]]["digit_mass"] for d in docs)}
    ev = [d for d in docs if d["id"] in evaluation]
    report["filters"] = {name: precision_recall([f[d["id"]] for d in ev], [is_bad(d) for d in ev])
                         for name, f in flagged.items()}
    labels = sorted({d["label"] for d in docs})
    report["flagged_by_label"] = {name: {lab: float(np.mean([f[d["id"]] for d in docs if d["label"] == lab]))
                                         for lab in labels} for name, f in flagged.items()}
    report["flagged"] = {name: sorted(i for i, v in f.items() if v) for name, f in flagged.items()}
    return report
