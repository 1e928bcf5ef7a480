"""Reference answer and the measurement of notebooks/08a_runs_at_scale.ipynb's exercises (see __init__.py;
the tiny model is chapter 8's)."""

from __future__ import annotations

import functools

import torch

from qwen_min.course.exercises.reference.ch08_pretraining import VOCAB, tiny_model
from qwen_min.course.exercises.watch import answer


@answer("ch08a_runs_at_scale.check_first_adamw_step")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_first_adamw_step(loss_scale: float, lr: float = 1e-2) -> float:
    """Largest |change| of any weight after one AdamW step (no weight decay) of a fresh tiny model."""
    model = tiny_model(0)
    before = [p.detach().clone() for p in model.parameters()]
    ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    _, loss = model(ids, labels=ids)
    (loss * loss_scale).backward()
    optimizer.step()
    return max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before))


@answer("ch08a_runs_at_scale.check_resume")
def checkpoint(model, optimizer, scheduler):
    """Weights, AdamW's moments and step, the schedule's position and torch's generator (it draws the batches)."""
    weights = [p.detach().clone() for p in model.parameters()]
    moments = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
               for k, v in optimizer.state_dict()["state"].items()}
    groups = [dict(g) for g in optimizer.state_dict()["param_groups"]]
    schedule, generator = scheduler.state_dict(), torch.get_rng_state().clone()

    def restore(model, optimizer, scheduler):
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights):
                p.copy_(w)
        optimizer.load_state_dict({"state": moments, "param_groups": groups})
        scheduler.load_state_dict(schedule)
        torch.set_rng_state(generator)
    return restore
