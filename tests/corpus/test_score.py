"""`qwen-min data score / filter`: the run folder, resuming, the report, the filtered corpus, and one-line errors."""

import json

import pytest

from qwen_min.cli import main
from qwen_min.corpus import score
from qwen_min.corpus.evaluate import best_threshold, precision_recall, roc_auc
from qwen_min.train.data import read_documents

SMALL = ["--clean-per-source", "8", "--degraded-per-kind", "4", "--leaks", "2", "--no-judge"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "run"
    assert main(["data", "score", "--out", str(out), *SMALL]) == 0
    return out


def test_score_writes_every_stage_and_the_report(run):
    for name in ("run.json", "corpus.jsonl", "heuristics.jsonl", "dedup.json", "contamination.json", "report.json"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    assert report["n_documents"] == 3 * 8 + 6 * 4 + 2
    assert report["decontamination"]["planted_caught"] == 2
    assert report["dedup"]["recall_by_threshold"]["0.5"] == {"caught": 4, "planted": 4}
    assert "judge" not in report and set(report["filters"]) == {"too_short", "repetitive", "language", "heuristics"}


def test_a_second_score_reuses_the_run_and_refuses_other_settings(run, capsys):
    before = (run / "heuristics.jsonl").stat().st_mtime_ns
    assert main(["data", "score", "--out", str(run), *SMALL]) == 0
    assert (run / "heuristics.jsonl").stat().st_mtime_ns == before  # done stages are not redone
    assert main(["data", "score", "--out", str(run), *SMALL, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (seed 0 -> 1)" in err[0]


def test_filter_writes_a_corpus_pretraining_reads(run, tmp_path):
    out = tmp_path / "kept.jsonl.gz"
    assert main(["data", "filter", "--run", str(run), "--out", str(out), "--use", "heuristics,dedup,decontaminate"]) == 0
    kept = read_documents(out)
    docs = [json.loads(line) for line in (run / "corpus.jsonl").read_text().splitlines()]
    assert 0 < len(kept) < len(docs)
    leaked = {d["text"] for d in docs if d["label"] == "leak"}
    assert not leaked & set(kept)


def test_filter_errors_are_one_line(run, tmp_path, capsys):
    assert main(["data", "filter", "--run", str(tmp_path), "--out", str(tmp_path / "x.jsonl.gz")]) == 2
    assert main(["data", "filter", "--run", str(run), "--out", str(tmp_path / "x.jsonl.gz"), "--use", "judge"]) == 2
    assert main(["data", "filter", "--run", str(run), "--out", str(tmp_path / "x.jsonl.gz"), "--use", "vibes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "no scored run here" in err[0] and "without the judge" in err[1] and "unknown stage(s) vibes" in err[2]


def test_precision_recall_and_auc_by_hand():
    pr = precision_recall([True, True, False, False], [True, False, True, False])
    assert (pr["tp"], pr["fp"], pr["fn"], pr["precision"], pr["recall"]) == (1, 1, 1, 0.5, 0.5)
    assert pr["precision_ci"][0] < 0.5 < pr["precision_ci"][1]
    assert roc_auc([1, 2, 3, 4], [True, True, False, False])[0] == 1.0  # bad ones score lowest: perfect
    assert roc_auc([1, 1, 1, 1], [True, True, False, False])[0] == 0.5  # all tied: chance
    assert best_threshold([1, 2, 8, 9], [True, True, False, False]) == 5.0


def test_score_stage_names_match_filter():
    assert score.STAGES == ("heuristics", "judge", "dedup", "decontaminate")
