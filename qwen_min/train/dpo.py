"""Direct Preference Optimisation (DPO): the loss, completion log-probs, batches of pairs, and `qwen-min dpo`.

    logps = completion_logps(model(ids, attention_mask=mask), labels)    # (b,) one sum per sequence
    loss, metrics = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)

    qwen-min dpo --init runs/sft/model --pairs runs/pairs.jsonl --out runs/dpo --beta 0.1 --lr 3e-4

Design choices
- The loss is TRL's `loss_type="sigmoid"` (the DPO paper's), with no label smoothing:
      loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))      averaged over the pairs
  where pi_c is log pi(chosen | prompt) under the policy being trained and ref_c the same
  under the frozen reference (the SFT model). The metrics carry TRL's names:
  rewards/chosen = beta * (pi_c - ref_c) (the *implicit reward* of the chosen answer),
  rewards/rejected likewise, rewards/margins = their difference, rewards/accuracies =
  fraction of pairs whose chosen reward is strictly larger. At step 0 policy == reference,
  every reward is 0 and the loss is log 2 = 0.6931 (and the accuracy 0: ties are not wins).
- Log-probs are **summed** over the completion tokens, as in TRL and the paper: log pi(y | x)
  of a whole answer is the sum of its tokens' log-probs, and the derivation (a Bradley-Terry
  model on whole answers, whose optimal policy is pi_ref * exp(r / beta)) needs exactly that.
  A per-token *mean* would make the implicit reward length-normalised (what SimPO and
  TRL's `ipo` loss do): longer answers would no longer pay for every extra token, and the
  reward would stop being the log-ratio the derivation speaks of. The price of the sum:
  margins grow with answer length, so beta interacts with typical lengths.
- Which tokens count: `labels` follows `causal_lm_loss`'s convention (labels aligned with
  the input ids, -100 where nothing is learned; logits[:, i] predicts labels[:, i + 1]), so
  the assistant-only label masks built for SFT give completion-only log-probs unchanged.
  Prompt tokens would cancel in the margin (the same prompt sits in both answers' log-ratios)
  but would blur the reported rewards; padding would not even cancel (the two rows differ in length).
- `qwen-min dpo --nll-weight w` adds w times the cross-entropy of the chosen answers' tokens (TRL's
  `rpo_alpha`; "DPO + NLL" in Iterative RPO and Llama 3). Plain DPO only asks the chosen answer to gain
  on the rejected one relative to the reference, so both can lose probability to answers in no pair;
  on the tiny models of notebook 09 that lowers accuracy, the NLL term prevents it. Default 0: plain DPO.
  The metrics then also hold `dpo_loss` (the DPO part) and `nll/chosen`.
- The reference log-probs are computed once before training by default (`PairBatches.attach_reference`,
  TRL's `precompute_ref_log_probs`): no second model in memory, no second forward pass per step.
  `--reference frozen` keeps a frozen copy instead (same figures, tested).
- The per-token log-prob is logit[label] - logsumexp(logits) (TRL's `selective_log_softmax`),
  which never materialises a (b, t, vocab) log-softmax copy beside the logits; in fp32
  (or fp64 for a float64 model), whatever the model's dtype.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from qwen_min.checkpoints.hf import from_pretrained, save_pretrained
from qwen_min.model.qwen import causal_lm_loss
from qwen_min.tasks.checkable import GENERATED, evaluate, make_examples
from qwen_min.tasks.pairs import read_pairs
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.sft import encode_chat, pad_batch
from qwen_min.train.trainer import METRICS, TrainConfig, Trainer, read_metrics, setup_distributed

IGNORE_INDEX = -100


def completion_logps(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Sum of log p(labels[:, i + 1] | ...) over the positions whose label is not `ignore_index`: (b, t, v), (b, t) -> (b,).

    >>> logits = torch.zeros(1, 4, 8)                      # uniform over 8 tokens
    >>> labels = torch.tensor([[-100, -100, 3, 5]])        # a 2-token completion after a 2-token prompt
    >>> completion_logps(logits, labels)                   # 2 * log(1/8)
    tensor([-4.1589])
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} and labels of shape {tuple(labels.shape)} "
                         "disagree on (batch, time)")
    targets = labels[:, 1:].to(logits.device)  # (b, t - 1): the token each position predicts
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # (b, t - 1, v); fp32 at least
    keep = targets != ignore_index  # (b, t - 1)
    picked = logits.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (b, t - 1); -100 clamped, then masked
    token_logps = picked - torch.logsumexp(logits, dim=-1)  # (b, t - 1)
    return (token_logps * keep).sum(-1)  # (b,)


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The policy maximising E[r] - beta * KL(pi || pi_ref) over a finite set of answers (last dim):
    pi_ref * exp(r / beta), normalised.

    DPO's derivation starts here: invert it for r and the partition function cancels in a pair.

    >>> optimal_policy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), beta=1.0)   # e / (e + 1)
    tensor([0.7311, 0.2689])
    """
    return torch.softmax(ref_probs.log() + rewards / beta, dim=-1)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """Sigmoid DPO loss over a batch of pairs (each argument (b,) summed log-probs) and TRL's metrics.

    >>> z = torch.zeros(3)
    >>> loss, metrics = dpo_loss(z, z, z, z)               # policy == reference: log 2
    >>> round(loss.item(), 4), metrics["rewards/margins"]
    (0.6931, 0.0)
    >>> loss, metrics = dpo_loss(torch.tensor([-1.0]), torch.tensor([-9.0]), torch.tensor([-5.0]), torch.tensor([-5.0]))
    >>> [round(metrics[k], 4) for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")]
    [0.4, -0.4, 0.8, 1.0]
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {tuple(x.shape) for x in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"dpo_loss needs four log-prob vectors of the same shape (pairs,), got shapes {sorted(shapes)}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (b,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (b,)
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    chosen_rewards = beta * chosen_logratios.detach()  # (b,)
    rejected_rewards = beta * rejected_logratios.detach()  # (b,)
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": policy_chosen_logps.detach().mean().item(),
        "logps/rejected": policy_rejected_logps.detach().mean().item(),
    }
    return loss, metrics



# ---------------------------------------------------------------------------- batches of pairs
def encode_pair(tokenizer, pair: dict, max_len: int = 512) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """((ids, labels) of prompt + chosen, (ids, labels) of prompt + rejected), labels on the answer only (SFT's masks)."""

    rows = []
    for side in ("chosen", "rejected"):
        ids, labels = encode_chat(tokenizer, pair["prompt"] + pair[side], pair.get("tools"))
        rows.append((ids[:max_len], labels[:max_len]))
    return rows[0], rows[1]


class PairBatches:
    """A resumable batch source over preference pairs: shuffled each epoch (seeded), chosen and rejected in one batch.

    `next_batch()` -> {"input_ids": (2b, t), "labels": (2b, t)[, "ref_logps": (2b,)]}: rows 0..b-1 are the chosen
    answers, rows b..2b-1 the rejected ones of the same pairs, right-padded together, so one forward pass
    scores both (TRL's "concatenated forward"). `state_dict()` holds (epoch, position).
    """

    def __init__(self, tokenizer, pairs: list[dict], batch_size: int, max_len: int = 512, seed: int = 0):
        if not pairs:
            raise ValueError("no preference pairs to train on")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.rows = [encode_pair(tokenizer, p, max_len) for p in pairs]  # [(chosen, rejected)], each (ids, labels)
        self.batch_size, self.seed = batch_size, seed
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.ref_logps: torch.Tensor | None = None  # (n, 2) once `attach_reference` ran
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def __len__(self) -> int:
        return len(self.rows)

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.rows), generator=g).tolist()

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = pad_batch([self.rows[i][0] for i in indices] + [self.rows[i][1] for i in indices], self.pad_id)
        if self.ref_logps is not None:
            batch["ref_logps"] = torch.cat([self.ref_logps[indices, 0], self.ref_logps[indices, 1]])  # (2b,)
        return batch

    def next_batch(self) -> dict[str, torch.Tensor]:
        picked = []
        while len(picked) < self.batch_size:
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            picked.append(self._order[self.position])
            self.position += 1
        return self.batch(picked)

    def fixed_batches(self) -> list[dict[str, torch.Tensor]]:
        """Every pair once, in order: an evaluation set whose figures are comparable across steps."""
        return [self.batch(list(range(i, min(i + self.batch_size, len(self))))) for i in range(0, len(self), self.batch_size)]

    @torch.no_grad()
    def attach_reference(self, reference, autocast=contextlib.nullcontext) -> None:
        """Score every pair once with the reference model; batches then carry "ref_logps" (TRL's precompute_ref_log_probs)."""
        self.ref_logps = None
        was_training = reference.training
        reference.eval()
        device = next(reference.parameters()).device
        scores = []
        for batch in self.fixed_batches():
            with autocast():
                logps = completion_logps(reference(batch["input_ids"].to(device)), batch["labels"])  # (2b,)
            scores.append(logps.float().cpu().view(2, -1).T)  # (b, 2): chosen, rejected
        reference.train(was_training)
        self.ref_logps = torch.cat(scores)  # (n, 2)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation()


