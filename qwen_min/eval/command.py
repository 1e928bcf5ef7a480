"""`qwen-min eval NAME`: capability benchmarks of a checkpoint (chapter 12).

Each evaluation lives in its own `<name>_command.py` with `add_arguments(p)` and `run(args)`.
"""

from qwen_min.command import add_subcommands, run_subcommand

EVALUATIONS = {
    "humaneval": ("qwen_min.eval.humaneval_command", "HumanEval pass@1, greedy, EvalPlus chat prompt, programs run isolated"),
    "perplexity": ("qwen_min.eval.perplexity_command", "held-out perplexity per weight format (bf16, int8, int4, int4-gptq)"),
    "passkey": ("qwen_min.eval.passkey_command",
                "passkey retrieval over lengths x depths, with YaRN / PI / NTK / Dual Chunk Attention or none"),
    "tasks": ("qwen_min.eval.heldout_command",
              "held-out checker accuracy per prompt (training and new phrasings), or the paired table of several runs"),
}


def add_arguments(p):
    add_subcommands(p, EVALUATIONS)


run = run_subcommand
