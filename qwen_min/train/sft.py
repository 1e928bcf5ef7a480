"""Supervised fine-tuning in ChatML: loss on the assistant's tokens only (the command is sft_command.py).

    ids, labels = encode_chat(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    # ids: the official chat template's tokens; labels: -100 everywhere but 'Hello!<|im_end|>'
    batches = SFTBatches(tok, examples, batch_size=16, seed=0)       # a resumable batch source for the Trainer
    Trainer(model, sft_loss, batches, TrainConfig(out="runs/sft", max_steps=300, lr=1e-3)).fit()

What is trained (the labels), for
    <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n
- the assistant's content and the `<|im_end|>` that closes it: `Hello!<|im_end|>`. Learning to emit
  `<|im_end|>` is what makes the model stop (it is the instruct models' eos).
- not the `\\n` after `<|im_end|>`: generation stops at `<|im_end|>`, so the model never produces that
  newline; the template writes it as part of the next turn's prompt. (TRL's assistant-only loss with
  Qwen's templates makes the same cut.)
- not `<|im_start|>assistant\\n`: that is the generation prompt (`add_generation_prompt=True`), given.
- not the system turn, user turns, tool results (rendered as user turns), or padding.
A tool call is an assistant turn: `<tool_call>\\n{...}\\n</tool_call><|im_end|>` is trained.

Design choices
- The template is rendered once, for the whole conversation (`tok.render_chat`, identical to the
  official Jinja template), and tokenised once, so the ids are exactly what inference sees. The trained
  character spans come from rendering prefixes: assistant turn i starts where
  `render_chat(messages[:i], add_generation_prompt=True)` ends and ends where `render_chat(messages[:i+1])`
  ends, minus the final newline. Both are checked to be prefixes of the full render.
- Characters map to tokens through byte offsets (the byte length of each token), so this works for any
  byte-level tokenizer, the official one or a small trained one. A token is trained when its first
  byte lies in a trained span. (The Qwen pre-tokenizer can glue the newline of `assistant\\n` to a
  reply that itself starts with a newline; such a token starts in the prompt and is not trained.)
- Labels are aligned with the ids (`labels[i]` is the target of position i - 1, the model shifts
  inside, as in transformers), so `model(ids, labels=labels)` is the SFT loss: the mean over the
  trained tokens of the micro-batch.
- Batches are right-padded to the longest row, padding labelled -100. Causal attention never looks
  right, so right padding needs no attention mask and changes no logit of a real token (tested).
  No packing: packing several conversations in one row would let them attend to each other unless a
  block-diagonal mask were built; at these lengths padding wastes little.
- Conversations longer than `max_len` tokens are cut at `max_len` (the count is reported).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen_min.checkpoints.hf import from_pretrained, save_pretrained
from qwen_min.checkpoints.load import CHECKPOINT_HELP, checkpoint_path
from qwen_min.config import QwenConfig
from qwen_min.model.lora import apply_lora, lora_parameters, merge_lora
from qwen_min.model.qwen import IGNORE_INDEX, Qwen
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import GENERATED, Example, evaluate, handwritten, make_examples, read_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.batches import ShuffledStream, pad_batch
from qwen_min.train.settings import LoopSettings, loop_default, require, require_positive, save_settings, setting, train_config
from qwen_min.train.trainer import Trainer, check_run_folder, setup_distributed


@dataclass
class SFTSettings(LoopSettings):
    """Settings of `qwen-min sft` (train/settings.py: defaults, then run.json on --resume, then the flags given)."""

    checkpoint: str | None = setting(None, f"the model to fine-tune: {CHECKPOINT_HELP}; or --size")
    size: str | None = setting(None, "start from a randomly initialised model of this named size (config.py; tests, "
                                     "experiments)")
    tokenizer: str | None = setting(None, "tokenizer folder or .gguf (default: the checkpoint's own, else data/qwen2.5)")
    tasks: str = setting(",".join(GENERATED), "comma-separated generated tasks to train on")
    n_train: int = setting(2000, "training examples per task")
    n_test: int = setting(50, "held-out test prompts per task for the accuracy evaluation")
    handwritten_repeat: int = setting(10, "copies of the handwritten conversations in the training set")
    data: list[str] = setting([], "extra JSONL file of conversations")
    lora: bool = setting(False, "train LoRA adapters only; they are merged into the weights on save")
    lora_rank: int = setting(8, "rank of the LoRA adapters")
    lora_alpha: float = setting(16.0, "LoRA's alpha: the update is scaled by alpha / rank")
    max_len: int = setting(512, "conversations are cut to this many tokens")
    max_new_tokens: int = setting(32, "reply length in the accuracy evaluation")
    evaluate: bool = setting(True, "skip the checker accuracy before and after training", negative="--no-eval")
    max_steps: int | None = loop_default("max_steps", 300)
    batch_size: int = loop_default("batch_size", 16)
    warmup_steps: int | None = loop_default("warmup_steps", None)  # 5% of max_steps (resolve_defaults)
    save_every: int = loop_default("save_every", 100)
    # lr: None, resolved to the report's 7e-6 for full fine-tuning, 2e-4 with LoRA; weight decay 0.1, clip 1.0 (the report's)


SHOWN = {"lr": "7e-6 (2e-4 with --lora)", "warmup_steps": "5%% of --max-steps"}  # defaults that depend on other settings


def assistant_spans(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) character spans the model learns to write.

    >>> text, spans = assistant_spans(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    >>> [text[a:b] for a, b in spans]
    ['Hello!<|im_end|>']
    """
    text = tokenizer.render_chat(messages, tools)
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if i == 0:
            raise ValueError("a conversation cannot start with an assistant message (it has no prompt to answer)")
        prompt = tokenizer.render_chat(messages[:i], tools, add_generation_prompt=True)
        turn = tokenizer.render_chat(messages[:i + 1], tools)
        start, end = len(prompt), len(turn)
        if not (turn.startswith(prompt) and text.startswith(turn) and turn.endswith("<|im_end|>\n")):
            raise ValueError(f"message {i}: the chat template does not render this conversation turn by turn")
        spans.append((start, end - 1))  # the closing '\n' is not trained
    return text, spans


