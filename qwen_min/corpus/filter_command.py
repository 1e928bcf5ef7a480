"""`qwen-min data filter`: write the documents a scored run keeps (score.filter_run)."""

from qwen_min.corpus.score import STAGES, filter_run


def add_arguments(p):
    p.add_argument("--run", required=True, help="a run folder made by `qwen-min data score`")
    p.add_argument("--out", required=True, help="the kept documents, .jsonl.gz")
    p.add_argument("--use", default=",".join(STAGES), help=f"stages that remove documents (default {','.join(STAGES)})")


def run(args):
    filter_run(args.run, args.out, tuple(filter(None, args.use.split(","))))
    return 0
