"""Direct Preference Optimisation (DPO): the loss, completion log-probs, batches of pairs, a run (command: dpo_command.py).

    logps = completion_logps(model(ids, attention_mask=mask), labels)    # (b,) one sum per sequence
    loss, metrics = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)

    qwen-min dpo --checkpoint runs/sft --pairs runs/pairs.jsonl --out runs/dpo --beta 0.1 --lr 3e-4

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
- `--lora` trains LoRA adapters only (model/lora.py) and writes them alone to model/ (adapter.safetensors +
  adapter.json, a few MB for the 0.5B; `qm.load` merges them onto the base). A frozen reference is then the
  policy with its adapters off (`AdaptersOff`), not a copy.
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
import dataclasses
import functools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from qwen_min.checkpoints.hf import save_pretrained
from qwen_min.checkpoints.load import CHECKPOINT_HELP, load
from qwen_min.model.lora import DEFAULT_TARGETS, AdaptersOff, apply_lora, lora_parameters, save_adapters
from qwen_min.model.qwen import IGNORE_INDEX, causal_lm_loss
from qwen_min.tasks.checkable import GENERATED, heldout_accuracy, make_examples
from qwen_min.tasks.pairs import read_pairs
from qwen_min.train.batches import ShuffledStream, pad_batch
from qwen_min.train.settings import LoopSettings, loop_default, require, require_positive, save_settings, setting, train_config
from qwen_min.train.sft import encode_chat
from qwen_min.train.trainer import METRICS, Trainer, check_run_folder, read_metrics, setup_distributed


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
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.ref_logps: torch.Tensor | None = None  # (n, 2) once `attach_reference` ran
        self.stream = ShuffledStream(len(self.rows), seed)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = pad_batch([self.rows[i][0] for i in indices] + [self.rows[i][1] for i in indices], self.pad_id)
        if self.ref_logps is not None:
            batch["ref_logps"] = torch.cat([self.ref_logps[indices, 0], self.ref_logps[indices, 1]])  # (2b,)
        return batch

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.batch(self.stream.take(self.batch_size))

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
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


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
@dataclass
class DPOSettings(LoopSettings):
    """Settings of `qwen-min dpo` (train/settings.py: defaults, then run.json on --resume, then the flags given)."""

    checkpoint: str | None = setting(None, f"the SFT model to start from and use as the reference: {CHECKPOINT_HELP}")
    pairs: str | None = setting(None, "preference pairs (JSONL from `qwen-min make-pairs`; required unless --resume)")
    beta: float = setting(0.1, "DPO beta: how far the policy may drift from the reference")
    nll_weight: float = setting(0.0, "weight of an extra cross-entropy loss on the chosen answers (TRL's rpo_alpha; "
                                     "0: plain DPO)")
    epochs: float = setting(1.0, "passes over the training pairs unless --max-steps is given (one, as in the report)")
    val_fraction: float = setting(0.1, "pairs held out by prompt for validation")
    reference: str = setting("precomputed", "reference log-probs computed once before training, or a frozen copy run "
                                            "every step", choices=("precomputed", "frozen"))
    max_len: int = setting(512, "tokens per conversation, longer ones are cut")
    eval_tasks: str | None = setting(None, "tasks whose held-out test prompts are checked before and after (default: "
                                           f"those in the pairs; any of {','.join(GENERATED)}); 'none' skips it")
    eval_prompts: int = setting(50, "test prompts per task, checker evaluation")
    eval_seed: int = setting(1, "seed of the test prompts")
    max_new_tokens: int = setting(32, "reply length in the checker evaluation")
    lora: bool = setting(False, "train LoRA adapters only (model/ then holds the adapters, qm.load merges them)")
    lora_rank: int = setting(8, "rank of the LoRA adapters")
    lora_alpha: float = setting(16.0, "LoRA's alpha: the update is scaled by alpha / rank")
    lora_targets: str = setting(",".join(DEFAULT_TARGETS), "comma-separated names of the Linear layers LoRA adapts")
    lr: float | None = loop_default("lr", 5e-5)
    weight_decay: float = loop_default("weight_decay", 0.0)
    eval_every: int = loop_default("eval_every", 10)
    # max_steps: None, from --epochs


def split_pairs(pairs: list[dict], val_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, validation) pairs, split by prompt: the pairs of one prompt stay on one side."""
    prompts = list(dict.fromkeys(json.dumps(p["prompt"], sort_keys=True) for p in pairs))
    random.Random(seed).shuffle(prompts)
    held_out = set(prompts[:max(1, round(val_fraction * len(prompts)))])
    if len(held_out) == len(prompts):
        raise ValueError(f"only {len(prompts)} distinct prompt(s) in the pairs: too few to hold some out for validation")
    val = [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) in held_out]
    return [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) not in held_out], val


