"""`qwen-min bench NAME`: speed and memory benchmarks, reported as ratios against a reference run
measured in the same process on the same input (never absolute wall-clock claims).

Each benchmark lives beside the code it measures, in a module with `add_arguments(p)` and `run(args)`.
"""

from qwen_min.command import add_subcommands, run_subcommand

BENCHMARKS = {
    "tokenizer": ("qwen_min.bench.tokenizer", "encode speed and BPE training time vs HF tokenizers and tiktoken"),
    "generate": ("qwen_min.bench.generation_speed", "prefill/decode tokens/s and peak memory vs transformers' generate"),
    "train": ("qwen_min.bench.train", "training tokens/s and MFU of the default config vs the measured matmul peak"),
}


def add_arguments(p):
    add_subcommands(p, BENCHMARKS)


run = run_subcommand
