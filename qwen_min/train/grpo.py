"""GRPO, the online RL stage of the Qwen2.5 report: sample a group of answers per prompt, reward them, push
the policy toward the better half of each group (chapter 11).

    rollouts = GRPORollouts(policy, reference, tok, examples, checker_reward, group_size=8, batch_size=32)
    loss_fn = functools.partial(grpo_batch_loss, beta=0.04)
    Trainer(policy, loss_fn, rollouts, config, tokens_in=rollout_tokens).fit()

One step (Group Relative Policy Optimization, Shao et al. 2024, DeepSeekMath):
1. for each of P prompts, sample G answers from the current policy (`qm.generate`, batched);
2. reward each answer: 1 if the task's checker passes it, else 0 (or the score of a `RewardModel`);
3. advantage of answer i of a group: A_i = (r_i - mean(r)) / (std(r) + eps), shared by all its tokens;
4. minimise, per completion token t, with the ratio rho_t = pi(y_t | .) / pi_old(y_t | .),
       -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) + beta * KL_t,
   KL_t = pi_ref / pi - log(pi_ref / pi) - 1 (the k3 estimator: unbiased, always >= 0) against the frozen
   reference policy (the SFT model).

Design choices
- Loss aggregation, `aggregation=`: "sequence" (default) is the GRPO paper's: mean over each answer's
  tokens, then mean over answers (TRL's loss_type "grpo"). A long answer's tokens then weigh less than a
  short one's, a length bias. DAPO (Yu et al. 2025) sums over all tokens of the batch and divides by
  their number, "token" (TRL's "dapo", the default of TRL 1.16). Dr. GRPO (Liu et al. 2025)
  divides the sum by a constant, answers x max_completion_length, "constant" (TRL's "dr_grpo"). All three
  equal TRL 1.16's loss and gradients on a fixed batch (tests/train/test_grpo.py).
- Advantages as TRL computes them: unbiased std within the group, eps 1e-4. A group whose G rewards are
  all equal has advantages 0: it gives no policy gradient (only the KL term acts). The report orders
  prompts by the variance of their rewards, highest first, so such prompts come last (`order="variance"`): before training,
  G answers per prompt are sampled and scored once; after each pass over the prompts the order is redone
  with the variances just observed. `order="plain"`: a seeded shuffle per pass.
- pi_old is the policy that sampled the batch. With one gradient step per batch (`iterations=1`, the
  paper's and TRL's default) pi_old = pi, the ratio is 1 and the clip never acts; its gradient is then
  the plain policy gradient A * grad log pi. `iterations=mu > 1` reuses each batch for mu steps: the
  ratio moves off 1 and the clip bites (clip_fraction in the metrics).
- Rollouts are generated with `stop_ids=(<|im_end|>,)`: an answer that stopped ends with <|im_end|>,
  appended (generate drops it), so the policy is trained to stop; one cut at max_new_tokens does not.
  A torch.Generator seeded with (seed, rollout number) draws the tokens, so a resumed run samples the
  same answers, and the batch being reused (iterations > 1) is part of the checkpoint: resuming on CPU is
  bit-identical (tested).
- The batch source does the rollouts (the Trainer's `next_batch()`), with the policy as it is at that
  step; held-out checker accuracy is measured there too, every `eval_every` steps, so `heldout_accuracy`
  in the record of step s is that of the policy that made step s's rollouts, after s - 1 updates
  (`heldout_after_steps` says so in the record); the accuracy before and after the run is in eval.json.
- The reference is a frozen copy of the starting model (skipped when beta = 0). With `lora` only the adapters of the
  policy train (saved alone: model/ holds adapter.safetensors + adapter.json, model/lora.py), and the reference is the
  policy itself with its adapters switched off (`AdaptersOff`): the frozen base weights, exactly, without a second copy.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from qwen_min.checkpoints.hf import save_pretrained
from qwen_min.checkpoints.load import CHECKPOINT_HELP, load
from qwen_min.checkpoints.reward import load_reward_model
from qwen_min.generation import generate
from qwen_min.model.lora import DEFAULT_TARGETS, AdaptersOff, apply_lora, lora_parameters, save_adapters
from qwen_min.progress import progress_bar
from qwen_min.tasks.checkable import GENERATED, TASKS, Example, heldout_accuracy, make_examples, prompt_ids, reply_text
from qwen_min.train.settings import LoopSettings, loop_default, require, require_positive, save_settings, setting, train_config
from qwen_min.train.trainer import METRICS, Trainer, check_run_folder, read_metrics, setup_distributed

AGGREGATIONS = ("sequence", "token", "constant")


# ---------------------------------------------------------------------------- the loss
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(P * G,) rewards, groups of G consecutive answers -> (P * G,) advantages (r - group mean) / (group std + eps).

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), group_size=3)
    tensor([ 1.1545, -0.5773, -0.5773,  0.0000,  0.0000,  0.0000])
    """
    if group_size < 2:
        raise ValueError(f"group size must be at least 2 (advantages compare answers within a group), got {group_size}")
    groups = rewards.view(-1, group_size)  # (P, G)
    centred = groups - groups.mean(-1, keepdim=True)
    if scale:
        centred = centred / (groups.std(-1, keepdim=True) + eps)  # unbiased std, as TRL
    return centred.flatten()


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate on tokens sampled from pi: r - log r - 1 with r = pi_ref / pi (k3, >= 0).

    >>> k3_kl(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.5]))
    tensor([0.0000, 0.1487])
    """
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor | None, ref_logps: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, epsilon: float = 0.2, beta: float = 0.04,
              aggregation: str = "sequence", max_completion_length: int | None = None,
              kl_ratio: bool = False) -> tuple[torch.Tensor, dict]:
    """The GRPO loss of a batch of answers and its metrics (see the module docstring).

    logps, old_logps, ref_logps: (b, t) log-probs of each completion token under the policy (with gradients),
    the policy that sampled it (None: logps.detach(), one step per batch) and the reference (None: beta must
    be 0). advantages: (b,). mask: (b, t), 1 on completion tokens, 0 on padding.
    kl_ratio: multiply each token's KL by its ratio pi / pi_old, which makes the KL gradient the unbiased
    reverse-KL gradient (DeepSeek-V3.2; TRL 1.16's `use_bias_correction_kl`, on by default there). Off by
    default: the GRPO paper's loss. Even at ratio 1 it changes the gradient, not the value.
    Metrics: kl (mean k3 over tokens), clip_fraction (tokens whose clipped term was the smaller one, TRL's
    clip_ratio/region_mean), ratio (mean pi / pi_old).

    >>> logps = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    >>> loss, m = grpo_loss(logps, None, None, torch.tensor([1.0, -1.0]), torch.tensor([[1, 1], [1, 0]]), beta=0.0)
    >>> loss.item(), m["clip_fraction"]            # ratio 1: -mean(A), and nothing clipped
    (0.0, 0.0)
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    if beta != 0 and ref_logps is None:
        raise ValueError("beta > 0 needs the reference log-probs (ref_logps)")
    mask = mask.to(logps.dtype)
    old_logps = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old_logps)  # (b, t)
    a = advantages[:, None]  # (b, 1): every token of an answer shares its advantage
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = -torch.min(ratio * a, clipped * a)  # (b, t)
    kl = k3_kl(logps, ref_logps) if ref_logps is not None else torch.zeros_like(logps)
    if beta != 0:
        per_token = per_token + beta * (kl * ratio if kl_ratio else kl)
    if aggregation == "sequence":  # GRPO paper: mean over each answer's tokens, then over answers
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif aggregation == "token":  # DAPO: mean over every token of the batch
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    else:  # Dr. GRPO: a constant denominator
        loss = (per_token * mask).sum() / (logps.shape[0] * (max_completion_length or logps.shape[1]))
    tokens = mask.sum().clamp(min=1.0)
    clip = ((ratio < 1 - epsilon) & (a < 0)) | ((ratio > 1 + epsilon) & (a > 0))
    metrics = {"kl": ((kl * mask).sum() / tokens).item(), "clip_fraction": ((clip * mask).sum() / tokens).item(),
               "ratio": ((ratio.detach() * mask).sum() / tokens).item()}
    return loss, metrics


