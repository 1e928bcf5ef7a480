"""`qwen-min data NAME`: build, score and filter a mixed-quality pre-training corpus (chapter 8b).

Each sub-command lives in its own `<name>_command.py` (add_arguments, run), as `qwen-min eval` does.

    qwen-min data score --out runs/data                  # corpus, heuristics, judge, dedup, decontamination, report
    qwen-min data score --out runs/data --no-judge       # everything but the model (seconds)
    qwen-min data filter --run runs/data --out runs/data/filtered.jsonl.gz --use heuristics,dedup,decontaminate
    qwen-min data compare --run runs/data --out results/data_filtering   # train on unfiltered / filtered / reweighted
"""

from qwen_min.command import add_subcommands, run_subcommand

SUBCOMMANDS = {
    "score": ("qwen_min.corpus.score_command", "build the labelled corpus and score it: heuristics, the instruct model "
              "as judge, MinHash dedup, LCS decontamination"),
    "filter": ("qwen_min.corpus.filter_command", "write the documents a scored run keeps (a .jsonl.gz corpus)"),
    "compare": ("qwen_min.corpus.compare_command",
                "pretrain a small Qwen on the unfiltered, filtered and reweighted corpora at one token budget, seeds"),
}


def add_arguments(p):
    add_subcommands(p, SUBCOMMANDS)


run = run_subcommand
