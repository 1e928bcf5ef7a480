"""`qwen-min data score`: the labelled mixed-quality corpus, scored into a run folder (score.py)."""

from qwen_min.command import add_model_arguments
from qwen_min.corpus.score import score_run


def add_arguments(p):
    p.add_argument("--out", required=True, help="run folder (created; an interrupted run continues in it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus (default 0)")
    p.add_argument("--clean-per-source", type=int, default=60, help="clean passages per source (default 60)")
    p.add_argument("--degraded-per-kind", type=int, default=30, help="documents per degradation (default 30)")
    p.add_argument("--leaks", type=int, default=5, help="HumanEval problems planted in code passages (default 5)")
    add_model_arguments(p)  # the judge
    p.add_argument("--no-judge", action="store_true", help="skip the judge (heuristics, dedup, decontamination only)")
    p.add_argument("--batch-size", type=int, default=8, help="documents per judge forward pass (default 8)")
    p.add_argument("--max-doc-tokens", type=int, default=256, help="the judge reads this many tokens of a document")


def run(args):
    score_run(args.out, seed=args.seed, clean_per_source=args.clean_per_source, degraded_per_kind=args.degraded_per_kind,
              leaks=args.leaks, checkpoint=None if args.no_judge else args.checkpoint, format=args.format,
              batch_size=args.batch_size,
              max_doc_tokens=args.max_doc_tokens)
    return 0