def encode_chat(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[int], list[int]]:
    """(ids, labels) of a conversation: labels equal ids on assistant spans, -100 elsewhere."""
    text, spans = assistant_spans(tokenizer, messages, tools)
    ids = tokenizer.encode(text, allowed_special="all")
    byte_spans = [(len(text[:a].encode("utf-8")), len(text[:b].encode("utf-8"))) for a, b in spans]
    starts = [a for a, _ in byte_spans]
    labels, offset = [], 0
    for token in ids:
        k = bisect.bisect_right(starts, offset) - 1  # the last span starting at or before this token
        inside = k >= 0 and offset < byte_spans[k][1]
        labels.append(token if inside else IGNORE_INDEX)
        offset += len(tokenizer.token_bytes(token))
    return ids, labels


class SFTBatches:
    """A resumable batch source over tokenised conversations: shuffled each epoch (seeded), right-padded.

    `next_batch()` -> {"input_ids", "labels"}; `state_dict()` / `load_state_dict()` hold (epoch, position),
    so a resumed run sees the batches it would have seen. Under data parallelism every process walks the
    same shuffled order and takes its own slice of each global batch (process `rank` of `world_size`).
    """

    def __init__(self, tokenizer, examples: list[Example], batch_size: int, max_len: int = 512, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not examples:
            raise ValueError("no SFT examples to train on")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows = []
        self.truncated = 0
        for ex in examples:
            ids, labels = encode_chat(tokenizer, ex.messages, ex.tools)
            self.truncated += len(ids) > max_len
            self.rows.append((ids[:max_len], labels[:max_len]))
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.stream = ShuffledStream(len(self.rows), seed)

    def next_batch(self) -> dict[str, torch.Tensor]:
        stream = self.stream.take(self.batch_size * self.world_size)  # the global batch, then this process's slice
        mine = stream[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return pad_batch([self.rows[i] for i in mine], self.pad_id)

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)

    def fixed_batches(self) -> list[dict[str, torch.Tensor]]:
        """Every row once, in order, as batches: an evaluation set whose loss is comparable across steps."""
        return [pad_batch(self.rows[i:i + self.batch_size], self.pad_id) for i in range(0, len(self.rows), self.batch_size)]


def sft_loss(model, batch: dict[str, torch.Tensor]):
    """The Trainer's loss_fn: mean cross-entropy over the assistant tokens of the batch."""
    _, loss = model(batch["input_ids"], labels=batch["labels"])
    return loss, {"trained_tokens": float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())}


# ---------------------------------------------------------------------------- a fine-tuning run
def resolve_defaults(settings: SFTSettings) -> SFTSettings:
    """Fill the settings derived from others (lr, warmup) and check them; run.json records the result."""
    if (settings.checkpoint is None) == (settings.size is None):
        raise ValueError("pass exactly one of --checkpoint (a model to fine-tune) and --size (a random model)")
    require_positive(settings, "max_steps", "batch_size", "grad_accum", "max_len")
    lr = settings.lr if settings.lr is not None else 2e-4 if settings.lora else 7e-6
    warmup = settings.warmup_steps if settings.warmup_steps is not None else settings.max_steps // 20
    return dataclasses.replace(settings, lr=lr, warmup_steps=warmup)


