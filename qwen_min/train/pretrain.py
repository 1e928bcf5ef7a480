"""Pretraining: a Qwen trained from scratch on the corpora in data/corpora (chapter 8; the command: pretrain_command.py).

    qwen-min pretrain --out runs/tiny                         # the default CPU recipe: ~10 minutes on 2 cores
    qwen-min pretrain --out runs/tiny --resume                # continue from runs/tiny/checkpoint.pt
    torchrun --nproc_per_node=2 -m qwen_min pretrain --out runs/ddp           # data parallel, same losses
    torchrun --nproc_per_node=8 -m qwen_min pretrain --recipe gpu-0.5B --data my_corpora --out runs/05b

A run folder holds metrics.jsonl (one JSON object per step), loss.png, checkpoint.pt, run.json (the
settings), tokenizer/ and data/ (token shards), and at the end model/ (config.json, model.safetensors,
tokenizer files: `qm.from_pretrained("runs/tiny/model")` loads it) and samples.txt.

Design choices
- A recipe (`--config`) names a model size and every knob of the loop; any flag overrides one knob.
  `--resume` reads the settings back from run.json, so it needs no other flag (flags still override,
  e.g. a larger --max-steps to train on).
- The CPU recipe trains its own byte-level BPE (chapter 1) of 4,096 tokens on the training documents
  instead of using Qwen's 151,665: with the official vocabulary the embedding and LM head would be 95%
  of a tiny model and most of its compute. The GPU 0.5B recipe uses the official tokenizer and shape.
- Everything that is not the loop lives here: sources, tokenizer, shards, samples. The loop itself
  (trainer.py) is shared with SFT and DPO.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen_min import paths
from qwen_min.checkpoints.hf import save_pretrained
from qwen_min.config import CONFIGS, QwenConfig
from qwen_min.generation import generate
from qwen_min.model.qwen import Qwen
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import EOT, MixtureBatches, build_shards, eval_batches, read_documents, split_documents
from qwen_min.train.flops import flops_per_token, measure_matmul_peak
from qwen_min.train.settings import LoopSettings, loop_default, require_positive, save_settings, setting, train_config
from qwen_min.train.trainer import Trainer, check_run_folder, setup_distributed

MIX = "shakespeare=0.5,chinese-poetry=0.2,python-stdlib=0.3"


@dataclass
class PretrainSettings(LoopSettings):
    """Settings of `qwen-min pretrain`; the defaults are the cpu-tiny recipe's (RECIPES: the others)."""

    recipe: str = setting("cpu-tiny", "the recipe the settings started from: model size and every loop setting "
                                      "(cpu-tiny: ~10 min on 2 CPU cores)", choices=("cpu-tiny", "gpu-medium", "gpu-0.5B"))
    size: str = setting("tiny", "model size (config.py name)", choices=tuple(CONFIGS))
    tokenizer: str = setting("bpe", "'bpe' (train one on the training documents), 'official', or a tokenizer folder")
    vocab_size: int | None = setting(4096, "tokens of the trained BPE tokenizer")
    seq_len: int = setting(128, "tokens per window")
    eval_windows: int = setting(128, "validation windows per source (fixed, evenly spread)")
    val_fraction: float = setting(0.05, "documents held out per source")
    data: str | None = setting(None, "folder of sources, one sub-folder each (default: data/corpora)")
    mix: str = setting(MIX, "mixture weights, e.g. shakespeare=0.5,python-stdlib=0.5 (sources left out are unused)")
    max_steps: int | None = loop_default("max_steps", 2000)
    lr: float | None = loop_default("lr", 3e-3)
    min_lr: float | None = loop_default("min_lr", 3e-4)
    warmup_steps: int | None = loop_default("warmup_steps", 100)
    batch_size: int = loop_default("batch_size", 16)
    eval_every: int = loop_default("eval_every", 200)
    save_every: int = loop_default("save_every", 200)