def per_token_logps(model, batch: dict, temperature: float = 1.0) -> torch.Tensor:
    """(b, c) log-probs of the completion tokens: prompt (left-padded) and completion (right-padded) run as one row."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)  # (b, p + c)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    c = batch["completion_ids"].shape[1]
    logits = model(ids, attention_mask=mask)[:, -c - 1:-1]  # (b, c, vocab): position i predicts token i + 1
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # bf16 -> fp32; fp64 stays
    return logits.gather(-1, batch["completion_ids"][..., None])[..., 0] - logits.logsumexp(-1)


def grpo_batch_loss(model, batch: dict, epsilon: float = 0.2, beta: float = 0.04, aggregation: str = "sequence",
                    temperature: float = 1.0, kl_ratio: bool = False):
    """The Trainer's loss_fn over a `GRPORollouts` batch; logs the rollout figures with the loss's."""
    logps = per_token_logps(model, batch, temperature)
    loss, metrics = grpo_loss(logps, batch.get("old_logps"), batch.get("ref_logps"), batch["advantages"],
                              batch["completion_mask"], epsilon, beta, aggregation, batch["completion_ids"].shape[1],
                              kl_ratio)
    return loss, {**metrics, **batch["stats"]}


def rollout_tokens(batch: dict) -> int:
    """Tokens a rollout batch feeds the model (the Trainer's tokens_in): real prompt and completion tokens."""
    return int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())