def tokenizer_path(settings: SFTSettings) -> Path:
    """--tokenizer, else the checkpoint's own (tokenizer.json beside it, or the .gguf itself), else the official files."""
    if settings.tokenizer:
        return Path(settings.tokenizer)
    if settings.checkpoint:
        path = checkpoint_path(settings.checkpoint)
        if path.suffix == ".gguf" or (path / "tokenizer.json").exists():
            return path
    return official_tokenizer_dir()


def load_model(settings: SFTSettings, vocab_size: int):
    """The model to fine-tune: a random one of a named size, or a checkpoint whose vocabulary covers the tokenizer."""
    if settings.size:
        torch.manual_seed(settings.seed)
        return Qwen(QwenConfig.from_name(settings.size, vocab_size=vocab_size))
    path = checkpoint_path(settings.checkpoint)
    model = from_pretrained(path)
    if model.config.vocab_size < vocab_size:
        raise ValueError(f"{path}: the model has {model.config.vocab_size} token embeddings, fewer than the tokenizer's "
                         f"{vocab_size} ids: pass the tokenizer it was trained with (--tokenizer)")
    return model


def _print_accuracy(title: str, accuracy: dict) -> None:
    print(title + "  " + "  ".join(f"{task} {100 * acc:.0f}%" for task, acc in accuracy.items()))


def run_sft(settings: SFTSettings, out: str | Path, *, resume: bool = False, stop_at: int | None = None,
            progress: bool = True, device: str | None = None, shard: str | None = None,
            activation_checkpointing: bool = False) -> Trainer:
    """Fine-tune as `settings` say, writing the run folder `out`; returns the Trainer."""
    out = Path(out)
    check_run_folder(out, resume)
    settings = resolve_defaults(settings)
    require(settings, "tasks")
    tasks = [t.strip() for t in settings.tasks.split(",") if t.strip()]
    tokenizer = Tokenizer.from_pretrained(tokenizer_path(settings))
    world = setup_distributed(device)
    seed, max_len = settings.seed, settings.max_len
    train = make_examples(tasks, "train", settings.n_train, seed=seed) if tasks else []
    train += handwritten() * settings.handwritten_repeat
    for path in settings.data:
        train += read_examples(path)
    test = make_examples(tasks, "test", settings.n_test, seed=seed) if tasks else []
    batches = SFTBatches(tokenizer, train, settings.batch_size, max_len, seed, world.rank, world.world_size)
    eval_sets = {"test": SFTBatches(tokenizer, test, settings.batch_size, max_len).fixed_batches()} if test else {}
    model = load_model(settings, tokenizer.vocab_size).to(world.device)
    if settings.lora:
        apply_lora(model, settings.lora_rank, settings.lora_alpha)
        print(f"LoRA rank {settings.lora_rank}: {lora_parameters(model):,} trainable parameters "
              f"of {model.num_parameters():,}")
    config = train_config(settings, out, resume=resume, stop_at=stop_at, progress=progress)
    print(f"{len(train):,} training conversations ({batches.truncated} cut to {max_len} tokens), "
          f"{len(test):,} test prompts; lr {config.lr:g} -> {config.min_lr:g}")
    report_path = out / "eval.json"
    report = json.loads(report_path.read_text()) if resume and report_path.exists() else {"seed": seed}
    evaluate_now = test and settings.evaluate and world.is_main
    if world.is_main:
        save_settings(out, settings)
    if evaluate_now and "before" not in report:
        report["before"] = evaluate(model, tokenizer, test, settings.max_new_tokens)["accuracy"]
        _print_accuracy("accuracy before SFT:", report["before"])
        report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    trainer = Trainer(model, sft_loss, batches, config, eval_sets=eval_sets, world=world, shard=shard,
                      activation_checkpointing=activation_checkpointing)
    trainer.fit()
    if trainer.step < settings.max_steps or not world.is_main:
        return trainer
    if settings.lora:
        merge_lora(model)
    folder = out / "model"
    save_pretrained(model, folder)
    tokenizer.save_pretrained(folder)
    print(f"fine-tuned model -> {folder}")
    if evaluate_now:
        result = evaluate(model, tokenizer, test, settings.max_new_tokens)
        report["after"] = result["accuracy"]
        report["samples"] = [{"task": ex.task, "prompt": ex.messages[0]["content"], "reply": reply, "right": right}
                             for ex, reply, right in result["replies"]]
        _print_accuracy("accuracy after SFT: ", report["after"])
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return trainer