def dpo_batch_loss(model, batch: dict[str, torch.Tensor], beta: float = 0.1, reference=None, nll_weight: float = 0.0):
    """The Trainer's loss_fn: DPO over a PairBatches batch; reference log-probs from the batch or from `reference`.

    nll_weight > 0 adds that times the mean cross-entropy of the chosen answers' tokens (TRL's `rpo_alpha`).
    """
    logits = model(batch["input_ids"])  # (2b, t, vocab)
    logps = completion_logps(logits, batch["labels"])  # (2b,)
    if "ref_logps" in batch:
        ref = batch["ref_logps"]
    elif reference is not None:
        with torch.no_grad():
            ref = completion_logps(reference(batch["input_ids"]), batch["labels"])
    else:
        raise ValueError("DPO needs reference log-probs: attach them to the batches or pass the frozen reference model")
    b = len(logps) // 2
    loss, metrics = dpo_loss(logps[:b], logps[b:], ref[:b], ref[b:], beta)
    if nll_weight:
        nll = causal_lm_loss(logits[:b], batch["labels"][:b])
        metrics["dpo_loss"], metrics["nll/chosen"] = loss.item(), nll.item()
        loss = loss + nll_weight * nll
    return loss, metrics


# ---------------------------------------------------------------------------- curves
def plot_dpo_metrics(metrics_path, png_path=None, axes=None):
    """Loss, reward margins and preference accuracy per step (train, and held-out pairs where measured)."""
    from matplotlib.figure import Figure

    records = read_metrics(metrics_path)
    fig = None
    if axes is None:
        fig = Figure(figsize=(13, 3.6))
        axes = fig.subplots(1, 3)
    val = [r for r in records if "val_loss" in r]
    loss_key = "dpo_loss" if "dpo_loss" in records[0] else "loss"  # with --nll-weight, "loss" also holds the NLL term
    for ax, key, title in zip(axes, (loss_key, "rewards/margins", "rewards/accuracies"),
                              ("DPO loss", "reward margin (chosen - rejected)", "preference accuracy")):
        ax.plot([r["step"] for r in records], [r[key] for r in records], lw=1, alpha=0.7, label="train batch")
        ax.plot([r["step"] for r in val], [r[f"val_{key}"] for r in val], "o-", label="held-out pairs")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].axhline(math.log(2), color="gray", ls=":", label="log 2 (policy = reference)")
    axes[2].axhline(0.5, color="gray", ls=":", label="chance")
    for ax in axes:
        ax.legend(fontsize=8)
    if fig is not None and png_path is not None:
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
    return axes


