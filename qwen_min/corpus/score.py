"""Score a mixed-quality corpus into a run folder: heuristics, the judge, near-duplicates, contamination, the report.

    score_run("runs/data", seed=0, clean_per_source=60, degraded_per_kind=30)   # qwen-min data score --out runs/data
    filter_run("runs/data", "runs/data/filtered.jsonl.gz")                     # qwen-min data filter --run runs/data

A run folder holds
    run.json             the settings (a second `score` on the same folder must give the same ones)
    corpus.jsonl         the documents, with their labels (degrade.py)
    heuristics.jsonl     length, repetition and language signals and flags, one line per document
    judge.jsonl          the judge's score of each document (appended batch by batch: resumable)
    dedup.json           near-duplicate groups and the recall on the planted copies at several thresholds
    contamination.json   the documents the LCS rule removes, with the test they leak
    report.json          precision/recall of every filter with 95% intervals (evaluate.py), and report.md

Design choices
- Each stage writes its file once and is skipped when the file is there, so an interrupted run continues
  where it stopped (the judge, the only slow stage, inside its file too).
- The filter keeps a document when no quality rule flags it (the heuristics, and the judge with the threshold
  report.json chose), it is the first of its near-duplicate group, and it leaks no test. `--use` picks the
  stages (e.g. heuristics,dedup: the judge left out).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from qwen_min import paths
from qwen_min.corpus import decontaminate, dedup, heuristics
from qwen_min.corpus.degrade import build_corpus, is_bad
from qwen_min.corpus.evaluate import quality_report
from qwen_min.corpus.judge import load_judge, read_scores, score_into
from qwen_min.progress import progress_bar
from qwen_min.tokenizer.bpe import Tokenizer

SETTINGS_FILE = "run.json"
DEDUP_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
STAGES = ("heuristics", "judge", "dedup", "decontaminate")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def official_tokenizer():
    """The tokenizer decontamination counts tokens with: Qwen2.5's (shipped in data/qwen2.5, no checkpoint needed)."""
    return Tokenizer.from_pretrained(paths.official_tokenizer_dir())


def load_corpus(out: Path, settings: dict) -> list[dict]:
    """The run's documents: built and written on the first call, read back (settings checked) afterwards."""
    settings_file = out / SETTINGS_FILE
    if settings_file.exists():
        saved = json.loads(settings_file.read_text(encoding="utf-8"))
        if saved != settings:
            changed = ", ".join(f"{k} {saved.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(saved) | set(settings))
                                if saved.get(k) != settings.get(k))
            raise ValueError(f"{out} was scored with other settings ({changed}): use another --out")
        return _read_jsonl(out / "corpus.jsonl")
    docs = build_corpus(settings["seed"], settings["clean_per_source"], settings["degraded_per_kind"], settings["leaks"])
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "corpus.jsonl", docs)
    _write_json(settings_file, settings)
    return docs


def heuristics_stage(out: Path, docs: list[dict], progress: bool = True) -> dict[str, dict[str, bool]]:
    path = out / "heuristics.jsonl"
    if not path.exists():
        records = []
        for d in progress_bar(docs, desc="heuristics", unit="doc", enabled=progress):
            s = heuristics.signals(d["text"])
            records.append({"id": d["id"], **s, "flags": heuristics.flags_from_signals(s)})
        _write_jsonl(path, records)
    return {r["id"]: r["flags"] for r in _read_jsonl(path)}


def dedup_stage(out: Path, docs: list[dict]) -> dict:
    path = out / "dedup.json"
    if not path.exists():
        recall = {}
        for t in DEDUP_THRESHOLDS:
            caught, planted = dedup.planted_recall(docs, dedup.near_duplicate_groups(docs, t))
            recall[str(t)] = {"caught": caught, "planted": planted}
        groups = dedup.near_duplicate_groups(docs, dedup.THRESHOLD)
        _write_json(path, {"threshold": dedup.THRESHOLD, "num_perm": dedup.NUM_PERM, "shingle": dedup.SHINGLE,
                           "recall_by_threshold": recall, "groups": groups,
                           "dropped": sorted({d["id"] for d in docs} - dedup.first_of_each_group(docs, groups))})
    return json.loads(path.read_text(encoding="utf-8"))


def decontaminate_stage(out: Path, docs: list[dict], progress: bool = True) -> dict:
    path = out / "contamination.json"
    if not path.exists():
        tok = official_tokenizer()
        tests = decontaminate.humaneval_tests(tok)
        hits = {}
        for d in progress_bar(docs, desc="decontaminate", unit="doc", enabled=progress):
            hit, k, n = decontaminate.contaminated(tok.encode(d["text"]), tests)
            if hit:
                hits[d["id"]] = {"test": k, "lcs": n}
        leaks = [d["id"] for d in docs if d["label"] == "leak"]
        _write_json(path, {"rule": {"min_tokens": decontaminate.MIN_TOKENS, "min_fraction": decontaminate.MIN_FRACTION},
                           "tests": "HumanEval prompt + canonical solution (164)", "removed": hits,
                           "planted_caught": sum(i in hits for i in leaks), "planted": len(leaks),
                           "false_alarms": sorted(set(hits) - set(leaks))})
    return json.loads(path.read_text(encoding="utf-8"))


