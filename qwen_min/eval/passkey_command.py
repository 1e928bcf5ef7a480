"""`qwen-min eval passkey --checkpoint 0.5B|1.5B|PATH --lengths 1024,2048 --depths 0,0.5,1 --trials N --out DIR
[--rope-scaling yarn:4] [--dca CHUNK,LOCAL] [--template auto|plain|chat] [--format bf16] [--resume]`.

Passkey retrieval (eval/passkey.py) over a grid of lengths x depths, with a training-free position-extension
method or none; writes DIR/results.jsonl (one line per prompt) and DIR/summary.json (settings, accuracy per
length x depth, seconds per prompt and KV-cache bytes per length).

Design choices
- `--rope-scaling TYPE:FACTOR` (linear, ntk or yarn) stretches the checkpoint's RoPE by FACTOR and allows
  FACTOR x its trained length (YaRN as Qwen documents it: original_max_position_embeddings = the checkpoint's
  max_position_embeddings, 32,768 for both official ones). `--dca CHUNK,LOCAL` switches to Dual Chunk Attention
  with chunk_size CHUNK and local_size LOCAL, and original_max_position_embeddings = the trained length (vLLM's
  length scale past it, as in Qwen2.5-1M's config.json); DCA has no fixed reach, so it allows the longest
  length asked for. Both together: YaRN frequencies on DCA's chunk positions. Without either, a length past the
  trained one is refused (one line) before any prompt runs.
- `--template auto` (default) renders the chat template for a checkpoint whose file or folder name says
  "instruct" (both official checkpoints) and the plain completion of the original test otherwise.
- Bad input is refused before the model is loaded: --lengths, --depths, --trials, --rope-scaling, --dca, a
  length too short for the prompt's fixed parts, and an --out that holds another run without --resume (or
  nothing to resume with --resume, or a run with other settings).
- Defaults: bf16 (decoding and prefill are faster than fp32 on the CPUs this was built on; see
  `qwen-min eval humaneval`), seed 0, 1 trial.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from qwen_min.checkpoints.load import checkpoint_path, load
from qwen_min.command import add_model_arguments, add_renamed, log
from qwen_min.config import ROPE_TYPES, dual_chunk_problems
from qwen_min.eval.passkey import MAX_KEY, MAX_NEW_TOKENS, TEMPLATES, passkey_prompt, run_passkey, summarize
from qwen_min.formats import FORMATS
from qwen_min.tokenizer.bpe import Tokenizer

SCALINGS = [t for t in ROPE_TYPES if t != "default"]


def add_arguments(p):
    add_model_arguments(p, format="bf16")
    add_renamed(p, "--dtype", "--format", choices=FORMATS)
    p.add_argument("--lengths", default="1024,2048", help="comma list of prompt lengths in tokens (default 1024,2048)")
    p.add_argument("--depths", default="0,0.25,0.5,0.75,1",
                   help="comma list of needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--trials", type=int, default=1, help="prompts (keys) per length x depth (default 1)")
    p.add_argument("--rope-scaling", metavar="TYPE:FACTOR",
                   help=f"training-free RoPE extension, TYPE one of {', '.join(SCALINGS)}, e.g. yarn:4")
    p.add_argument("--dca", metavar="CHUNK,LOCAL", help="Dual Chunk Attention with chunk_size CHUNK, local_size LOCAL")
    p.add_argument("--template", choices=["auto", *TEMPLATES], default="auto",
                   help="auto (default): chat for an instruct checkpoint, plain completion otherwise")
    p.add_argument("--seed", type=int, default=0, help="seed of the keys (default 0)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.jsonl and summary.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: finished prompts are kept")


def _numbers(text: str, flag: str, kind, check, what: str) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(check(v) for v in values):
        raise ValueError(f"{flag} must be a comma list of {what}, got {text!r}")
    return list(dict.fromkeys(values))  # in the order given, each once


def parse_rope_scaling(text: str | None) -> tuple[str, float] | None:
    """"yarn:4" -> ("yarn", 4.0).

    >>> parse_rope_scaling("yarn:4")
    ('yarn', 4.0)
    """
    if text is None:
        return None
    kind, _, factor = text.partition(":")
    try:
        value = float(factor)
    except ValueError:
        value = 0.0
    if kind not in SCALINGS or value < 1:
        raise ValueError(f"--rope-scaling must be TYPE:FACTOR with TYPE one of {', '.join(SCALINGS)} and FACTOR >= 1, "
                         f"got {text!r}")
    return kind, value


def parse_dca(text: str | None) -> dict | None:
    """"1024,128" -> {"chunk_size": 1024, "local_size": 128}, checked as the config checks it."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--dca must be CHUNK,LOCAL (two positive integers), got {text!r}")
    dca = {"chunk_size": int(parts[0]), "local_size": int(parts[1])}
    if problems := dual_chunk_problems(dca):
        raise ValueError("--dca: " + "; ".join(problems))
    return dca


