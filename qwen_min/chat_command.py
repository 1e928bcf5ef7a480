"""`qwen-min generate "prompt"` and `qwen-min chat`: the real checkpoint from the command line.

    qwen-min generate "def quicksort(xs):"                # greedy completion of raw text
    qwen-min generate --chat "Explain RoPE in one line"   # the prompt as a user turn of the chat template
    qwen-min chat                                         # interactive; /reset clears the history, Ctrl-D or Ctrl-C leaves
    qwen-min chat --system "Answer in French." --checkpoint path/to/Qwen2.5-0.5B-Instruct --format bf16

Design choices
- Both commands share one argument set and the one loader (`qm.load`); `run` looks at the command name.
  Without `--checkpoint` they use the default checkpoint (`qwen-min fetch`, fetched on
  first use); the tokenizer comes from the checkpoint itself unless `--tokenizer` says otherwise.
- Sampling: `generate` is greedy unless asked otherwise, so a command gives the same
  text twice; `chat` samples with Qwen's recommended settings (`chat_defaults()`:
  temperature 0.7, top-p 0.8, top-k 20, repetition penalty 1.1). Any sampling flag overrides
  the preset; `--temperature 0` is greedy. A reply ends at the end tokens of the checkpoint's own tokenizer
  (`Tokenizer.stop_ids`): a model trained with a tokenizer of its own (`qwen-min pretrain`) has other ids
  for `<|im_end|>` than Qwen's 151645.
- The chat history is a list of {"role", "content"} messages rendered by the chat template
  every turn (the whole conversation is re-encoded and prefilled: simple, and at this model
  size the prefill is a small part of a turn). A turn that would not fit the context is
  refused with the error and the advice to /reset; nothing is truncated silently.
- Ctrl-C while a reply is streaming stops that reply (the turn is dropped); at the prompt it
  leaves, like Ctrl-D (EOF, also the end of piped input). Both end the line, print "bye" and exit
  with status 0.
- A reply that stopped at --max-new-tokens, not at an end token, is marked "[cut at N tokens]", so a cut
  answer is never mistaken for a finished one.
- `generate` writes the text on stdout and, on stderr, how many tokens it wrote in how long (prefill
  included): stdout stays the text alone, for pipes.
"""

from __future__ import annotations

import sys
import time

import torch

from qwen_min.command import add_model_arguments, add_renamed, load_from_args
from qwen_min.formats import FORMATS
from qwen_min.generation import chat_defaults, generate

HELP = "commands: /reset clears the history, /exit (or Ctrl-D, Ctrl-C) leaves"


def add_arguments(p):
    p.add_argument("prompt", nargs="?", help="generate: the text to continue (required); chat: an optional first message")
    add_model_arguments(p)
    add_renamed(p, "--dtype", "--format", choices=FORMATS)
    add_renamed(p, "--quantize", "--format", choices=FORMATS)
    p.add_argument("--tokenizer", help="tokenizer folder or .gguf (default: the checkpoint's own)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--chat", action="store_true", help="generate: wrap the prompt as a user turn of the chat template")
    p.add_argument("--system", help="system message (default: the template's own, 'You are Qwen, created by Alibaba Cloud...')")
    p.add_argument("--max-new-tokens", type=int, default=512, help="per reply (default 512)")
    p.add_argument("--preset", choices=["greedy", "qwen-chat"],
                   help="sampling preset (default: greedy for generate, qwen-chat for chat); the flags below override it")
    p.add_argument("--temperature", type=float, help="0 = greedy")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--seed", type=int, default=None, help="seed sampling, for reproducible replies")


def sampling_options(args) -> dict:
    """keyword arguments of `generate` from the preset and the flags that override it."""

    preset = args.preset or ("qwen-chat" if args.command == "chat" else "greedy")
    options = chat_defaults() if preset == "qwen-chat" else {"temperature": 0.0}
    for name in ("temperature", "top_k", "top_p", "repetition_penalty"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options | {"seed": args.seed, "max_new_tokens": args.max_new_tokens}


def run(args):
    if args.command == "generate" and not args.prompt:
        raise ValueError("generate needs a prompt: qwen-min generate \"some text\"")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    options = sampling_options(args)
    model, tokenizer = load_from_args(args)
    options["stop_ids"] = tokenizer.stop_ids
    return (chat_loop if args.command == "chat" else generate_once)(model, tokenizer, args, options)


def _stream(text: str) -> None:
    print(text, end="", flush=True)


def _messages(args, *turns) -> list[dict]:
    system = [{"role": "system", "content": args.system}] if args.system is not None else []
    return system + list(turns)


def generate_once(model, tokenizer, args, options) -> int:
    if args.chat or args.system is not None:
        text = tokenizer.render_chat(_messages(args, {"role": "user", "content": args.prompt}), add_generation_prompt=True)
        ids = tokenizer.encode(text, allowed_special="all")
    else:
        ids = tokenizer.encode(args.prompt)
    start = time.perf_counter()
    reply = generate(model, ids, **options, tokenizer=tokenizer, on_text=_stream)
    seconds = time.perf_counter() - start
    print()
    tokens = f"{len(reply)} new token{'s' if len(reply) != 1 else ''}"
    stopped = "; stopped at --max-new-tokens" if _was_cut(reply, args) else ""
    print(f"{tokens} in {seconds:.2f} s, {len(reply) / max(seconds, 1e-9):.1f} tok/s (prefill included){stopped}",
          file=sys.stderr)
    return 0


def _was_cut(reply: list[int], args) -> bool:
    """Whether generation stopped at --max-new-tokens rather than at an end token (which `generate` leaves out)."""
    return len(reply) >= args.max_new_tokens


def chat_loop(model, tokenizer, args, options) -> int:
    history = _messages(args)
    print(HELP, file=sys.stderr)
    pending = args.prompt
    while True:
        try:
            line = pending if pending is not None else input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print("\nbye")
            return 0
        pending = None
        command = line.strip()
        if command in ("/exit", "/quit"):
            return 0
        if command == "/reset":
            history = _messages(args)
            print("(history cleared)")
            continue
        if not command:
            continue
        turn = history + [{"role": "user", "content": line}]
        ids = tokenizer.encode(tokenizer.render_chat(turn, add_generation_prompt=True), allowed_special="all")
        try:
            reply = generate(model, ids, **options, tokenizer=tokenizer, on_text=_stream)
        except KeyboardInterrupt:
            print("\n(reply interrupted, turn dropped)")
            continue
        except ValueError as e:  # the conversation no longer fits the context
            print(f"error: {e}; /reset starts a new conversation", file=sys.stderr)
            continue
        print(f" [cut at {args.max_new_tokens} tokens]" if _was_cut(reply, args) else "")
        history = turn + [{"role": "assistant", "content": tokenizer.decode(reply)}]