# recipe -> what it changes from PretrainSettings' defaults (cpu-tiny's)
RECIPES: dict[str, dict] = {
    "cpu-tiny": {},
    "gpu-medium": dict(size="medium", vocab_size=16384, seq_len=1024, batch_size=32, lr=1e-3, min_lr=1e-4,
                       warmup_steps=200, max_steps=5000, eval_every=250, eval_windows=640, save_every=500),
    "gpu-0.5B": dict(size="0.5B", tokenizer="official", vocab_size=None, seq_len=2048, batch_size=8, grad_accum=8,
                     lr=3e-4, min_lr=3e-5, warmup_steps=500, max_steps=20000, eval_every=500, eval_windows=640,
                     save_every=1000),
}
DEFAULT_RECIPE = "cpu-tiny"


def recipe_settings(name: str = DEFAULT_RECIPE) -> PretrainSettings:
    """Every setting of a named recipe (the defaults a command line starts from)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return dataclasses.replace(PretrainSettings(), recipe=name, **RECIPES[name])
BPE_CHARS_PER_SOURCE = 400_000
SAMPLE_PROMPTS = ["KING.\n", "春风", "def __init__(self"]


def parse_mix(text: str) -> dict[str, float]:
    """'a=0.5,b=0.5' -> {'a': 0.5, 'b': 0.5}."""
    weights = {}
    for part in filter(None, text.split(",")):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--mix: {part!r} is not name=weight") from None
        if not sep or weights[name.strip()] < 0:
            raise ValueError(f"--mix: {part!r} is not name=weight with a weight >= 0")
    return weights


def load_tokenizer(settings: PretrainSettings, out: Path, train_texts: list[str], log=print):
    """The run's tokenizer: out/tokenizer if a previous session made it, else official, a folder, or trained BPE."""

    saved = out / "tokenizer"
    if (saved / "tokenizer.json").exists():
        return Tokenizer.from_pretrained(saved)
    choice = settings.tokenizer
    if choice == "bpe":
        log(f"training a {settings.vocab_size}-token BPE tokenizer on the training documents ...")
        tok = train_bpe(train_texts, settings.vocab_size, special_tokens=(EOT, "<|im_start|>", "<|im_end|>"))
    else:
        tok = Tokenizer.from_pretrained(official_tokenizer_dir() if choice == "official" else choice)
    tok.save_pretrained(saved)
    return tok


def bpe_sample(train_docs: list[list[str]], chars_per_source: int = BPE_CHARS_PER_SOURCE) -> list[str]:
    """The first `chars_per_source` characters of each source's training documents: enough to learn the merges
    (a few seconds), and each source gets an equal say in the vocabulary whatever its size."""
    sample = []
    for docs in train_docs:
        budget = chars_per_source
        for doc in docs:
            if budget <= 0:
                break
            sample.append(doc[:budget])
            budget -= len(doc)
    return sample


def lm_loss(model, batch):
    """Next-token cross-entropy of a packed batch: every position predicts the next (shift inside the model).

    An MoE model's loss also holds router_aux_loss_coef x its load-balancing loss; that loss is logged as `aux_loss`.
    """
    _, loss = model(batch["input_ids"], labels=batch["input_ids"])
    aux = getattr(model, "module", model).last_aux_loss  # `module`: the model inside a DistributedDataParallel wrapper
    return loss, {} if aux is None else {"aux_loss": aux}


def write_samples(model, tok, out: Path, max_new_tokens: int = 60) -> str:
    """Sampled continuations (temperature 0.8, seed 0) of one prompt per corpus, written to out/samples.txt."""

    model.eval()
    texts = []
    for prompt in SAMPLE_PROMPTS:
        ids = generate(model, tok.encode(prompt), max_new_tokens=max_new_tokens, temperature=0.8, top_k=50,
                       stop_ids=(tok.added_tokens[EOT],), seed=0)
        texts.append(f"--- {prompt!r}\n{prompt}{tok.decode(ids)}\n")
    (out / "samples.txt").write_text("\n".join(texts))
    return "\n".join(texts)


