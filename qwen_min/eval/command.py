"""`qwen-min eval NAME`: capability benchmarks of a checkpoint (chapter 12).

Each evaluation lives in its own `<name>_command.py` with `add_arguments(p)` and `run(args)`.
"""

import importlib

EVALUATIONS = {
    "humaneval": ("qwen_min.eval.humaneval_command", "HumanEval pass@1, greedy, EvalPlus chat prompt, programs run isolated"),
}


def add_arguments(p):
    sub = p.add_subparsers(dest="evaluation", metavar="NAME", required=True)
    for name, (module, help_text) in EVALUATIONS.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(_eval_module=module)
        importlib.import_module(module).add_arguments(q)


def run(args):
    return importlib.import_module(args._eval_module).run(args)
