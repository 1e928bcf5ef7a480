"""The chapter 8a exercise checkers accept right answers and reject plausible wrong ones."""

import copy

import pytest
import torch

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch08a_runs_at_scale import check_first_adamw_step, check_resume
from qwen_min.course.exercises.reference.ch08a_runs_at_scale import measured_first_adamw_step


def test_first_adamw_step_is_lr_whatever_the_loss_scale():
    for scale in (1.0, 1000.0):
        assert measured_first_adamw_step(scale) == pytest.approx(1e-2, rel=1e-3)
    check_first_adamw_step(lambda: (0.01, 0.01))
    with pytest.raises(ExerciseFailed, match="you predicted"):  # the step grows with the gradient: plain SGD thinking
        check_first_adamw_step(lambda: (0.01, 10.0))
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check_first_adamw_step(lambda: (_ for _ in ()).throw(NotImplementedError))


def _checkpoint(model, optimizer, scheduler, keep=("optimizer", "scheduler", "rng")):
    saved = {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}

    def restore(model, optimizer, scheduler):
        model.load_state_dict(saved["model"])
        if "optimizer" in keep:
            optimizer.load_state_dict(saved["optimizer"])
        if "scheduler" in keep:
            scheduler.load_state_dict(saved["scheduler"])
        if "rng" in keep:
            torch.set_rng_state(saved["rng"])
    return restore


@pytest.mark.parametrize("forgotten", ["optimizer", "scheduler", "rng"])
def test_resume_checker(forgotten):
    check_resume(_checkpoint)
    keep = tuple(k for k in ("optimizer", "scheduler", "rng") if k != forgotten)
    with pytest.raises(ExerciseFailed, match="resume: wrong"):  # each part of the state matters to step 7
        check_resume(lambda m, o, s: _checkpoint(m, o, s, keep))
