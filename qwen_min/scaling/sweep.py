"""A learning rate x batch size sweep over tiny Qwen sizes, one run folder per grid point, for hyper-parameter laws.

    points()                       # the grid: [Point(index=0, size="s1", lr=0.0025, batch=2), ...]
    run_point(points()[7], "runs/sweep")   # runs/sweep/points/s1-lr0.005-b16/result.json (1-25 s on 2 cores)
    run_sweep("runs/sweep")        # every point not done yet; an interrupted point resumes from its checkpoint
    merge(["runs/alice", "runs/bob"], "runs/class")   # the result.json of each point folder, collected into one

The Qwen2.5 report (arXiv 2412.15115 §3.2) fits the optimal learning rate and batch size as functions of model
and data size on dense models of 44M-14B parameters and does not publish the form; DeepSeek LLM (arXiv 2401.02954
§3.1) publishes eta_opt = 0.3118 C^-0.1250 and B_opt = 0.2920 C^0.3271 (C in FLOPs, B in tokens). This sweep is the
same procedure on models of 12K-740K non-embedding parameters, small enough for a class of laptops.

Design choices
- Five sizes, s1-s5 (SIZES): the Qwen2.5 architecture with 1-4 layers and widths 32-128, 63x apart in
  non-embedding parameters. s1-s4 (27x apart) are fitted, s5 is held out: the fit predicts its optimum, and
  its own grid says whether the prediction was good (fit.py).
- Every point trains on the same TOKENS tokens (2^18 = 262,144), so a larger batch means fewer steps, and
  compute C = FLOPs per token x TOKENS grows with the model only. That is one slice of the (N, D) plane: the
  fit in C is the fit in N rescaled. DeepSeek's laws come from many budgets; say so when comparing.
- Grid: 5 learning rates (2.5e-3 ... 4e-2, factors of 2) x 4 batch sizes (2, 4, 8, 16 windows of 64 tokens:
  128-1,024 tokens). A first sweep with 8-32 windows found every size's best batch on the grid's smallest: at a
  fixed token budget more, smaller steps win until the batch falls below the critical batch size, so the grid
  was moved down. It spans DeepSeek's predicted learning rate at these budgets (~1e-2); DeepSeek's batch law
  predicts ~1,000-2,000 tokens, above most of the grid.
- Training is the package's loop (train/trainer.py: AdamW, warmup then cosine to lr / 10, gradient clipping)
  with pretraining's pieces (train/data.py shards and mixture batches, pretrain.lm_loss), on the CPU recipe's
  mix of the three shipped corpora; the warmup is 10% of the steps, so every point has the same schedule shape.
- One tokenizer and one set of token shards per sweep folder (BPE of 1,024 tokens trained on the training
  documents, deterministic): built once, reused by every point, and identical on every student's machine,
  so points from different machines can be merged (a shard's fingerprint checks it).
- The score of a point is the validation loss on fixed windows of the held-out documents of each source
  (64 windows per source), the same windows for every point.
- Seeded (the point's seed is SEED): a point re-run on the same machine gives the same loss (to float
  rounding; the chapter measures the tolerance). A point folder with result.json is done and is skipped;
  one with only checkpoint.pt resumes from it.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen_min import paths
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen
from qwen_min.progress import progress_bar
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import EOT, MixtureBatches, build_shards, eval_batches, read_documents, split_documents
from qwen_min.train.flops import flops_per_token
from qwen_min.train.pretrain import bpe_sample, lm_loss, parse_mix
from qwen_min.train.trainer import CHECKPOINT, TrainConfig, Trainer

# name -> (layers, hidden size, attention heads); kv heads = heads / 2, MLP width = 11/4 x hidden (tiny's ratio)
SIZES = {"s1": (1, 32, 2), "s2": (2, 48, 4), "s3": (2, 64, 4), "s4": (3, 96, 4), "s5": (4, 128, 4)}
FIT_SIZES = ("s1", "s2", "s3", "s4")
HELD_OUT = "s5"
LRS = (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2)
BATCHES = (2, 4, 8, 16)  # windows of SEQ_LEN tokens per optimizer step
SEQ_LEN = 64
TOKENS = 2**18  # training tokens of every point
VOCAB = 1024
MIX = "shakespeare=0.5,chinese-poetry=0.2,python-stdlib=0.3"  # the CPU recipe's (pretrain.RECIPES["cpu-tiny"])
EVAL_WINDOWS = 64  # per source
EVAL_BATCH = 16
SEED = 0
RESULT = "result.json"


@dataclass(frozen=True)
class Point:
    index: int
    size: str
    lr: float
    batch: int  # windows per step

    @property
    def name(self) -> str:
        return f"{self.size}-lr{self.lr:g}-b{self.batch}"


def points() -> list[Point]:
    """The grid, sizes outermost: index K is what `qwen-min sweep --point K` runs."""
    grid = [(s, lr, b) for s in SIZES for lr in LRS for b in BATCHES]
    return [Point(i, s, lr, b) for i, (s, lr, b) in enumerate(grid)]


def point(index: int) -> Point:
    grid = points()
    if not 0 <= index < len(grid):
        raise ValueError(f"--point {index}: the grid has points 0-{len(grid) - 1} (qwen-min sweep --list shows them)")
    return grid[index]


def model_config(size: str, vocab_size: int = VOCAB) -> QwenConfig:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    layers, hidden, heads = SIZES[size]
    return QwenConfig.from_name("tiny", num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                                num_key_value_heads=heads // 2, intermediate_size=11 * hidden // 4,
                                vocab_size=vocab_size, max_position_embeddings=SEQ_LEN)


def machine() -> str:
    """The CPU's model name (lscpu's), for the results' provenance."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------- data
