"""`qwen-min data compare`: pretrain on the unfiltered, filtered, oracle and reweighted corpora, seeds paired (compare.py)."""

from qwen_min.corpus.compare import compare_corpora


def add_arguments(p):
    p.add_argument("--run", required=True, help="a run folder made by `qwen-min data score`")
    p.add_argument("--out", required=True, help="folder for the training runs and summary.json")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per arm (default 5)")
    p.add_argument("--use", default="heuristics,dedup,decontaminate",
                   help="stages the filtered arm removes documents with (default heuristics,dedup,decontaminate)")


def run(args):
    if args.seeds < 2:
        raise ValueError(f"--seeds must be at least 2 (an interval needs two), got {args.seeds}")
    compare_corpora(args.run, args.out, tuple(range(args.seeds)), tuple(filter(None, args.use.split(","))))
    return 0
