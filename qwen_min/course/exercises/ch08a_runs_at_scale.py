"""Checkers for the exercises of notebooks/08a_runs_at_scale.ipynb (references: reference/ch08a_runs_at_scale.py).

    from qwen_min.course.exercises.ch08a_runs_at_scale import check_first_adamw_step, check_resume
    check_first_adamw_step(my_prediction)   # predict: my_prediction() -> (|step| as is, |step| loss x 1000)
    check_resume(my_checkpoint)             # build: my_checkpoint(model, optimizer, scheduler) -> restore, a function
                                            #        restore(model, optimizer, scheduler) that puts it all back
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch08a_runs_at_scale as ref
from qwen_min.train.trainer import Trainer, rng_state, set_rng_state

STEPS = 12  # the checker's run: STEPS / 2 steps, a checkpoint, fresh objects, a restore, STEPS / 2 steps


def check_first_adamw_step(student) -> None:
    """student() -> (a, b): your prediction of the largest |change| of any weight after ONE AdamW step with lr 0.01
    (no weight decay) on a fresh model, (a) with the loss as is and (b) with the loss multiplied by 1000."""
    guess = prediction("first AdamW step", student)
    measured = (round(ref.measured_first_adamw_step(1.0), 6), round(ref.measured_first_adamw_step(1000.0), 6))
    close = (isinstance(guess, tuple) and len(guess) == 2 and all(type(x) in (int, float) for x in guess)
             and all(abs(g - m) <= 0.1 * m for g, m in zip(guess, measured)))
    judge_prediction("first AdamW step", guess, measured, close,
                     "At step 1 the first and second moment estimates, once bias-corrected, are built from one and "
                     "the same gradient. What is their ratio, whatever the gradient's size?")


def _fresh(at: int):
    """A tiny model, AdamW with weight decay, and a warmup-then-linear-decay schedule."""
    model = ref.tiny_model(at)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 4) * (1 - s / (2 * STEPS)))
    return model, optimizer, scheduler


def _losses(at: int, checkpoint=None) -> torch.Tensor:
    """STEPS losses: straight through, or interrupted halfway by checkpoint(...) and resumed in fresh objects."""
    model, optimizer, scheduler = _fresh(at)
    torch.manual_seed(at)
    losses = []
    for step in range(STEPS):
        if checkpoint is not None and step == STEPS // 2:
            restore = checkpoint(model, optimizer, scheduler)
            model, optimizer, scheduler = _fresh(at + 1)                     # other weights...
            torch.manual_seed(at + 1)                                         # ...and another place in the data
            restore(model, optimizer, scheduler)
        ids = torch.randint(0, ref.VOCAB, (4, 16))                            # the batch: torch's global generator
        _, loss = model(ids, labels=ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


def check_resume(student) -> None:
    """student(model, optimizer, scheduler) -> restore(model, optimizer, scheduler): a run interrupted after 6 of 12
    steps and resumed into fresh objects must give the same 12 losses, bit for bit."""
    g = torch.Generator().manual_seed(seed(80))
    inputs = [(int(torch.randint(0, 10_000, (1,), generator=g)),) for _ in range(2)]
    compare("resume", lambda at: _losses(at, student), lambda at: _losses(at), inputs, atol=0.0,
            hint="the losses after the resume differ: list what step 7 depends on. The weights, and what else? "
                 "AdamW keeps two moments and a step count per weight, the schedule knows which step it is at, and "
                 "the next batch comes from torch's random generator.",
            forbidden=[Trainer.state_dict, Trainer.load_state_dict, rng_state, set_rng_state])


PACKAGE_EQUIVALENTS: dict = {}  # the Trainer's checkpoint belongs to its own loop; the checker's loop has none
