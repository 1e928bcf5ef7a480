"""`qwen-min bench generate`: prefill and decode speed of `qm.generate` vs transformers' `generate`,
on the same weights, dtype and prompt, in one run; peak memory; the memory-bandwidth floor.

    qwen-min bench generate                         # default checkpoint, fp32 then bf16, vs transformers
    qwen-min bench generate --formats fp32 --prompt-tokens 64 --new-tokens 16
    qwen-min bench generate --compare formats --formats fp32,bf16,int8,int4 --batch 1,8,32

Design choices
- Same weights, no second load: the transformers `Qwen2ForCausalLM` is built on the meta
  device from our config and handed our tensors (`load_state_dict(assign=True)`), so both
  engines read the very same memory. (Its rotary buffer is rebuilt on the CPU: buffers are
  not in the state dict.) bf16 converts our model in place and hands the tensors over again.
- Greedy, no stop token, the same prompt: both engines do exactly the same work, and the
  report says whether they produced the same tokens.
- Prefill = time to the first new token (a `max_new_tokens=1` run); decode tokens/s =
  (new tokens - 1) / (time of the full run - prefill time). Each figure is the best of
  `--repeats` runs, engines interleaved, so a busy machine hurts both alike. Speeds are
  reported as ratios qwen_min / transformers; absolute numbers only say what this machine did.
- Decode is memory-bound: each step reads every weight matrix once (the embedding table
  excepted: one row) and each row's KV cache (keys and values of every earlier position, taken
  at the mean context of the decode). The floor is measured bandwidth / those bytes: the steps/s
  no engine can beat in that format. The bandwidth is measured in the same run, the best of
  5 reads of 256 MB by two kernels, a `sum` and a matrix-vector product (the decode's own access
  pattern); other work on the machine can only slow it, so a figure above 100% of the floor
  means the bandwidth was measured while the machine was busy (the printed header says so).
- Peak memory: CPU peak resident set (Linux VmHWM, reset before each run through
  /proc/self/clear_refs), CUDA `max_memory_allocated`. It includes the shared weights and
  the ~0.2 GB of the interpreter and torch. Before each reset, freed memory is handed back
  (`gc.collect`, glibc `malloc_trim`): without it, the fp32 copy a format was quantised from
  stayed resident and counted in the next peaks.
- `--compare formats --formats fp32,bf16,int8,int4 --batch 1,8,32` compares weight formats instead of engines
  (qwen_min only; int8/int4 are `qm.quantize`'s weight-only kernels): prefill and decode tokens/s
  per batch size (tokens of all rows together), peak memory, and each format's floor in steps/s (one
  step serves the whole batch: the weights are read once for all rows, the KV cache once per row).
  Each format is loaded afresh (`qm.load`); its peak covers its own weights and the run's KV cache and
  activations.
- Every engine, format and batch size gets one untimed warm-up run first: the first pass over
  freshly loaded or quantised weights pays page faults and allocator growth (measured: int8 at
  batch 1 decoded 13.8 tok/s in its first run, 25 in the next).
- `--profile` adds, per format, where one decode step's time goes (torch.profiler, 10 steps of
  one token on a 128-token cache, self time per ATen op): what a faster kernel, less per-op
  overhead or `torch.compile` could win at best.
- llama.cpp, when llama-cpp-cffi is installed (`pip install llama-cpp-cffi==0.4.42 --no-deps`,
  a prebuilt llama.cpp called through its C API) and the checkpoint is a GGUF, decodes the same
  prompt greedily from the quantised file with its own kernels (no dequantisation): its speed,
  qwen_min's ratio to it per format at batch 1, and where their greedy tokens first differ.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.machinery
import importlib.util
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from qwen_min.checkpoints.hf import from_pretrained
from qwen_min.checkpoints.load import checkpoint_path, load
from qwen_min.checkpoints.transformers_twin import transformers_twin
from qwen_min.command import CHECKPOINT_HELP
from qwen_min.generation import generate
from qwen_min.model.attention import KVCache
from qwen_min.paths import official_tokenizer_dir
from qwen_min.quant.quantize import to_format, weight_bytes
from qwen_min.tokenizer.bpe import Tokenizer

ENGINE_CHOICES = ("fp32", "bf16")  # the formats both engines run (transformers has no weight-only int kernels)
TIMED_CHOICES = ("fp32", "bf16", "fp16", "int8", "int4")  # what --compare formats can time
PROMPT_TEXT = ("Large language models read a prompt all at once, then write their answer one token at a time. "
               "Each new token attends to every earlier one through the key/value cache. ")


def add_arguments(p):
    p.add_argument("--checkpoint", default="0.5B", help=CHECKPOINT_HELP + " (default 0.5B)")
    p.add_argument("--compare", choices=["engines", "formats"], default="engines",
                   help="engines: qwen_min vs transformers' generate in each format (default); formats: the formats "
                        "against each other at each --batch")
    p.add_argument("--formats", help="comma list of formats, each timed (default fp32,bf16; with --compare formats "
                                     f"choose from {', '.join(TIMED_CHOICES)})")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="runs per engine and figure; the best counts")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="1", help="with --compare formats: comma list of batch sizes (default 1), e.g. 1,8,32")
    p.add_argument("--profile", action="store_true",
                   help="with --compare formats: where one decode step's time goes, per format (torch.profiler, first "
                        "batch size)")


# ---------------------------------------------------------------------------- measuring
def memory_bandwidth(device: str, nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes/s of reading a 256 MB fp32 tensor: the best of `repeats` rounds of a `sum` and of a matrix-vector
    product (a decode step's access pattern), so the figure is what this machine can read, not what one kernel does."""
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    matrix, vector = x.view(-1, 4096), torch.ones(4096, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(repeats):
        for read in (lambda: x.sum().item(), lambda: (matrix @ vector)[0].item()):
            _sync(device)
            start = time.perf_counter()
            read()
            best = min(best, time.perf_counter() - start)
    return nbytes / best


def bytes_per_token(model, context: int = 0, rows: int = 1) -> int:
    """Bytes one decode step reads: every weight once (the embedding table: one row, `weight_bytes`; all of it again
    when the LM head is tied to it), plus the KV cache of `rows` rows over `context` earlier positions (in the
    activations' dtype, as `generate` keeps it)."""
    embedding = model.model.embed_tokens.weight
    tied_head = embedding.nbytes if getattr(model.lm_head, "weight", None) is embedding else 0
    return weight_bytes(model) + tied_head + rows * context * model.config.kv_cache_bytes_per_token(embedding.element_size())


FLOOR_HEADER = ("floor: steps/s if each decode step only read its bytes (weights + KV cache) at the bandwidth above; "
                "above 100% of it means that measurement was slowed by other work")


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _release_freed_memory() -> None:
    """Hand memory that Python and glibc freed but kept back to the system, so the next peak is this run's own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # measured: 0.7 GB of a deleted 0.5B model stays resident without it
    except (OSError, AttributeError):
        pass


def _reset_peak(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        _release_freed_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
        except OSError:
            pass


def _peak_bytes(device: str) -> int:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # no reset possible: peak of the whole process


def _timed(fn, device):
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out, _peak_bytes(device)


# ---------------------------------------------------------------------------- the engines
def run_engines(model, hf, prompt: list[int], new_tokens: int, repeats: int, device: str) -> dict:
    ids = torch.tensor([prompt], device=device)
    engines = {
        "qwen_min": lambda n: generate(model, prompt, max_new_tokens=n, stop_ids=()),
        "transformers": lambda n: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                              do_sample=False)[0, len(prompt):].tolist(),
    }
    results = {name: {"prefill_s": float("inf"), "full_s": float("inf"), "peak": 0} for name in engines}
    with torch.inference_mode():
        for fn in engines.values():
            fn(2)  # warm-up, untimed
        for _ in range(repeats):
            for name, fn in engines.items():  # interleaved: a busy machine slows both alike
                r = results[name]
                seconds, _, peak = _timed(lambda: fn(1), device)
                r["prefill_s"] = min(r["prefill_s"], seconds)
                seconds, tokens, peak_full = _timed(lambda: fn(new_tokens), device)
                r["full_s"], r["tokens"] = min(r["full_s"], seconds), tokens
                r["peak"] = max(r["peak"], peak, peak_full)
    for r in results.values():
        r["prefill_tok_s"] = len(prompt) / r["prefill_s"]
        r["decode_tok_s"] = (new_tokens - 1) / max(r["full_s"] - r["prefill_s"], 1e-9)
    return results


LLAMA_CPP_INSTALL = "pip install llama-cpp-cffi==0.4.42 --no-deps"


def _llama_cpp_library():
    """((ffi, lib), None) for llama.cpp's C API, or (None, why not). The library is llama-cpp-cffi's prebuilt CPU
    build, loaded on its own: the package's Python layer imports transformers < 5, which this project does not pin."""
    spec = importlib.util.find_spec("llama")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    library = next(folder.glob("_llama_cpp_cpu*.so"), None) if folder else None
    if library is None:
        return None, f"llama-cpp-cffi is not installed ({LLAMA_CPP_INSTALL})"
    loader = importlib.machinery.ExtensionFileLoader("_llama_cpp_cpu", str(library))
    try:
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_llama_cpp_cpu", loader))
        loader.exec_module(module)
    except ImportError as e:  # e.g. a libstdc++ older than the one it was built against (README)
        return None, f"llama.cpp's library does not load: {e}"
    return (module.ffi, module.lib), None


@contextmanager
def _c_stderr_silenced():
    """Send file descriptor 2 (where C libraries write) to /dev/null for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def llama_cpp_decode(path: Path, prompt: list[int], new_tokens: int, repeats: int = 3) -> tuple[dict | None, str | None]:
    """llama.cpp on the GGUF file with its own quantised kernels, greedy, batch 1, `torch.get_num_threads()` threads:
    ({"prefill_tok_s", "decode_tok_s", "tokens"}, None), best of `repeats` after a warm-up, or (None, why not)."""
    api, reason = _llama_cpp_library()
    if api is None:
        return None, reason
    ffi, lib = api
    with _c_stderr_silenced():  # llama.cpp logs every metadata key and tensor while loading
        lib.llama_backend_init()
        model = lib.llama_model_load_from_file(str(path).encode(), lib.llama_model_default_params())
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch = len(prompt) + new_tokens + 8, len(prompt)
        params.n_threads = params.n_threads_batch = torch.get_num_threads()
        ctx = lib.llama_init_from_model(model, params)
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))

    def decode(ids: list[int]) -> None:
        tokens = ffi.new("llama_token[]", ids)  # named: the batch only points at it, so it must outlive llama_decode
        if lib.llama_decode(ctx, lib.llama_batch_get_one(tokens, len(ids))) != 0:
            raise RuntimeError("llama_decode failed")

    def run() -> dict:
        lib.llama_kv_self_clear(ctx)
        start = time.perf_counter()
        decode(prompt)
        prefill = time.perf_counter() - start
        tokens = []
        for _ in range(new_tokens):
            logits = ffi.buffer(lib.llama_get_logits_ith(ctx, -1), 4 * n_vocab)
            tokens.append(int(torch.frombuffer(bytearray(logits), dtype=torch.float32).argmax()))
            decode(tokens[-1:])
        decode_s = time.perf_counter() - start - prefill
        return {"prefill_tok_s": len(prompt) / prefill, "decode_tok_s": new_tokens / decode_s, "tokens": tokens}

    try:
        with _c_stderr_silenced():
            run()  # warm-up: llama.cpp repacks some weights on first use (and says so)
        return max((run() for _ in range(repeats)), key=lambda r: r["decode_tok_s"]), None
    finally:
        lib.llama_free(ctx)
        lib.llama_model_free(model)


def decode_profile(model, rows: list[list[int]], steps: int = 10, top: int = 6) -> list[tuple[str, float, int]]:
    """Where one decode step's time goes: [(ATen op, ms per step, calls per step), ...] by self time, the `top`
    ops and then "everything else", measured over `steps` one-token steps after a prefill of `rows` (no padding)."""
    from torch.profiler import ProfilerActivity, profile

    ids = torch.tensor(rows, device=model.model.embed_tokens.weight.device)  # (b, t)
    cache = KVCache(model.config, len(rows), ids.shape[1] + steps + 3, dtype=model.model.embed_tokens.weight.dtype,
                    device=ids.device)
    with torch.inference_mode():
        model(ids, cache=cache)
        step = ids[:, -1:]  # (b, 1): any token will do, the work per step is the same
        for _ in range(3):
            model(step, cache=cache)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                model(step, cache=cache)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    table = [(e.key, e.self_cpu_time_total / steps / 1e3, e.count // steps) for e in ops[:top]]
    rest = sum(e.self_cpu_time_total for e in ops[top:]) / steps / 1e3
    return table + [("everything else", rest, sum(e.count for e in ops[top:]) // steps)]


# ---------------------------------------------------------------------------- weight formats
def _csv(text: str, what: str, parse=str) -> list:
    try:
        return [parse(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{what} takes a comma list, got {text!r}") from None


def _batch_speed(model, rows: list[list[int]], new_tokens: int, repeats: int, device: str) -> dict:
    """Best prefill time (1 new token) and full-run time over `repeats`, the peak memory and the first row's tokens."""
    best = {"prefill_s": float("inf"), "full_s": float("inf"), "peak": 0}
    with torch.inference_mode():
        generate(model, rows, max_new_tokens=2, stop_ids=())  # warm-up, untimed
        for _ in range(repeats):
            seconds, _, peak = _timed(lambda: generate(model, rows, max_new_tokens=1, stop_ids=()), device)
            best["prefill_s"] = min(best["prefill_s"], seconds)
            seconds, out, peak_full = _timed(lambda: generate(model, rows, max_new_tokens=new_tokens, stop_ids=()), device)
            best["full_s"], best["peak"] = min(best["full_s"], seconds), max(best["peak"], peak, peak_full)
            best["tokens"] = out[0]
    return best


def run_formats(args, formats: list[str], checkpoint: Path, prompt: list[int],
                bandwidth: float) -> dict[str, tuple[float, list[int]]]:
    """Prefill / decode tokens/s per format and batch size, peak memory, and each format's bandwidth floor.
    Returns {format: (decode tok/s, greedy tokens)} at the first batch size, for the comparison with llama.cpp."""
    batches = _csv(args.batch, "batch", int)
    if not batches or min(batches) < 1:
        raise ValueError(f"--batch takes a comma list of positive sizes, got {args.batch!r}")
    header = (f"{'format':7} {'batch':>5} {'prefill tok/s':>13} {'decode tok/s':>12} {'per row':>8} {'peak memory':>11} "
              f"{'floor (steps/s)':>15} {'of floor':>8}")
    print(header)
    print("-" * len(header))
    decode, profiles, first_batch = {}, {}, {}
    for fmt in formats:
        model, _ = load(checkpoint, fmt, device=args.device, log=lambda msg: None)
        context = len(prompt) + args.new_tokens // 2  # the mean over the decode steps
        for b in batches:
            floor = bandwidth / bytes_per_token(model, context, rows=b)
            best = _batch_speed(model, [prompt] * b, args.new_tokens, args.repeats, args.device)
            step_s = max(best["full_s"] - best["prefill_s"], 1e-9) / (args.new_tokens - 1)
            decode[fmt, b] = b / step_s
            if b == batches[0]:
                first_batch[fmt] = (b / step_s, best["tokens"])
            print(f"{fmt:7} {b:5} {b * len(prompt) / best['prefill_s']:13.1f} {b / step_s:12.2f} {1 / step_s:8.2f} "
                  f"{best['peak'] / 2**30:9.2f} GB {floor:15.2f} {1 / step_s / floor:8.0%}")
        if getattr(args, "profile", False):
            profiles[fmt] = decode_profile(model, [prompt] * batches[0])
        del model
    for b in batches:
        if ("bf16", b) in decode:
            ratios = ", ".join(f"{fmt} {decode[fmt, b] / decode['bf16', b]:.2f}x" for fmt in formats if fmt != "bf16")
            print(f"batch {b}: decode speed vs bf16: {ratios}")
    for fmt, table in profiles.items():
        total = sum(ms for _, ms, _ in table)
        print(f"\n{fmt}, batch {batches[0]}: one decode step, {total:.1f} ms of operator time (torch.profiler, self time)")
        for op, ms, calls in table:
            print(f"  {op[:48]:48} {ms:7.2f} ms {ms / total:6.1%} {calls:5d} calls")
    return first_batch


# ---------------------------------------------------------------------------- the command
def run(args):

    if args.prompt_tokens < 1 or args.new_tokens < 2 or args.repeats < 1:
        raise ValueError("--prompt-tokens >= 1, --new-tokens >= 2 and --repeats >= 1 are needed")
    checkpoint = checkpoint_path(args.checkpoint)
    allowed = TIMED_CHOICES if args.compare == "formats" else ENGINE_CHOICES
    formats = _csv(args.formats or ",".join(ENGINE_CHOICES), "formats")
    if not formats or set(formats) - set(allowed):
        raise ValueError(f"--formats takes a comma list of {', '.join(allowed)} with --compare {args.compare}, "
                         f"got {args.formats!r}")
    tokenizer = Tokenizer.from_pretrained(official_tokenizer_dir())
    text = PROMPT_TEXT * (args.prompt_tokens // 20 + 1)
    prompt = tokenizer.encode(text)[:args.prompt_tokens]
    print(f"qwen-min bench generate: {checkpoint.name}, prompt {len(prompt)} tokens, {args.new_tokens} new tokens (greedy), "
          f"{args.device}, {torch.get_num_threads()} threads")
    if args.compare == "formats":
        bandwidth = memory_bandwidth(args.device)
        print(f"memory bandwidth (best read of 256 MB): {bandwidth / 1e9:.1f} GB/s; {FLOOR_HEADER}")
        ours = run_formats(args, formats, checkpoint, prompt, bandwidth)
        _llama_cpp_line(checkpoint, prompt, args.new_tokens, ours if _csv(args.batch, "batch", int)[0] == 1 else {})
        return 0
    model = from_pretrained(checkpoint, dtype=torch.float32, device=args.device)
    bandwidth = memory_bandwidth(args.device)
    print(f"memory bandwidth (best read of 256 MB): {bandwidth / 1e9:.1f} GB/s; {FLOOR_HEADER}")
    header = f"{'format':9} {'engine':13} {'prefill tok/s':>13} {'decode tok/s':>12} {'peak memory':>11}"
    print(header)
    print("-" * len(header))
    compared = {}
    for dtype_name in formats:
        model = to_format(model, dtype_name)  # in place: the fp32 tensors are released
        hf = transformers_twin(model)
        results = run_engines(model, hf, prompt, args.new_tokens, args.repeats, args.device)
        del hf
        for name, r in results.items():
            print(f"{dtype_name:9} {name:13} {r['prefill_tok_s']:13.1f} {r['decode_tok_s']:12.2f} {r['peak'] / 2**30:9.2f} GB")
        ours, theirs = results["qwen_min"], results["transformers"]
        step_bytes = bytes_per_token(model, context=len(prompt) + args.new_tokens // 2)
        floor = bandwidth / step_bytes
        print(f"{'':9} {'ratio':13} {ours['prefill_tok_s'] / theirs['prefill_tok_s']:12.2f}x "
              f"{ours['decode_tok_s'] / theirs['decode_tok_s']:11.2f}x   qwen_min / transformers; "
              f"same tokens: {'yes' if ours['tokens'] == theirs['tokens'] else 'NO'}")
        print(f"{'':9} {'floor':13} {'':13} {floor:12.2f}   bandwidth / {step_bytes / 1e9:.2f} GB per token; "
              f"qwen_min decodes at {ours['decode_tok_s'] / floor:.0%} of it")
        compared[dtype_name] = (ours["decode_tok_s"], ours["tokens"])
    _llama_cpp_line(checkpoint, prompt, args.new_tokens, compared)


def _llama_cpp_line(checkpoint: Path, prompt: list[int], new_tokens: int, ours: dict[str, tuple[float, list[int]]]) -> None:
    """llama.cpp's batch-1 speed on the same file, and qwen_min's `ours` ({format: (decode tok/s, tokens)}) against it."""
    if checkpoint.suffix != ".gguf":
        return
    theirs, reason = llama_cpp_decode(checkpoint, prompt, new_tokens)
    if theirs is None:
        print(f"llama.cpp: skipped, {reason}")
        return
    print(f"llama.cpp on the GGUF file (its own quantised kernels), batch 1: prefill {theirs['prefill_tok_s']:.1f} tok/s, "
          f"decode {theirs['decode_tok_s']:.2f} tok/s")
    for fmt, (speed, tokens) in ours.items():
        same = next((i for i, (a, b) in enumerate(zip(tokens, theirs["tokens"])) if a != b), min(len(tokens), new_tokens))
        print(f"  qwen_min {fmt}: {speed / theirs['decode_tok_s']:.2f}x llama.cpp's decode speed; "
              f"greedy tokens identical for the first {same} of {new_tokens}")
