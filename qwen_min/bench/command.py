"""`qwen-min bench NAME`: speed and memory benchmarks, reported as ratios against a reference run
measured in the same process on the same input (never absolute wall-clock claims).

Each benchmark lives beside the code it measures, in a module with `add_arguments(p)` and `run(args)`.
"""

import importlib

BENCHMARKS = {
    "tokenizer": ("qwen_min.bench.tokenizer", "encode speed and BPE training time vs HF tokenizers and tiktoken"),
    "generate": ("qwen_min.bench.generate", "prefill/decode tokens/s and peak memory vs transformers' generate"),
    "train": ("qwen_min.bench.train", "training tokens/s and MFU of the default config vs the measured matmul peak"),
}


def add_arguments(p):
    sub = p.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(_bench_module=module)
        try:
            importlib.import_module(module).add_arguments(q)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            q.set_defaults(_bench_module=None)  # listed, not built yet


def run(args):
    if args._bench_module is None:
        raise RuntimeError(f"benchmark {args.benchmark!r} is not built yet")
    return importlib.import_module(args._bench_module).run(args)