# ---------------------------------------------------------------------------- rewards
def checker_reward(examples: list[Example], replies: list[str]) -> list[float]:
    """1.0 where the task's checker passes the reply, else 0.0 (a verifiable reward)."""
    return [float(TASKS[ex.task].check(reply, ex.answer)) for ex, reply in zip(examples, replies)]


class ModelReward:
    """A `RewardModel` as the reward: the score of the conversation (prompt + reply + <|im_end|>), batched."""

    def __init__(self, reward_model, tokenizer, batch_size: int = 64):
        self.model, self.tok, self.batch_size = reward_model, tokenizer, batch_size

    @torch.no_grad()
    def __call__(self, examples: list[Example], replies: list[str]) -> list[float]:
        device = next(self.model.parameters()).device
        rows = [prompt_ids(self.tok, ex.prompt_messages, ex.tools) + self.tok.encode(reply + "<|im_end|>", allowed_special="all")
                for ex, reply in zip(examples, replies)]
        scores = []
        for i in range(0, len(rows), self.batch_size):
            chunk = rows[i:i + self.batch_size]
            t = max(map(len, chunk))
            ids = torch.tensor([r + [0] * (t - len(r)) for r in chunk], device=device)  # right padding
            mask = torch.tensor([[1] * len(r) + [0] * (t - len(r)) for r in chunk], device=device)
            scores += self.model(ids, attention_mask=mask).float().tolist()
        return scores


def order_by_variance(variances: list[float], tie_break: list[int]) -> list[int]:
    """Prompt indices, highest reward variance first; equal variances keep the order of `tie_break`.

    >>> order_by_variance([0.0, 0.25, 0.1875, 0.25], tie_break=[3, 2, 1, 0])
    [3, 1, 2, 0]
    """
    rank = {i: k for k, i in enumerate(tie_break)}
    return sorted(range(len(variances)), key=lambda i: (-variances[i], rank[i]))