# ---------------------------------------------------------------------------- qwen-min dpo
DEFAULTS = dict(beta=0.1, nll_weight=0.0, lr=5e-5, min_lr=None, warmup_steps=0, epochs=1.0, max_steps=None, batch_size=8,
                grad_accum=1,
                weight_decay=0.0, grad_clip=1.0, eval_every=10, save_every=0, val_fraction=0.1, reference="precomputed",
                max_len=512, seed=0, eval_tasks=None, eval_prompts=50, eval_seed=1, max_new_tokens=32, precision="auto")


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--init", type=Path, help="the SFT model folder to start from and use as the reference (required "
                                             "unless --resume)")
    p.add_argument("--pairs", type=Path, help="preference pairs (JSONL from `qwen-min make-pairs`; required unless --resume)")
    p.add_argument("--out", type=Path, required=True, help="run folder: metrics.jsonl, dpo.png, checkpoint.pt, eval.json, model/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint (settings from run.json)")
    p.add_argument("--beta", type=float, help=f"DPO beta: how far the policy may drift from the reference (default {d['beta']})")
    p.add_argument("--nll-weight", type=float, help="weight of an extra cross-entropy loss on the chosen answers "
                                                   f"(TRL's rpo_alpha; default {d['nll_weight']:g}: plain DPO)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d['lr']:g}; the report's 0.5B-72B runs use 7e-7)")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default lr / 10)")
    p.add_argument("--warmup-steps", type=int, help=f"(default {d['warmup_steps']})")
    p.add_argument("--epochs", type=float, help=f"passes over the training pairs unless --max-steps is given "
                                                f"(default {d['epochs']:g}, as in the report)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--stop-at", type=int, help="end this session after this step (the schedule still runs to the end)")
    p.add_argument("--batch-size", type=int, help=f"pairs per micro-batch (default {d['batch_size']})")
    p.add_argument("--grad-accum", type=int, help=f"micro-batches per optimizer step (default {d['grad_accum']})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay on matrices (default {d['weight_decay']:g}, TRL's)")
    p.add_argument("--grad-clip", type=float, help=f"max gradient norm (default {d['grad_clip']:g}; 0 disables)")
    p.add_argument("--eval-every", type=int, help=f"held-out figures every N steps and at the end (default {d['eval_every']})")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (and at the end)")
    p.add_argument("--val-fraction", type=float, help=f"pairs held out by prompt for validation (default {d['val_fraction']:g})")
    p.add_argument("--reference", choices=["precomputed", "frozen"],
                   help="reference log-probs computed once before training (default), or a frozen copy run every step")
    p.add_argument("--max-len", type=int, help=f"tokens per conversation, longer ones are cut (default {d['max_len']})")
    p.add_argument("--seed", type=int, help="seed of the split and the batch order (default 0)")
    p.add_argument("--eval-tasks", help="tasks whose held-out test prompts are checked before and after (default: those "
                                        f"in the pairs; any of {','.join(GENERATED)}); 'none' skips it")
    p.add_argument("--eval-prompts", type=int, help=f"test prompts per task, checker evaluation (default {d['eval_prompts']})")
    p.add_argument("--eval-seed", type=int, help=f"seed of the test prompts (default {d['eval_seed']})")
    p.add_argument("--max-new-tokens", type=int, help=f"reply length in the checker evaluation (default {d['max_new_tokens']})")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_settings(args) -> dict:
    """Defaults, then run.json when resuming, then the flags given."""
    run_file = args.out / "run.json"
    resumed = args.resume and run_file.exists()
    settings = json.loads(run_file.read_text()) if resumed else {**DEFAULTS, "init": None, "pairs": None}
    for key in [*DEFAULTS, "init", "pairs"]:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = str(value) if isinstance(value, Path) else value
    for key in ("init", "pairs"):
        if settings[key] is None:
            raise ValueError(f"--{key} is required (or --resume a run that has it)")
    for key in ("batch_size", "grad_accum", "max_len", "eval_prompts"):
        if settings[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {settings[key]}")
    if not 0 < settings["val_fraction"] < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {settings['val_fraction']}")
    if settings["beta"] <= 0:
        raise ValueError(f"--beta must be > 0, got {settings['beta']}")
    return settings


def split_pairs(pairs: list[dict], val_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, validation) pairs, split by prompt: the pairs of one prompt stay on one side."""
    prompts = list(dict.fromkeys(json.dumps(p["prompt"], sort_keys=True) for p in pairs))
    random.Random(seed).shuffle(prompts)
    held_out = set(prompts[:max(1, round(val_fraction * len(prompts)))])
    if len(held_out) == len(prompts):
        raise ValueError(f"only {len(prompts)} distinct prompt(s) in the pairs: too few to hold some out for validation")
    val = [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) in held_out]
    return [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) not in held_out], val


def checker_accuracy(model, tok, settings: dict, pairs: list[dict]) -> dict | None:
    """Greedy accuracy per task on held-out test prompts (tasks.evaluate), with the mean over tasks."""

    names = settings["eval_tasks"]
    if names == "none":
        return None
    names = names.split(",") if names else [t for t in dict.fromkeys(p.get("task") for p in pairs) if t in GENERATED]
    if not names:
        return None
    examples = make_examples(names, "test", settings["eval_prompts"], seed=settings["eval_seed"])
    accuracy = evaluate(model, tok, examples, max_new_tokens=settings["max_new_tokens"])["accuracy"]
    return {**accuracy, "mean": sum(accuracy.values()) / len(accuracy)}


def run(args):

    world = setup_distributed(args.device)
    log = print if world.is_main else (lambda *a, **k: None)
    settings = resolve_settings(args)
    args.out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_pretrained(settings["init"])
    model = from_pretrained(settings["init"], device=world.device)
    train_pairs, val_pairs = split_pairs(read_pairs(settings["pairs"]), settings["val_fraction"], settings["seed"])
    batch_args = dict(batch_size=settings["batch_size"], max_len=settings["max_len"], seed=settings["seed"])
    train, val = PairBatches(tok, train_pairs, **batch_args), PairBatches(tok, val_pairs, **batch_args)
    pairs_per_step = settings["batch_size"] * settings["grad_accum"] * world.world_size
    max_steps = settings["max_steps"] or max(1, math.ceil(settings["epochs"] * len(train) / pairs_per_step))
    if world.is_main:
        (args.out / "run.json").write_text(json.dumps(settings, indent=1) + "\n")

    eval_file = args.out / "eval.json"
    evaluation = json.loads(eval_file.read_text()) if args.resume and eval_file.exists() else {}
    if "before" not in evaluation and world.is_main:  # the SFT model, before any DPO step
        evaluation = {"seed": settings["eval_seed"], "prompts_per_task": settings["eval_prompts"],
                      "before": checker_accuracy(model, tok, settings, train_pairs)}
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")

    config = TrainConfig(out=args.out, max_steps=max_steps, lr=settings["lr"], min_lr=settings["min_lr"],
                         warmup_steps=settings["warmup_steps"], weight_decay=settings["weight_decay"],
                         grad_clip=settings["grad_clip"], grad_accum=settings["grad_accum"],
                         eval_every=settings["eval_every"], save_every=settings["save_every"], stop_at=args.stop_at,
                         resume=args.resume, seed=settings["seed"], precision=settings["precision"],
                         progress=not args.no_progress)
    reference = None
    if settings["reference"] == "frozen":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = functools.partial(dpo_batch_loss, beta=settings["beta"], reference=reference, nll_weight=settings["nll_weight"])
    trainer = Trainer(model, loss_fn, train, config, {"pairs": val.fixed_batches()}, world, extra_state={"settings": settings})
    if reference is None:  # before fit(), which loads a resumed checkpoint: the reference is always the SFT model
        for batches in (train, val):
            batches.attach_reference(model, trainer.autocast)
        trainer.eval_sets = {"pairs": val.fixed_batches()}
    log(f"DPO from {settings['init']}: {len(train)} training pairs, {len(val)} held-out pairs, beta {settings['beta']}, "
        f"lr {settings['lr']:g}, {max_steps} steps of {pairs_per_step} pairs, reference {settings['reference']}")
    records = trainer.fit()
    if not world.is_main:
        return
    plot_dpo_metrics(args.out / METRICS, args.out / "dpo.png")
    if records:
        last = records[-1]
        log(f"step {last['step']}: loss {last['loss']:.4f}; held-out pairs: loss {last['val_loss']:.4f}, "
            f"margin {last['val_rewards/margins']:.3f}, accuracy {last['val_rewards/accuracies']:.3f}")
    if trainer.step == max_steps:
        save_pretrained(model, args.out / "model")
        tok.save_pretrained(args.out / "model")
        evaluation["after"] = checker_accuracy(model, tok, settings, train_pairs)
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")
        if evaluation["after"] is not None:
            log("checker accuracy on held-out test prompts, before -> after DPO:")
            for task in evaluation["after"]:
                log(f"  {task:<14}{evaluation['before'][task]:.3f} -> {evaluation['after'][task]:.3f}")
        log(f"wrote {args.out}/metrics.jsonl, dpo.png, eval.json, checkpoint.pt, model/")