def choose_template(template: str, checkpoint_path: Path) -> str:
    if template != "auto":
        return template
    return "chat" if "instruct" in checkpoint_path.name.lower() else "plain"


def check_out(out: Path, resume: bool, settings: dict) -> None:
    """Refuse an --out that holds another run (without --resume), or nothing / other settings to resume."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    summary, results = out / "summary.json", out / "results.jsonl"
    if not resume:
        if results.exists() and results.stat().st_size or summary.exists():
            raise ValueError(f"{out} already holds a passkey run; --resume continues it, or choose another --out")
        return
    if not summary.is_file():
        raise ValueError(f"nothing to resume in {out} (no summary.json); run without --resume")
    recorded = json.loads(summary.read_text()).get("settings", {})
    differ = [k for k in settings if recorded.get(k) != settings[k]]
    if differ:
        raise ValueError(f"{out} holds a run with other settings ({', '.join(differ)}); resume with the same ones "
                         "or use another --out")


def extend(model, scaling: tuple[str, float] | None, dca: dict | None, longest: int) -> None:
    """Switch the model to the requested method and allow the lengths it reaches (see the module docstring)."""
    cfg = model.config
    trained = cfg.max_position_embeddings
    rope_scaling, reach = None, trained
    if scaling is not None:
        kind, factor = scaling
        rope_scaling = {"rope_type": kind, "factor": factor}
        if kind == "yarn":
            rope_scaling["original_max_position_embeddings"] = trained
        reach = int(factor * trained)
    if dca is not None:
        dca = dca | {"original_max_position_embeddings": trained}
        reach = max(reach, longest)
    if longest > reach:
        hint = "" if scaling or dca else " without --rope-scaling or --dca"
        raise ValueError(f"--lengths up to {longest - MAX_NEW_TOKENS} (+ {MAX_NEW_TOKENS} new tokens) go past the "
                         f"{reach} positions this model reaches{hint} (trained length {trained})")
    if scaling is not None or dca is not None:
        model.set_context_extension(rope_scaling, dca, max_position_embeddings=reach)


def run(args) -> int:
    lengths = _numbers(args.lengths, "--lengths", int, lambda n: n > 0, "positive integers")
    depths = _numbers(args.depths, "--depths", float, lambda d: 0 <= d <= 1, "depths in [0, 1]")
    if args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    scaling, dca = parse_rope_scaling(args.rope_scaling), parse_dca(args.dca)
    path = checkpoint_path(args.checkpoint, log=log)
    template = choose_template(args.template, path)
    settings = {"checkpoint": str(args.checkpoint), "checkpoint_file": path.name, "format": args.format,
                "rope_scaling": args.rope_scaling, "dca": args.dca, "template": template, "seed": args.seed,
                "max_new_tokens": MAX_NEW_TOKENS}
    check_out(args.out, args.resume, settings)
    tok = Tokenizer.from_pretrained(path)
    for n in lengths:  # the longest key gives the longest needle: every prompt of this length fits
        passkey_prompt(tok, n, 0.0, MAX_KEY, template)
    model, _ = load(path, args.format, batch=1, log=log)
    extend(model, scaling, dca, max(lengths) + MAX_NEW_TOKENS)
    settings |= {"versions": {"torch": torch.__version__, "python": platform.python_version()},
                 "torch_threads": torch.get_num_threads()}
    log(f"passkey: {len(lengths)} lengths x {len(depths)} depths x {args.trials} trials, {template} template, "
        f"method: {', '.join(filter(None, [args.rope_scaling, args.dca and f'dca {args.dca}'])) or 'none'}")
    rows = run_passkey(model, tok, lengths, depths, args.trials, template=template, seed=args.seed, out=args.out,
                       settings=settings)
    summary = summarize([r for r in rows if r["length"] in lengths and r["depth"] in depths])
    for n in map(str, lengths):
        by_depth = "  ".join(f"{d}: {a:.2f}" for d, a in summary["accuracy"][n].items())
        print(f"{n:>7} tokens  accuracy {summary['accuracy_per_length'][n]:.2f}  ({by_depth})  "
              f"{summary['seconds_per_prompt'][n]:.1f} s/prompt  KV cache {summary['kv_cache_bytes'][n] / 2**20:.1f} MiB")
    print(f"-> {args.out}")
    return 0