# ---------------------------------------------------------------------------- rollouts: the batch source
def _pad(rows: list[list[int]], side: str, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, t) ids padded on `side` to the longest row, and the mask of real tokens."""
    t = max(1, max(map(len, rows)))
    ids, mask = [], []
    for r in rows:
        pad = [pad_id] * (t - len(r))
        ids.append(pad + r if side == "left" else r + pad)
        mask.append([0] * len(pad) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(pad))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


class GRPORollouts:
    """A resumable batch source that samples, rewards and scores a group of answers per prompt (see the docstring).

    Each micro-batch: `batch_size // group_size` prompts of `examples`, `group_size` answers each, as
    {"prompt_ids", "prompt_mask" (b, p), "completion_ids", "completion_mask" (b, c), "advantages" (b,),
    "ref_logps" (b, c) when beta > 0, "old_logps" when iterations > 1, "stats": floats to log}.
    """

    def __init__(self, policy, reference, tokenizer, examples: list[Example], reward_fn: Callable, group_size: int = 8,
                 batch_size: int = 32, iterations: int = 1, temperature: float = 1.0, max_new_tokens: int = 32,
                 beta: float = 0.04, order: str = "variance", seed: int = 0, grad_accum: int = 1,
                 eval_examples: list[Example] | None = None, eval_every: int = 0, progress: bool = False):
        if group_size < 2:
            raise ValueError(f"--group-size must be at least 2 (advantages compare answers within a group), got {group_size}")
        if batch_size % group_size:
            raise ValueError(f"--batch-size {batch_size} is not a multiple of --group-size {group_size} "
                             "(a micro-batch holds whole groups)")
        if order not in ("variance", "plain"):
            raise ValueError(f"unknown prompt order {order!r}; choose 'variance' or 'plain'")
        if iterations < 1:
            raise ValueError(f"--iterations must be at least 1, got {iterations}")
        if not examples:
            raise ValueError("no prompts to train on")
        self.policy, self.reference, self.tok, self.examples = policy, reference, tokenizer, examples
        self.reward_fn, self.group_size, self.prompts = reward_fn, group_size, batch_size // group_size
        self.iterations, self.temperature, self.max_new_tokens, self.beta = iterations, temperature, max_new_tokens, beta
        self.order_kind, self.seed, self.grad_accum, self.progress = order, seed, grad_accum, progress
        self.eval_examples, self.eval_every = eval_examples or [], eval_every
        self.im_end = tokenizer.encode("<|im_end|>", allowed_special="all")[0]
        self.autocast = contextlib.nullcontext  # the Trainer's, set by the caller: scoring runs as training does
        self.variances = [1.0] * len(examples)  # observed reward variance per prompt (1.0: not yet seen)
        self.epoch, self.position, self.rollouts, self.micro = 0, 0, 0, 0
        self.order = self._shuffled()
        self.cached: list[dict | None] = [None] * grad_accum  # this step's micro-batches, reused while iterations last
        self.accuracy: dict[str, float] = {}  # held-out accuracy measured at the start of this step (if any)

    # ------------------------------------------------------------------ order
    def _shuffled(self) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def _new_order(self) -> list[int]:
        shuffled = self._shuffled()
        return order_by_variance(self.variances, shuffled) if self.order_kind == "variance" else shuffled

    def rank_prompts(self) -> None:
        """Sample and reward G answers for every prompt once, then order them by reward variance (the report's)."""
        bar = progress_bar(total=len(self.examples), desc="rank prompts", unit="prompt", enabled=self.progress)
        for start in range(0, len(self.examples), self.prompts):
            picked = list(range(start, min(start + self.prompts, len(self.examples))))
            self._sample(picked, seed=self.seed * 1_000_003 - 1 - start)
            bar.update(len(picked))
        bar.close()
        self.order = self._new_order()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def _sample(self, picked: list[int], seed: int) -> tuple[list[list[int]], list[list[int]], torch.Tensor, float]:
        """G answers to each picked prompt: (prompt rows, completion rows, rewards (P * G,), share the checkers
        pass); records the reward variances."""
        device = next(self.policy.parameters()).device
        examples = [self.examples[i] for i in picked for _ in range(self.group_size)]
        prompts = [prompt_ids(self.tok, ex.prompt_messages, ex.tools) for ex in examples]
        generator = torch.Generator(device).manual_seed(seed)
        outputs = generate(self.policy, prompts, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                           stop_ids=(self.im_end,), generator=generator)
        replies = [reply_text(self.tok, ids) for ids in outputs]
        completions = [ids + [self.im_end] if len(ids) < self.max_new_tokens else ids for ids in outputs]
        rewards = torch.tensor(self.reward_fn(examples, replies), dtype=torch.float32)
        passed = sum(checker_reward(examples, replies)) / len(replies)  # whatever the reward, what the checkers say
        for k, i in enumerate(picked):
            self.variances[i] = rewards[k * self.group_size:(k + 1) * self.group_size].var(unbiased=False).item()
        return prompts, completions, rewards, passed

    def _logps(self, model, batch: dict) -> torch.Tensor:
        device = next(model.parameters()).device
        with torch.no_grad(), self.autocast():
            return per_token_logps(model, {k: v.to(device) for k, v in batch.items()}, self.temperature).float().cpu()

    def _rollout(self) -> dict:
        picked = []
        while len(picked) < self.prompts:
            if self.position == len(self.order):
                self.epoch, self.position = self.epoch + 1, 0
                self.order = self._new_order()
            picked.append(self.order[self.position])
            self.position += 1
        prompts, completions, rewards, passed = self._sample(picked, seed=self.seed * 1_000_003 + self.rollouts)
        self.rollouts += 1
        prompt_ids_, prompt_mask = _pad(prompts, "left")
        completion_ids, completion_mask = _pad(completions, "right")
        batch = {"prompt_ids": prompt_ids_, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
                 "completion_mask": completion_mask, "advantages": group_advantages(rewards, self.group_size)}
        if self.beta != 0:
            batch["ref_logps"] = self._logps(self.reference, batch)
        if self.iterations > 1:
            batch["old_logps"] = self._logps(self.policy, batch)
        groups = rewards.view(-1, self.group_size)
        batch["stats"] = {"reward_mean": rewards.mean().item(), "reward_std": groups.std(-1).mean().item(),
                          "zero_std_groups": (groups.std(-1) == 0).float().mean().item(), "checker_pass": passed,
                          "completion_length": completion_mask.sum(-1).float().mean().item()}
        return batch

    def next_batch(self) -> dict:
        step, j = divmod(self.micro, self.grad_accum)  # optimizer steps done, micro-batch within this step
        if j == 0:
            self.accuracy = {}
            if self.eval_examples and self.eval_every and step and step % self.eval_every == 0:
                self.accuracy = heldout_accuracy(self.policy, self.tok, self.eval_examples, self.max_new_tokens)
        if step % self.iterations == 0:  # new answers; else this micro-batch's answers of `iterations` steps ago
            self.cached[j] = self._rollout()
        self.micro += 1
        batch = dict(self.cached[j])
        batch["stats"] = {**batch["stats"], **{f"heldout_accuracy/{k}": v for k, v in self.accuracy.items()}}
        if self.accuracy:
            batch["stats"]["heldout_after_steps"] = step
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "order": self.order, "variances": self.variances,
                "rollouts": self.rollouts, "micro": self.micro, "cached": self.cached, "accuracy": self.accuracy}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