def sweep_data(folder: str | Path, mix: str = MIX, log=print):
    """(tokenizer, shards) of a sweep folder: folder/tokenizer and folder/data, made on first use."""
    folder = Path(folder)
    weights = parse_mix(mix)
    sources = {name: read_documents(paths.data_dir("corpora", name)) for name in weights}
    saved = folder / "tokenizer"
    if (saved / "tokenizer.json").exists():
        tok = Tokenizer.from_pretrained(saved)
    else:
        train = [split_documents(docs, 0.05, 0)[0] for docs in sources.values()]
        tok = train_bpe(bpe_sample(train), VOCAB, special_tokens=(EOT,))
        tok.save_pretrained(saved)
    return tok, build_shards(sources, tok, folder / "data", 0.05, 0, log=log), weights


# ---------------------------------------------------------------------------- one run
def train_tiny(out: str | Path, cfg: QwenConfig, train_shards: dict, weights: dict[str, float], eval_sets: dict,
               *, lr: float, batch: int, tokens: int, seed: int = SEED, seq_len: int = SEQ_LEN,
               progress: bool = False) -> dict:
    """Train a fresh Qwen(cfg) for `tokens` tokens in batches of `batch` windows with the package's Trainer,
    writing `out` (metrics.jsonl, checkpoint.pt, then result.json); resumes from out/checkpoint.pt when there.
    Returns the result: final validation losses, sizes, FLOPs, time."""
    out = Path(out)
    if (out / RESULT).exists():
        return json.loads((out / RESULT).read_text())
    steps = max(1, tokens // (batch * seq_len))
    torch.manual_seed(seed)
    model = Qwen(cfg)
    batches = MixtureBatches(train_shards, weights, seq_len, batch, 1, seed=seed)
    config = TrainConfig(out=out, max_steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=max(1, steps // 10),
                         eval_every=0, save_every=max(1, steps // 4), resume=(out / CHECKPOINT).exists(), seed=seed,
                         progress=progress, flops_per_token=flops_per_token(cfg, seq_len))
    start = time.perf_counter()
    trainer = Trainer(model, lm_loss, batches, config, eval_sets)
    records = trainer.fit()
    final = records[-1] if records else {}
    result = {k: v for k, v in final.items() if k.startswith("val_loss")}
    result |= {"train_loss": final.get("loss"), "steps": steps, "tokens": steps * batch * seq_len, "seq_len": seq_len,
               "lr": lr, "batch": batch, "batch_tokens": batch * seq_len, "seed": seed,
               "params": cfg.num_parameters(), "non_embedding_params": cfg.num_parameters(non_embedding=True),
               "flops": flops_per_token(cfg, seq_len) * steps * batch * seq_len,
               "seconds": round(time.perf_counter() - start, 2), "machine": machine(), "torch": torch.__version__}
    (out / RESULT).write_text(json.dumps(result, indent=1) + "\n")
    (out / CHECKPOINT).unlink(missing_ok=True)  # done: the weights are not needed for the fit (~3 MB a point)
    return result


def run_point(p: Point, folder: str | Path, *, lr: float | None = None, batch: int | None = None, name: str | None = None,
              seed: int = SEED, progress: bool = False, log=print) -> dict:
    """Train grid point `p` (or size p.size at another lr / batch, for a verification run) into
    folder/points/<name>/; returns its result (with the point's size and index)."""
    folder = Path(folder)
    _, shards, weights = sweep_data(folder, log=log)
    cfg = model_config(p.size)
    evals = {n: eval_batches(s["val"], SEQ_LEN, EVAL_BATCH, EVAL_WINDOWS) for n, s in shards.items()}
    lr, batch = lr or p.lr, batch or p.batch
    out = folder / "points" / (name or p.name)
    result = train_tiny(out, cfg, {n: s["train"] for n, s in shards.items()}, weights, evals, lr=lr, batch=batch,
                        tokens=TOKENS, seed=seed, progress=progress)
    if "size" not in result:
        result |= {"size": p.size, "index": p.index if name is None else None, "name": out.name}
        (out / RESULT).write_text(json.dumps(result, indent=1) + "\n")
    return result


def run_sweep(folder: str | Path, sizes: tuple[str, ...] = tuple(SIZES), progress: bool = True, log=print) -> list[dict]:
    """Every grid point of `sizes` not done yet, in grid order; returns all their results."""
    todo = [p for p in points() if p.size in sizes]
    results = []
    for p in progress_bar(todo, desc="sweep", unit="point", enabled=progress):
        results.append(run_point(p, folder, log=lambda *a, **k: None))
    return results


# ---------------------------------------------------------------------------- results
def read_results(folder: str | Path) -> list[dict]:
    """The result.json of every finished point folder under folder/points (and of folder itself if it is one)."""
    folder = Path(folder)
    files = sorted((folder / "points").glob(f"*/{RESULT}")) if (folder / "points").is_dir() else []
    if (folder / RESULT).exists():
        files.append(folder / RESULT)
    return [json.loads(f.read_text()) for f in files]


def merge(sources: list[str | Path], out: str | Path, log=print) -> list[dict]:
    """Copy every finished point (result.json and metrics.jsonl) of the `sources` sweep folders into out/points;
    a point found twice keeps the first copy. Returns the merged results."""
    out = Path(out)
    found = 0
    for src in map(Path, sources):
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: no such sweep folder")
        for res in sorted((src / "points").glob(f"*/{RESULT}")) if (src / "points").is_dir() else []:
            found += 1
            dest = out / "points" / res.parent.name
            if dest.resolve() == res.parent.resolve() or (dest / RESULT).exists():
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for name in (RESULT, "metrics.jsonl"):
                if (res.parent / name).exists():
                    shutil.copyfile(res.parent / name, dest / name)
    if not found:
        raise ValueError(f"no finished points (points/*/{RESULT}) in {', '.join(map(str, sources))}")
    results = read_results(out)
    log(f"merged {found} point folder(s) into {out}/points: {len(results)} distinct points")
    return results