def run_pretrain(settings: PretrainSettings, out: str | Path, *, resume: bool = False, stop_at: int | None = None,
                 progress: bool = True, device: str | None = None, shard: str | None = None,
                 activation_checkpointing: bool = False) -> Trainer:
    """Pretrain as `settings` say, writing the run folder `out`; returns the Trainer."""
    out = Path(out)
    check_run_folder(out, resume)
    require_positive(settings, "max_steps", "seq_len", "batch_size", "grad_accum")
    QwenConfig.from_name(settings.size)  # an unknown size is refused now, not after the tokenising
    if settings.eval_windows < settings.batch_size:
        raise ValueError(f"--eval-windows {settings.eval_windows} is fewer than one batch of --batch-size "
                         f"{settings.batch_size}: raise it or lower the batch size")
    weights = parse_mix(settings.mix)
    data_dir = Path(settings.data) if settings.data else paths.data_dir("corpora")
    sources = {name: read_documents(data_dir / name) for name in weights}
    if not resume and settings.tokenizer not in ("bpe", "official") and not Path(settings.tokenizer).exists():
        raise FileNotFoundError(f"--tokenizer {settings.tokenizer}: no such folder or file ('bpe' trains one, "
                                "'official' is Qwen's)")
    world = setup_distributed(device)
    log = print if world.is_main else (lambda *a, **k: None)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder behind

    split = lambda docs: split_documents(docs, settings.val_fraction, settings.seed)  # noqa: E731
    if world.is_main:  # rank 0 makes the tokenizer and the shards, the others wait, then find them made
        tok = load_tokenizer(settings, out, bpe_sample([split(docs)[0] for docs in sources.values()]), log)
        shards = build_shards(sources, tok, out / "data", settings.val_fraction, settings.seed, log)
        save_settings(out, settings)
    if world.world_size > 1:
        torch.distributed.barrier()
    if not world.is_main:
        tok = load_tokenizer(settings, out, [], log)
        shards = build_shards(sources, tok, out / "data", settings.val_fraction, settings.seed, log)

    # the official tokenizer keeps Qwen's 151,936 rows (151,665 ids padded); a trained one gets one row per id,
    # so sampling can never pick a row without a token
    vocab = {} if settings.tokenizer == "official" else {"vocab_size": tok.vocab_size}
    cfg = QwenConfig.from_name(settings.size, **vocab)
    torch.manual_seed(settings.seed)

    model = Qwen(cfg)
    train = MixtureBatches({n: s["train"] for n, s in shards.items()}, weights, settings.seq_len,
                           settings.batch_size, settings.grad_accum, world.rank, world.world_size, settings.seed)
    evals = {n: eval_batches(s["val"], settings.seq_len, settings.batch_size, settings.eval_windows)
             for n, s in shards.items() if weights[n] > 0}
    peak = measure_matmul_peak(world.device)
    config = train_config(settings, out, resume=resume, stop_at=stop_at, progress=progress,
                          flops_per_token=flops_per_token(cfg, settings.seq_len), peak_flops=peak)
    global_batch = settings.batch_size * settings.grad_accum * world.world_size
    log(f"model {settings.size}: {model.num_parameters():,} parameters, vocab {cfg.vocab_size}; "
        f"{world.world_size} process(es) on {world.device}; global batch {global_batch} x {settings.seq_len} tokens; "
        f"matmul peak {peak / 1e9:,.0f} GFLOP/s per device")
    trainer = Trainer(model, lm_loss, train, config, evals, world, shard=shard,
                      activation_checkpointing=activation_checkpointing)
    records = trainer.fit()
    if world.is_main and records:
        last = records[-1]
        log(f"step {last['step']}: loss {last['loss']:.3f}, validation loss {last['val_loss']:.3f} "
            f"(perplexity {last['val_ppl']:.1f}), {last['tokens_per_s']:,.0f} tokens/s")
        if trainer.step == settings.max_steps:
            save_pretrained(model, out / "model")
            tok.save_pretrained(out / "model")
            log(write_samples(model, tok, out))
        log(f"wrote {out}/metrics.jsonl, loss.png, checkpoint.pt" +
            (", model/, samples.txt" if trainer.step == settings.max_steps else ""))
    if world.world_size > 1:  # all ranks leave together: a rank that tears gloo down while rank 0 still writes
        torch.distributed.barrier()  # model/ and samples aborted rank 0 once ("terminate called without an active
        torch.distributed.destroy_process_group()  # exception", SIGABRT) in CI
    return trainer
