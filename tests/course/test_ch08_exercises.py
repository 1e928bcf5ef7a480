"""The chapter 8 exercise checkers accept right answers and reject plausible wrong ones."""

import pytest
import torch

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch08_pretraining import (
    check_fixed_train,
    check_token_weighted_accumulation,
)


def _weighted(model, micro_batches):
    counts = [(b["labels"][:, 1:] != -100).sum() for b in micro_batches]
    for batch, count in zip(micro_batches, counts):
        _, loss = model(batch["input_ids"], labels=batch["labels"])
        (loss * count / sum(counts)).backward()


def _equal_weights(model, micro_batches):  # what Trainer does: right only when every micro-batch counts the same targets
    for batch in micro_batches:
        _, loss = model(batch["input_ids"], labels=batch["labels"])
        (loss / len(micro_batches)).backward()


def test_token_weighted_accumulation_checker():
    check_token_weighted_accumulation(_weighted)
    with pytest.raises(ExerciseFailed, match="token_weighted_accumulation: wrong"):
        check_token_weighted_accumulation(_equal_weights)


def _train(model, batches, lr, zero_grad=True):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for ids in batches:
        _, loss = model(ids, labels=ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if zero_grad:
            optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_fixed_train_checker():
    check_fixed_train(_train)
    with pytest.raises(ExerciseFailed, match="fixed_train: wrong"):  # the planted bug: gradients never cleared
        check_fixed_train(lambda model, batches, lr: _train(model, batches, lr, zero_grad=False))
