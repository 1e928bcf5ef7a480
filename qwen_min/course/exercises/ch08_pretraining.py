"""Checkers for the exercises of notebooks/08_pretraining.ipynb.

    from qwen_min.course.exercises.ch08_pretraining import (check_token_weighted_accumulation,
                                                             check_first_adamw_step, check_fixed_train)
    check_token_weighted_accumulation(my_accumulate)  # build: my_accumulate(model, micro_batches) leaves in .grad the
                                                      # gradient of ONE batch holding every micro-batch's rows
    check_first_adamw_step(my_prediction)             # predict: my_prediction() -> (|step| as is, |step| loss x 1000)
    check_fixed_train(my_train)                       # debug: my_train(model, batches, lr) -> losses, bug fixed
"""

from __future__ import annotations

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.qwen import Qwen, causal_lm_loss

VOCAB = 50


def _tiny_model(seed: int) -> Qwen:
    torch.manual_seed(seed)
    return Qwen(QwenConfig.from_name("tiny", vocab_size=VOCAB))


def _micro_batches(seed: int) -> list[dict[str, torch.Tensor]]:
    """Micro-batches of different lengths whose rows count different numbers of targets (-100 elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for rows, t in [(2, 12), (3, 7), (1, 20)]:
        ids = torch.randint(0, VOCAB, (rows, t), generator=g)
        labels = ids.clone()
        labels[torch.rand(rows, t, generator=g) < 0.4] = -100  # masked targets, as in SFT
        batches.append({"input_ids": ids, "labels": labels})
    return batches


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


def _one_big_batch_grad(seed: int) -> torch.Tensor:
    """Reference: every micro-batch's rows right-padded into one batch, one backward of the mean over its targets."""
    model, micro = _tiny_model(seed), _micro_batches(seed)
    t = max(b["input_ids"].shape[1] for b in micro)
    ids = torch.cat([torch.nn.functional.pad(b["input_ids"], (0, t - b["input_ids"].shape[1])) for b in micro])
    labels = torch.cat([torch.nn.functional.pad(b["labels"], (0, t - b["labels"].shape[1]), value=-100) for b in micro])
    causal_lm_loss(model(ids), labels).backward()  # right padding changes no logit of a real token (causal)
    return _flat_grad(model)


def check_token_weighted_accumulation(student) -> None:
    """student(model, micro_batches) runs backward passes so that model's .grad holds the gradient of the mean loss
    over ALL counted targets of all micro-batches, as if they were one batch. Micro-batches are dicts with
    "input_ids" and "labels" (labels aligned with the ids, -100 where nothing is learned), of different lengths."""

    def run(fn, seed):
        model = _tiny_model(seed)
        fn(model, _micro_batches(seed))
        return _flat_grad(model)

    compare("token_weighted_accumulation", lambda seed: run(student, seed), _one_big_batch_grad, [(0,), (1,), (2,)],
            atol=1e-6,
            hint="each micro-batch's loss is already an average over ITS OWN counted targets; a micro-batch with "
                 "more targets should weigh more in the step. Count the targets each position really predicts.")


def measured_first_adamw_step(loss_scale: float, lr: float = 1e-2) -> float:
    """Largest |change| of any weight after one AdamW step (no weight decay) of a fresh tiny model."""
    model = _tiny_model(0)
    before = [p.detach().clone() for p in model.parameters()]
    ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    _, loss = model(ids, labels=ids)
    (loss * loss_scale).backward()
    optimizer.step()
    return max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before))


def check_first_adamw_step(student) -> None:
    """student() -> (a, b): your prediction of the largest |change| of any weight after ONE AdamW step with lr 0.01
    (no weight decay) on a fresh model, (a) with the loss as is and (b) with the loss multiplied by 1000."""
    guess = prediction("first AdamW step", student)
    measured = (round(measured_first_adamw_step(1.0), 6), round(measured_first_adamw_step(1000.0), 6))
    close = (isinstance(guess, (tuple, list)) and len(guess) == 2 and all(isinstance(x, (int, float)) for x in guess)
             and all(abs(g - m) <= 0.1 * m for g, m in zip(guess, measured)))
    judge_prediction("first AdamW step", tuple(guess) if isinstance(guess, list) else guess, measured, close,
                     "At step 1 the first and second moment estimates, once bias-corrected, are built from one and "
                     "the same gradient. What is their ratio, whatever the gradient's size?")


def _correct_train(model, batches, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for ids in batches:
        _, loss = model(ids, labels=ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return torch.tensor(losses)


def check_fixed_train(student) -> None:
    """student(model, batches, lr) -> losses (a list or tensor, one per step): the notebook's `buggy_train`, fixed.
    Run on a fresh tiny model and 6 batches of (4, 16) token ids, lr 3e-3."""

    def run(fn, seed):
        g = torch.Generator().manual_seed(seed)
        batches = [torch.randint(0, VOCAB, (4, 16), generator=g) for _ in range(6)]
        return torch.as_tensor(fn(_tiny_model(seed), batches, 3e-3), dtype=torch.float32)

    compare("fixed_train", lambda seed: run(student, seed), lambda seed: run(_correct_train, seed), [(0,), (1,)], atol=1e-5,
            hint="the first loss is right and the later ones are not: what does the second step's update "
                 "contain that it should not? Print the gradient norm step by step.")


PACKAGE_EQUIVALENTS: dict = {}  # no package function computes these answers (the Trainer weights micro-batches equally)