# ---------------------------------------------------------------------------- curves
def plot_grpo_metrics(metrics_path, png_path=None, axes=None):
    """Reward mean, KL to the reference and held-out checker accuracy per step."""
    from matplotlib.figure import Figure

    records = read_metrics(metrics_path)
    fig = None
    if axes is None:
        fig = Figure(figsize=(13, 3.6))
        axes = fig.subplots(1, 3)
    steps = [r["step"] for r in records]
    axes[0].plot(steps, [r["reward_mean"] for r in records], lw=1, label="batch mean")
    axes[0].set_title("reward of the sampled answers")
    axes[1].plot(steps, [r["kl"] for r in records], lw=1)
    axes[1].set_title("KL to the reference (k3, per token)")
    keys = sorted({k for r in records for k in r if k.startswith("heldout_accuracy/")})
    for key in keys:  # measured at the start of a step: after step - 1 updates
        marked = [r for r in records if key in r]
        axes[2].plot([r["step"] - 1 for r in marked], [r[key] for r in marked], "o-", ms=3, label=key.split("/")[1])
    axes[2].set_title("held-out checker accuracy (greedy)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if keys:
        axes[2].legend(fontsize=8)
    if fig is not None and png_path is not None:
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
    return axes


# ---------------------------------------------------------------------------- qwen-min grpo
@dataclass
class GRPOSettings(LoopSettings):
    """Settings of `qwen-min grpo` (train/settings.py: defaults, then run.json on --resume, then the flags given)."""

    checkpoint: str | None = setting(None, f"the model to start from, also the frozen reference: {CHECKPOINT_HELP}")
    tasks: str = setting("count,sort", f"comma-separated checkable tasks whose prompts are trained on (any of "
                                       f"{','.join(GENERATED)})")
    reward_model: str | None = setting(None, "a reward model folder (Qwen2ForSequenceClassification, one label) to "
                                             "score answers with, instead of the task checkers")
    group_size: int = setting(8, "answers sampled per prompt, G (the report's)")
    order: str = setting("variance", "prompts with the most varied rewards first, as the report does, or a plain "
                                     "shuffle", choices=("variance", "plain"))
    n_prompts: int = setting(64, "training prompts per task, from the 'dpo' split")
    temperature: float = setting(1.0, "sampling temperature of the rollouts")
    max_new_tokens: int = setting(32, "answer length, rollouts and evaluation")
    beta: float = setting(0.04, "KL coefficient against the reference (DeepSeekMath's; 0 skips the reference)")
    epsilon: float = setting(0.2, "PPO clip range of the ratio")
    aggregation: str = setting("sequence", "sequence: GRPO's per-answer mean then batch mean; token: DAPO's; "
                                           "constant: Dr. GRPO's", choices=AGGREGATIONS)
    kl_ratio: bool = setting(False, "weight each token's KL by its ratio (TRL's use_bias_correction_kl)")
    iterations: int = setting(1, "optimizer steps per batch of answers, mu")
    eval_prompts: int = setting(50, "held-out test prompts per task")
    eval_seed: int = setting(1, "seed of the held-out prompts")
    lora: bool = setting(False, "train LoRA adapters only (model/ then holds the adapters, qm.load merges them)")
    lora_rank: int = setting(8, "rank of the LoRA adapters")
    lora_alpha: float = setting(16.0, "LoRA's alpha: the update is scaled by alpha / rank")
    lora_targets: str = setting(",".join(DEFAULT_TARGETS), "comma-separated names of the Linear layers LoRA adapts")
    max_steps: int | None = loop_default("max_steps", 100)
    lr: float | None = loop_default("lr", 1e-6)
    batch_size: int = loop_default("batch_size", 32)
    weight_decay: float = loop_default("weight_decay", 0.0)
    eval_every: int = loop_default("eval_every", 10)
    save_every: int = loop_default("save_every", 10)


SHOWN = {"batch_size": "32 answers, a multiple of --group-size"}


def check_settings(settings: GRPOSettings) -> list[str]:
    """One clear error for each bad setting, before any model is loaded; returns the task names."""
    require(settings, "checkpoint", "tasks")
    tasks = [t.strip() for t in settings.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in GENERATED]
    if unknown or not tasks:
        what = f"unknown task {unknown[0]!r}" if unknown else "no task given"
        raise ValueError(f"{what}; choose among {','.join(GENERATED)}")
    if settings.group_size < 2:
        raise ValueError(f"--group-size must be at least 2 (advantages compare answers within a group), "
                         f"got {settings.group_size}")
    require_positive(settings, "max_steps", "batch_size", "grad_accum", "n_prompts", "eval_prompts", "iterations",
                     "max_new_tokens")
    if settings.batch_size % settings.group_size:
        raise ValueError(f"--batch-size {settings.batch_size} is not a multiple of --group-size "
                         f"{settings.group_size} (a micro-batch holds whole groups of answers)")
    if settings.aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown --aggregation {settings.aggregation!r}; choose one of {AGGREGATIONS}")
    if settings.beta < 0 or not 0 < settings.epsilon < 1 or settings.temperature <= 0:
        raise ValueError("--beta must be >= 0, --epsilon between 0 and 1, --temperature > 0")
    return tasks


def run_grpo(settings: GRPOSettings, out: str | Path, *, resume: bool = False, stop_at: int | None = None,
             progress: bool = True, device: str | None = None, shard: str | None = None,
             activation_checkpointing: bool = False) -> Trainer:
    """GRPO as `settings` say, writing the run folder `out`; returns the Trainer."""
    out = Path(out)
    check_run_folder(out, resume)
    tasks = check_settings(settings)
    world = setup_distributed(device)
    if world.world_size > 1:
        raise RuntimeError("qwen-min grpo runs as one process (rollouts are not split across processes)")
    reward_fn, reward_name = checker_reward, "the task checkers"
    model, tok = load(settings.checkpoint, "fp32", device=world.device)
    if settings.reward_model:
        reward_model = load_reward_model(settings.reward_model, device=world.device)
        reward_fn, reward_name = ModelReward(reward_model, tok), f"the reward model {settings.reward_model}"
    if settings.lora:
        apply_lora(model, settings.lora_rank, settings.lora_alpha, settings.lora_targets.split(","), seed=settings.seed)
        print(f"LoRA rank {settings.lora_rank}: {lora_parameters(model):,} trainable parameters")
        reference = AdaptersOff(model) if settings.beta else None
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False) if settings.beta else None
    seed = settings.seed
    examples = make_examples(tasks, "dpo", settings.n_prompts, seed=seed)  # prompts SFT never saw
    held_out = make_examples(tasks, "test", settings.eval_prompts, seed=settings.eval_seed)
    rollouts = GRPORollouts(model, reference, tok, examples, reward_fn, settings.group_size, settings.batch_size,
                            settings.iterations, settings.temperature, settings.max_new_tokens, settings.beta,
                            settings.order, seed, settings.grad_accum, held_out, settings.eval_every, progress)
    config = train_config(settings, out, resume=resume, stop_at=stop_at, progress=progress)
    loss_fn = functools.partial(grpo_batch_loss, epsilon=settings.epsilon, beta=settings.beta,
                                aggregation=settings.aggregation, temperature=settings.temperature,
                                kl_ratio=settings.kl_ratio)
    trainer = Trainer(model, loss_fn, rollouts, config, world=world, tokens_in=rollout_tokens,
                      extra_state={"settings": dataclasses.asdict(settings)}, shard=shard,
                      activation_checkpointing=activation_checkpointing)
    rollouts.autocast = trainer.autocast
    save_settings(out, settings)
    eval_file = out / "eval.json"
    evaluation = json.loads(eval_file.read_text()) if resume and eval_file.exists() else {}
    if "before" not in evaluation:
        evaluation = {"seed": settings.eval_seed, "prompts_per_task": settings.eval_prompts,
                      "before": heldout_accuracy(model, tok, held_out, settings.max_new_tokens)}
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")
    print(f"GRPO from {settings.checkpoint}: {len(examples)} prompts ({','.join(tasks)}), {settings.group_size} answers "
          f"each, rewards from {reward_name}; beta {settings.beta}, lr {settings.lr:g}, {settings.max_steps} "
          f"steps of {settings.batch_size * settings.grad_accum} answers, prompt order {settings.order}")
    if not resume and settings.order == "variance":
        rollouts.rank_prompts()
    trainer.fit()
    if (out / METRICS).read_text().strip():
        plot_grpo_metrics(out / METRICS, out / "grpo.png")
    if trainer.step == settings.max_steps:
        if settings.lora:
            save_adapters(model, out / "model", settings.checkpoint)
        else:
            save_pretrained(model, out / "model")
            tok.save_pretrained(out / "model")
        evaluation["after"] = heldout_accuracy(model, tok, held_out, settings.max_new_tokens)
        eval_file.write_text(json.dumps(evaluation, indent=1) + "\n")
        print("checker accuracy on held-out test prompts, before -> after GRPO:")
        for task in evaluation["after"]:
            print(f"  {task:<14}{evaluation['before'][task]:.3f} -> {evaluation['after'][task]:.3f}")
        print(f"wrote {out}/metrics.jsonl, grpo.png, eval.json, checkpoint.pt, model/")
    return trainer
