"""loss_by_position (eval/position_loss.py): its mean over positions is the model's own loss, rows are averaged,
batches do not change it; binned; bad input refused."""

from __future__ import annotations

import pytest
import torch

import qwen_min as qm
from qwen_min.eval.position_loss import binned, loss_by_position


def test_mean_over_positions_is_the_models_loss_and_batching_does_not_matter():
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=50)).eval()
    rows = torch.randint(0, 50, (5, 33))
    per_position = loss_by_position(model, rows, batch_size=2)
    assert per_position.shape == (32,)
    with torch.no_grad():
        _, loss = model(rows, labels=rows)
    assert per_position.mean().item() == pytest.approx(loss.item(), abs=1e-5)
    assert torch.allclose(per_position, loss_by_position(model, rows, batch_size=5), atol=1e-6)
    first_row = loss_by_position(model, rows[:1])
    with torch.no_grad():
        logits = model(rows[:1])
    want = torch.nn.functional.cross_entropy(logits[0, :-1], rows[0, 1:], reduction="none")
    assert torch.allclose(first_row, want, atol=1e-5)


def test_binned_and_refusals():
    assert binned(torch.arange(10.0), 4).tolist() == [1.5, 5.5, 8.5]
    with pytest.raises(ValueError, match="width"):
        binned(torch.arange(3.0), 0)
    with pytest.raises(ValueError, match="rows must be"):
        loss_by_position(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=50)), torch.zeros(4, dtype=torch.long))