def checker_accuracy(model, tok, settings: DPOSettings, pairs: list[dict]) -> dict | None:
    """Greedy accuracy per task on held-out test prompts (tasks.evaluate), with the mean over tasks."""

    names = settings.eval_tasks
    if names == "none":
        return None
    names = names.split(",") if names else [t for t in dict.fromkeys(p.get("task") for p in pairs) if t in GENERATED]
    if not names:
        return None
    examples = make_examples(names, "test", settings.eval_prompts, seed=settings.eval_seed)
    return heldout_accuracy(model, tok, examples, settings.max_new_tokens)


def check_settings(settings: DPOSettings) -> None:
    """One clear error for a setting DPO cannot run with."""
    require(settings, "checkpoint", "pairs")
    require_positive(settings, "batch_size", "grad_accum", "max_len", "eval_prompts")
    if not 0 < settings.val_fraction < 1:
        raise ValueError(f"--val-fraction must be > 0 and < 1 (held-out prompts measure the preference accuracy), "
                         f"got {settings.val_fraction:g}")
    if settings.beta <= 0:
        raise ValueError(f"--beta must be > 0, got {settings.beta}")


def run_dpo(settings: DPOSettings, out: str | Path, *, resume: bool = False, stop_at: int | None = None,
            progress: bool = True, device: str | None = None, shard: str | None = None,
            activation_checkpointing: bool = False) -> Trainer:
    """DPO as `settings` say, writing the run folder `out`; returns the Trainer."""
    out = Path(out)
    check_run_folder(out, resume)
    check_settings(settings)
    train_pairs, val_pairs = split_pairs(read_pairs(settings.pairs), settings.val_fraction, settings.seed)
    world = setup_distributed(device)
    log = print if world.is_main else (lambda *a, **k: None)
    model, tok = load(settings.checkpoint, "fp32", device=world.device, log=log)  # the run folder is made after these checks
    if settings.lora:
        apply_lora(model, settings.lora_rank, settings.lora_alpha, settings.lora_targets.split(","), seed=settings.seed)
        log(f"LoRA rank {settings.lora_rank}: {lora_parameters(model):,} trainable parameters")
    batch_args = dict(batch_size=settings.batch_size, max_len=settings.max_len, seed=settings.seed)
    train, val = PairBatches(tok, train_pairs, **batch_args), PairBatches(tok, val_pairs, **batch_args)
    pairs_per_step = settings.batch_size * settings.grad_accum * world.world_size
    max_steps = settings.max_steps or max(1, math.ceil(settings.epochs * len(train) / pairs_per_step))
    if world.is_main:
        save_settings(out, settings)

    eval_file = out / "eval.json"
    evaluation = json.loads(eval_file.read_text()) if resume and eval_file.exists() else {}
    if "before" not in evaluation and world.is_main:  # the SFT model, before any DPO step
        evaluation = {"seed": settings.eval_seed, "prompts_per_task": settings.eval_prompts,
                      "before": checker_accuracy(model, tok, settings, train_pairs)}
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")

    config = train_config(dataclasses.replace(settings, max_steps=max_steps), out, resume=resume, stop_at=stop_at,
                          progress=progress)
    reference = None
    if settings.reference == "frozen":
        reference = AdaptersOff(model) if settings.lora else copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = functools.partial(dpo_batch_loss, beta=settings.beta, reference=reference, nll_weight=settings.nll_weight)
    trainer = Trainer(model, loss_fn, train, config, {"pairs": val.fixed_batches()}, world,
                      extra_state={"settings": dataclasses.asdict(settings)}, shard=shard,
                      activation_checkpointing=activation_checkpointing)
    if reference is None:  # before fit(), which loads a resumed checkpoint: the reference is always the SFT model
        for batches in (train, val):
            batches.attach_reference(model, trainer.autocast)
        trainer.eval_sets = {"pairs": val.fixed_batches()}
    log(f"DPO from {settings.checkpoint}: {len(train)} training pairs, {len(val)} held-out pairs, beta {settings.beta}, "
        f"lr {settings.lr:g}, {max_steps} steps of {pairs_per_step} pairs, reference {settings.reference}")
    records = trainer.fit()
    if not world.is_main:
        return trainer
    plot_dpo_metrics(out / METRICS, out / "dpo.png")
    if records:
        last = records[-1]
        log(f"step {last['step']}: loss {last['loss']:.4f}; held-out pairs: loss {last['val_loss']:.4f}, "
            f"margin {last['val_rewards/margins']:.3f}, accuracy {last['val_rewards/accuracies']:.3f}")
    if trainer.step == max_steps:
        if settings.lora:
            save_adapters(model, out / "model", settings.checkpoint)
        else:
            save_pretrained(model, out / "model")
            tok.save_pretrained(out / "model")
        evaluation["after"] = checker_accuracy(model, tok, settings, train_pairs)
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")
        if evaluation["after"] is not None:
            log("checker accuracy on held-out test prompts, before -> after DPO:")
            for task in evaluation["after"]:
                log(f"  {task:<14}{evaluation['before'][task]:.3f} -> {evaluation['after'][task]:.3f}")
        log(f"wrote {out}/metrics.jsonl, dpo.png, eval.json, checkpoint.pt, model/")
    return trainer
