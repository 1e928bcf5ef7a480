"""Loss by position: how well a model predicts token i + 1 from tokens 0..i, for every i, averaged over rows.

    rows = torch.tensor(...)                               # (n_rows, t) token ids, e.g. held-out text windows
    per_position = loss_by_position(model, rows)          # (t - 1,): mean loss of predicting token i + 1
    binned(per_position, 64)                              # (ceil((t - 1) / 64),): mean per bin of 64 positions

The curve that shows a model failing past its training length: flat (or falling, as context accumulates) up to
the length it was trained at, rising after it when positions the model never saw break its attention. One mean
over a long window would hide where the failure starts.

Design choices
- The loss is `causal_lm_loss`'s (model/qwen.py): logits in fp32, token i predicts token i + 1, but kept per
  position (no mean over positions), then averaged over rows; `batch_size` rows per forward pass.
- No padding: every row has the same length, so position i is the same absolute position in every row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def loss_by_position(model, rows: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """rows: (n, t) ids -> (t - 1,) mean next-token loss at each position 0..t-2 (nats), in fp32.

    >>> import qwen_min as qm
    >>> model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=50))
    >>> loss_by_position(model, torch.randint(0, 50, (3, 9))).shape
    torch.Size([8])
    """
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"rows must be (n, t) token ids with t >= 2, got shape {tuple(rows.shape)}")
    model.eval()
    total = torch.zeros(rows.shape[1] - 1, dtype=torch.float64)
    for i in range(0, rows.shape[0], batch_size):
        ids = rows[i:i + batch_size]
        logits = model(ids).float()  # (b, t, vocab)
        losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten().to(logits.device),
                                 reduction="none").view(ids.shape[0], -1)  # (b, t - 1)
        total += losses.sum(0).double().cpu()
    return (total / rows.shape[0]).float()


def binned(per_position: torch.Tensor, width: int) -> torch.Tensor:
    """Mean of each run of `width` positions (the last bin may be shorter): a readable curve from a noisy one.

    >>> binned(torch.tensor([1.0, 3.0, 5.0, 7.0, 9.0]), 2)
    tensor([2., 6., 9.])
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    return torch.stack([chunk.mean() for chunk in per_position.split(width)])