def score_run(out: str | Path, *, seed: int = 0, clean_per_source: int = 60, degraded_per_kind: int = 30, leaks: int = 5,
              checkpoint: str | None = "0.5B", format: str = "fp32", batch_size: int = 8, max_doc_tokens: int = 256,
              progress: bool = True,
              log=print) -> dict:
    """Run every stage into `out` (the judge only when `checkpoint` is given) and write report.json / report.md."""
    out = Path(out)
    settings = {"seed": seed, "clean_per_source": clean_per_source, "degraded_per_kind": degraded_per_kind,
                "leaks": leaks, "checkpoint": checkpoint, "format": format, "max_doc_tokens": max_doc_tokens}
    docs = load_corpus(out, settings)
    log(f"{len(docs)} documents in {out}/corpus.jsonl")
    flags = heuristics_stage(out, docs, progress)
    judge = None
    if checkpoint is not None:
        judge = read_scores(out / "judge.jsonl")
        if len(judge) < len(docs):
            model, tok = load_judge(checkpoint, format, log=log)
            judge = score_into(out / "judge.jsonl", docs, model, tok, batch_size, max_doc_tokens, progress)
    dups = dedup_stage(out, docs)
    contamination = decontaminate_stage(out, docs, progress)
    report = quality_report(docs, flags, judge, is_bad, seed)
    report["dedup"] = {k: dups[k] for k in ("threshold", "recall_by_threshold")} | {"dropped": len(dups["dropped"])}
    report["decontamination"] = {k: contamination[k] for k in ("planted_caught", "planted", "false_alarms")}
    _write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report), encoding="utf-8")
    log(report_markdown(report))
    return report


def report_markdown(report: dict) -> str:
    """The report's tables in Markdown: filters (precision / recall with intervals), dedup, decontamination."""
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    lines = [f"Quality filters on the evaluation half ({report['n_evaluation']} of {report['n_documents']} documents):",
             "", "| filter | flagged | precision (95% CI) | recall (95% CI) |", "|---|---|---|---|"]
    for name, m in report["filters"].items():
        lines.append(f"| {name} | {m['tp'] + m['fp']} | {pct(m['precision']) if m['tp'] + m['fp'] else '-'} "
                     f"({pct(m['precision_ci'][0])}-{pct(m['precision_ci'][1])}) | {pct(m['recall'])} "
                     f"({pct(m['recall_ci'][0])}-{pct(m['recall_ci'][1])}) |")
    if "judge" in report:
        j = report["judge"]
        lines += ["", f"Judge: threshold {j['threshold']:.3f} (chosen on the calibration half), ROC AUC {j['auc']:.2f} "
                      f"(95% CI {j['auc_ci'][0]:.2f}-{j['auc_ci'][1]:.2f}), lowest probability on the digits "
                      f"{j['min_digit_mass']:.3f}."]
    recall = ", ".join(f"{t}: {r['caught']}/{r['planted']}" for t, r in report["dedup"]["recall_by_threshold"].items())
    d = report["decontamination"]
    lines += ["", f"Near-duplicates (MinHash/LSH, Jaccard threshold {report['dedup']['threshold']}): planted copies found "
                  f"by threshold {recall}; {report['dedup']['dropped']} documents dropped.",
              f"Decontamination (LCS >= 13 tokens and >= 0.6 x shorter, vs HumanEval): {d['planted_caught']}/{d['planted']} "
              f"planted leaks caught, {len(d['false_alarms'])} other documents removed."]
    return "\n".join(lines) + "\n"


def kept_ids(out: str | Path, use: tuple[str, ...] = STAGES) -> tuple[list[dict], dict[str, set[str]]]:
    """(documents of the run, ids each stage in `use` removes)."""
    out = Path(out)
    if not (out / "report.json").exists():
        raise FileNotFoundError(f"{out}/report.json: no scored run here (qwen-min data score --out {out} makes one)")
    unknown = set(use) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; known: {', '.join(STAGES)}")
    docs = _read_jsonl(out / "corpus.jsonl")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    removed = {}
    if "heuristics" in use:
        removed["heuristics"] = set(report["flagged"]["heuristics"])
    if "judge" in use:
        if "judge" not in report["flagged"]:
            raise ValueError(f"{out} was scored without the judge: drop 'judge' from --use")
        removed["judge"] = set(report["flagged"]["judge"])
    if "dedup" in use:
        removed["dedup"] = set(json.loads((out / "dedup.json").read_text(encoding="utf-8"))["dropped"])
    if "decontaminate" in use:
        removed["decontaminate"] = set(json.loads((out / "contamination.json").read_text(encoding="utf-8"))["removed"])
    return docs, removed


def filter_run(run: str | Path, out: str | Path, use: tuple[str, ...] = STAGES, log=print) -> list[dict]:
    """Write the documents no stage in `use` removes to `out` (.jsonl.gz, {"title", "text"} per line: a corpus
    `qwen-min pretrain --data` reads); returns them."""
    docs, removed = kept_ids(run, use)
    gone = set().union(*removed.values()) if removed else set()
    kept = [d for d in docs if d["id"] not in gone]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write("".join(json.dumps({"title": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n"
                        for d in kept).encode("utf-8"))
    log(f"kept {len(kept)} of {len(docs)} documents -> {out}; removed by " +
        ", ".join(f"{k} {len(v)}" for k, v in removed.items()) + " (a document may be removed by several)")
    return kept
