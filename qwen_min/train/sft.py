"""Supervised fine-tuning in ChatML: loss on the assistant's tokens only; plus `qwen-min sft`.

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
import json
from pathlib import Path

import torch

from qwen_min.checkpoints.fetch import default_checkpoint
from qwen_min.checkpoints.hf import from_pretrained, save_pretrained
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import TASKS, Example, evaluate, handwritten, make_examples, read_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.lora import apply_lora, lora_parameters, merge_lora
from qwen_min.train.trainer import TrainConfig, Trainer, setup_distributed

IGNORE_INDEX = -100
GENERATED_TASKS = [name for name, task in TASKS.items() if task.generate is not None]


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


def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels) rows to the longest: {"input_ids": (b, t), "labels": (b, t)}, padding labelled -100."""
    t = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad_id] * (t - len(ids)) for ids, _ in rows], dtype=torch.long)
    labels = torch.tensor([lab + [IGNORE_INDEX] * (t - len(lab)) for _, lab in rows], dtype=torch.long)
    return {"input_ids": input_ids, "labels": labels}


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
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.rows), generator=g).tolist()

    def _take(self, n: int) -> list[int]:
        """The next n row indices of the shuffled stream (a new permutation at each epoch)."""
        picked = []
        while len(picked) < n:
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            picked.append(self._order[self.position])
            self.position += 1
        return picked

    def next_batch(self) -> dict[str, torch.Tensor]:
        stream = self._take(self.batch_size * self.world_size)  # the global batch, then this process's slice
        mine = stream[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return pad_batch([self.rows[i] for i in mine], self.pad_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation()

    def fixed_batches(self) -> list[dict[str, torch.Tensor]]:
        """Every row once, in order, as batches: an evaluation set whose loss is comparable across steps."""
        return [pad_batch(self.rows[i:i + self.batch_size], self.pad_id) for i in range(0, len(self.rows), self.batch_size)]


def sft_loss(model, batch: dict[str, torch.Tensor]):
    """The Trainer's loss_fn: mean cross-entropy over the assistant tokens of the batch."""
    _, loss = model(batch["input_ids"], labels=batch["labels"])
    return loss, {"trained_tokens": float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())}


# ---------------------------------------------------------------------------- qwen-min sft
def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--init", help="checkpoint to fine-tune: a folder (config.json + safetensors, e.g. from "
                                    "`qwen-min pretrain`), a .gguf file, or 'default' for the default checkpoint")
    src.add_argument("--config", help="start from a randomly initialised model of this named size (tests, experiments)")
    p.add_argument("--tokenizer", help="tokenizer folder or .gguf (default: the --init folder's tokenizer.json, "
                                       "the .gguf itself, else data/qwen2.5)")
    p.add_argument("--out", required=True, help="run folder: metrics.jsonl, loss.png, checkpoint.pt, eval.json, model/")
    p.add_argument("--tasks", default=",".join(GENERATED_TASKS), help="comma-separated generated tasks (default: all)")
    p.add_argument("--n-train", type=int, default=2000, help="training examples per task")
    p.add_argument("--n-test", type=int, default=50, help="held-out test prompts per task for the accuracy evaluation")
    p.add_argument("--handwritten-repeat", type=int, default=10,
                   help="copies of the handwritten conversations in the training set (0: none)")
    p.add_argument("--data", action="append", default=[], help="extra JSONL file of conversations (repeatable)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters only; they are merged into the weights on save")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16, help="conversations per micro-batch (per process)")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 7e-6, the Qwen2.5 report's, for full fine-tuning; 2e-4 with --lora; "
                        "a tiny model trained here wants ~1e-3)")
    p.add_argument("--min-lr", type=float, default=None, help="final learning rate (default: lr / 10, as in the report)")
    p.add_argument("--warmup-steps", type=int, default=None, help="default: 5%% of --max-steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="the report's 0.1")
    p.add_argument("--grad-clip", type=float, default=1.0, help="the report's 1.0")
    p.add_argument("--max-len", type=int, default=512, help="conversations are cut to this many tokens")
    p.add_argument("--eval-every", type=int, default=0, help="test-split loss every N steps (0: at the end only)")
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps")
    p.add_argument("--stop-at", type=int, default=None, help="end this session after this step (resume later)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, the shuffling and the initialisation")
    p.add_argument("--max-new-tokens", type=int, default=32, help="reply length in the accuracy evaluation")
    p.add_argument("--no-eval", action="store_true", help="skip the checker accuracy before and after training")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _default_tokenizer(args) -> Path:
    if args.tokenizer:
        return Path(args.tokenizer)
    if args.init and args.init != "default":
        init = Path(args.init)
        if init.suffix == ".gguf" or (init / "tokenizer.json").exists():
            return init
    if args.init == "default":
        return default_checkpoint()
    return official_tokenizer_dir()


def _load_model(args, vocab_size: int):

    if args.config:
        torch.manual_seed(args.seed)
        return Qwen(QwenConfig.from_name(args.config, vocab_size=vocab_size))
    path = args.init
    if path == "default":
        path = default_checkpoint()
    model = from_pretrained(path)
    if model.config.vocab_size < vocab_size:
        raise ValueError(f"{path}: the model has {model.config.vocab_size} token embeddings, fewer than the tokenizer's "
                         f"{vocab_size} ids: pass the tokenizer it was trained with (--tokenizer)")
    return model


def _print_accuracy(title: str, accuracy: dict) -> None:
    print(title + "  " + "  ".join(f"{task} {100 * acc:.0f}%" for task, acc in accuracy.items()))


def run(args):

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    out = Path(args.out)
    if not args.resume and (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out / 'checkpoint.pt'} exists: pass --resume to continue it, or use another --out")
    tokenizer = Tokenizer.from_pretrained(_default_tokenizer(args))
    world = setup_distributed(args.device)
    train = make_examples(tasks, "train", args.n_train, seed=args.seed) if tasks else []
    train += handwritten() * args.handwritten_repeat
    for path in args.data:
        train += read_examples(path)
    test = make_examples(tasks, "test", args.n_test, seed=args.seed) if tasks else []
    batches = SFTBatches(tokenizer, train, args.batch_size, args.max_len, args.seed, world.rank, world.world_size)
    eval_sets = {"test": SFTBatches(tokenizer, test, args.batch_size, args.max_len).fixed_batches()} if test else {}
    model = _load_model(args, tokenizer.vocab_size).to(world.device)
    if args.lora:
        apply_lora(model, args.lora_rank, args.lora_alpha)
        print(f"LoRA rank {args.lora_rank}: {lora_parameters(model):,} trainable parameters of {model.num_parameters():,}")
    lr = args.lr if args.lr is not None else (2e-4 if args.lora else 7e-6)
    config = TrainConfig(out=out, max_steps=args.max_steps, lr=lr, min_lr=args.min_lr,
                         warmup_steps=args.warmup_steps if args.warmup_steps is not None else args.max_steps // 20,
                         weight_decay=args.weight_decay, grad_clip=args.grad_clip, grad_accum=args.grad_accum,
                         eval_every=args.eval_every, save_every=args.save_every, stop_at=args.stop_at,
                         resume=args.resume, seed=args.seed, progress=not args.no_progress)
    print(f"{len(train):,} training conversations ({batches.truncated} cut to {args.max_len} tokens), "
          f"{len(test):,} test prompts; lr {lr:g} -> {config.min_lr or lr / 10:g}")
    report_path = out / "eval.json"
    report = json.loads(report_path.read_text()) if args.resume and report_path.exists() else {"seed": args.seed}
    evaluate_now = test and not args.no_eval and world.is_main
    if evaluate_now and "before" not in report:
        report["before"] = evaluate(model, tokenizer, test, args.max_new_tokens)["accuracy"]
        _print_accuracy("accuracy before SFT:", report["before"])
        out.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if world.is_main and not args.resume:
        out.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if not k.startswith("_")} | {"lr": lr, "min_lr": config.min_lr,
                                                                                   "warmup_steps": config.warmup_steps}
        (out / "run.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    trainer = Trainer(model, sft_loss, batches, config, eval_sets=eval_sets, world=world)
    trainer.fit()
    if trainer.step < args.max_steps or not world.is_main:
        return 0
    if args.lora:
        merge_lora(model)

    folder = out / "model"
    save_pretrained(model, folder)
    tokenizer.save_pretrained(folder)
    print(f"fine-tuned model -> {folder}")
    if evaluate_now:
        result = evaluate(model, tokenizer, test, args.max_new_tokens)
        report["after"] = result["accuracy"]
        report["samples"] = [{"task": ex.task, "prompt": ex.messages[0]["content"], "reply": reply, "right": right}
                             for ex, reply, right in result["replies"]]
        _print_accuracy("accuracy after SFT: ", report["after"])
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0
