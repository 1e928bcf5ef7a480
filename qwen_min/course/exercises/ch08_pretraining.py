"""Checkers for the exercises of notebooks/08_pretraining.ipynb (references: reference/ch08_pretraining.py).

    from qwen_min.course.exercises.ch08_pretraining import check_fixed_train, check_token_weighted_accumulation
    check_token_weighted_accumulation(my_accumulate)  # build: my_accumulate(model, micro_batches) leaves in .grad the
                                                      # gradient of ONE batch holding every micro-batch's rows
    check_fixed_train(my_train)                       # debug: my_train(model, batches, lr) -> losses, bug fixed
"""

from __future__ import annotations

import torch

from qwen_min.course.exercises import compare, seed
from qwen_min.course.exercises.reference import ch08_pretraining as ref
from qwen_min.course.exercises.reference.ch08_pretraining import VOCAB, flat_grad, micro_batches, tiny_model


def check_token_weighted_accumulation(student) -> None:
    """student(model, micro_batches) runs backward passes so that model's .grad holds the gradient of the mean loss
    over ALL counted targets of all micro-batches, as if they were one batch. Micro-batches are dicts with
    "input_ids" and "labels" (labels aligned with the ids, -100 where nothing is learned), of different lengths."""

    def run(fn, at):
        model = tiny_model(at)
        fn(model, micro_batches(at))
        return flat_grad(model)

    compare("token_weighted_accumulation", lambda at: run(student, at), lambda at: run(ref.one_big_batch, at),
            [(seed(0),), (seed(1),), (seed(2),)], atol=1e-6,
            hint="each micro-batch's loss is already an average over ITS OWN counted targets; a micro-batch with "
                 "more targets should weigh more in the step. Count the targets each position really predicts.")


def check_fixed_train(student) -> None:
    """student(model, batches, lr) -> losses (a list or tensor, one per step): the notebook's `buggy_train`, fixed.
    Run on a fresh tiny model and 6 batches of (4, 16) token ids, lr 3e-3."""

    def run(fn, at):
        g = torch.Generator().manual_seed(at)
        batches = [torch.randint(0, VOCAB, (4, 16), generator=g) for _ in range(6)]
        return torch.as_tensor(fn(tiny_model(at), batches, 3e-3), dtype=torch.float32)

    compare("fixed_train", lambda at: run(student, at), lambda at: run(ref.fixed_train, at), [(seed(0),), (seed(1),)],
            atol=1e-5,
            hint="the first loss is right and the later ones are not: what does the second step's update "
                 "contain that it should not? Print the gradient norm step by step.")


PACKAGE_EQUIVALENTS: dict = {}  # no package function computes these answers (the Trainer weights micro-batches equally)
